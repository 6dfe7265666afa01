"""After the study: the best K trials, refitted on the whole search period and registered.

Each candidate is trained with its trial's hyperparameters and seed on every row of the
search period (no validation: the folds already judged the hyperparameters; the arena judges
the model on the holdout). Candidates are recorded under their own parent run (phase
``candidates``), so the training phase's child runs stay one per trial. Registration is
idempotent: a trial already registered for this study is not trained again.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import optuna

from cappuccino_core.agents.fit import FitResult, fit_agent, save_fit
from cappuccino_core.clock import Clock
from cappuccino_core.data.intervals import Interval
from cappuccino_core.registry.models import register_candidate, versions_of_study
from cappuccino_core.registry.pyfunc import log_policy_model
from cappuccino_core.search.market import PanelCache
from cappuccino_core.search.objective import StudyTracker
from cappuccino_core.search.space import configs_from_params
from cappuccino_core.search.spec import StudyKind, StudySpec
from cappuccino_core.search.summary import complete_trials
from cappuccino_core.tracking.runs import finish_trial_run, get_or_create_parent_run, log_metrics, start_trial_run


@dataclass(frozen=True)
class Candidate:
    """A registered model version made from a trial."""

    trial: int
    version: str
    run_id: str
    trial_score: float

    def to_dict(self) -> dict:
        return {"trial": self.trial, "version": self.version, "run_id": self.run_id, "trial_score": self.trial_score}


def best_trials(study: optuna.Study, k: int) -> list[optuna.trial.FrozenTrial]:
    """The ``k`` complete trials with the highest values (ties: lower trial number first)."""
    return sorted(complete_trials(study), key=lambda t: (-t.value, t.number))[:k]


def retrain_and_register(study: optuna.Study, spec: StudySpec, panels: PanelCache, tracker: StudyTracker, clock: Clock, *,
                         k: int | None = None, fit: Callable[..., FitResult] = fit_agent, scratch: Path | None = None) -> list[Candidate]:
    """Refit and register the best ``k`` (default ``spec.top_k``) trials of a training study."""
    if spec.kind is not StudyKind.TRAINING:
        raise ValueError(f"only a training study registers candidates; {spec.name!r} is a {spec.kind} study")
    client = tracker.client
    registered = {int(v.tags["trial"]): v for v in versions_of_study(client, spec.name, spec.model_name)}
    parent = get_or_create_parent_run(client, tracker.experiment_id, study=spec.name, phase="candidates",
                                      tags={"cappuccino.code_version": tracker.code_version})
    panel = panels.search(spec.interval)
    out = []
    for trial in best_trials(study, k or spec.top_k):
        if trial.number in registered:
            v = registered[trial.number]
            out.append(Candidate(trial.number, str(v.version), v.run_id, float(trial.value)))
            continue
        ppo, env = configs_from_params(trial.params, spec.ppo, replace(spec.env, lookback=spec.lookback))
        seed = int(trial.user_attrs["seed"])
        run_id = start_trial_run(client, tracker.experiment_id, parent, trial_number=trial.number, params=dict(trial.params), tags={
            "cappuccino.study": spec.name, "cappuccino.role": "candidate", "cappuccino.seed": str(seed),
            "cappuccino.interval": str(spec.interval), "cappuccino.lookback": str(spec.lookback),
            "cappuccino.data_hash": panel.data_hash, "cappuccino.code_version": tracker.code_version,
            **{f"cappuccino.split.{k}": v for k, v in spec.split.to_dict().items()},
        })
        try:
            fitted = fit(panel, env_config=env, ppo_config=ppo, seed=seed, created_at=clock.now(), validation=None,
                         study=spec.name, trial=trial.number)
            scratch_dir = Path(tempfile.mkdtemp(prefix=f"candidate-{trial.number}-", dir=scratch))
            try:
                save_fit(fitted, scratch_dir / "checkpoint")
                model_uri = log_policy_model(client, run_id, scratch_dir / "checkpoint")
            finally:
                shutil.rmtree(scratch_dir, ignore_errors=True)
            log_metrics(client, run_id, {"trial_score": float(trial.value), "train_seconds": fitted.train.wall_seconds})
            version = register_candidate(
                client, model_uri=model_uri, run_id=run_id, study=spec.name, trial=trial.number,
                feature_spec_version=panel.feature_spec.version, data_hash=panel.data_hash, model_name=spec.model_name,
                extra_tags={"trial_score": repr(float(trial.value)), "interval": str(spec.interval), "lookback": str(spec.lookback)},
            )
        except BaseException as exc:
            finish_trial_run(client, run_id, "FAIL", f"{type(exc).__name__}: {exc}")
            raise
        finish_trial_run(client, run_id, "COMPLETE", None)
        out.append(Candidate(trial.number, str(version), run_id, float(trial.value)))
    return out
