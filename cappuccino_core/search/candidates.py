"""After the study: the arena's candidates are the validated networks of the best trials with evidence.

A candidate is the network a trial validated, not a refit: the checkpoint of the trial's last
walk-forward fold (trained on the rows before its validation block, scored out of sample on
it), registered straight from the trial's MLflow run (``runs:/<run>/checkpoints/fold_<k>``). A
refit on the whole search period would be a network nobody validated.

Only trials with validation evidence of an edge (``search.evidence``: the bootstrap lower bound
of the mean validation excess return above zero) are registered, the best ``top_k`` of them by
trial score; the others are counted, with the reason, in what this returns. Registration is
idempotent: a trial already registered for this study is registered once.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from cappuccino_core.registry.models import register_candidate, versions_of_study
from cappuccino_core.search.evidence import ValidationEvidence
from cappuccino_core.search.objective import StudyTracker
from cappuccino_core.search.spec import StudyKind, StudySpec
from cappuccino_core.search.summary import complete_trials

PROVENANCE = "validated_fold"
"""Registry tag ``provenance`` of a candidate: the validated checkpoint of the trial's last fold."""


@dataclass(frozen=True)
class Candidate:
    """A registered model version made from a trial."""

    trial: int
    version: str
    run_id: str
    trial_score: float
    validation_ci_low: float | None

    def to_dict(self) -> dict:
        return {"trial": self.trial, "version": self.version, "run_id": self.run_id, "trial_score": self.trial_score,
                "validation_ci_low": self.validation_ci_low}


@dataclass(frozen=True)
class CandidateSelection:
    """Which trials became candidates, and how many were refused for lack of evidence."""

    candidates: tuple[Candidate, ...]
    complete_trials: int
    with_evidence: int
    refused: int

    def to_dict(self) -> dict:
        return {"candidates": [c.to_dict() for c in self.candidates], "complete_trials": self.complete_trials,
                "with_evidence": self.with_evidence, "refused_without_evidence": self.refused}


def trial_evidence(trial: optuna.trial.FrozenTrial) -> ValidationEvidence:
    """The validation evidence the objective recorded for ``trial``."""
    return ValidationEvidence.from_dict(trial.user_attrs["evidence"])


def best_trials(study: optuna.Study, k: int, *, require_evidence: bool = True) -> list[optuna.trial.FrozenTrial]:
    """The ``k`` complete trials (with validation evidence) with the highest values (ties: lower trial number first)."""
    shown = [t for t in complete_trials(study) if trial_evidence(t).passed or not require_evidence]
    return sorted(shown, key=lambda t: (-t.value, t.number))[:k]


def register_candidates(study: optuna.Study, spec: StudySpec, tracker: StudyTracker, *, k: int | None = None,
                        require_evidence: bool = True) -> CandidateSelection:
    """Register the validated networks of the best ``k`` (default ``spec.top_k``) trials with evidence.

    ``require_evidence=False`` registers the best trials whatever their evidence (machinery tests only).
    """
    if spec.kind is not StudyKind.TRAINING:
        raise ValueError(f"only a training study registers candidates; {spec.name!r} is a {spec.kind} study")
    client = tracker.client
    registered = {int(v.tags["trial"]): v for v in versions_of_study(client, spec.name, spec.model_name)}
    complete = complete_trials(study)
    shown = sum(trial_evidence(t).passed for t in complete)
    out = []
    for trial in best_trials(study, k or spec.top_k, require_evidence=require_evidence):
        evidence = trial_evidence(trial)
        if trial.number in registered:
            v = registered[trial.number]
            out.append(Candidate(trial.number, str(v.version), v.run_id, float(trial.value), evidence.ci_low))
            continue
        run_id = trial.user_attrs["mlflow_run_id"]
        fold = len(trial.user_attrs["fold_scores"]) - 1
        version = register_candidate(
            client, model_uri=f"runs:/{run_id}/checkpoints/fold_{fold}", run_id=run_id, study=spec.name,
            trial=trial.number, feature_spec_version=trial.user_attrs["feature_spec_version"],
            data_hash=spec.data_hashes[str(spec.interval)],
            model_name=spec.model_name,
            extra_tags={"trial_score": repr(float(trial.value)), "interval": str(spec.interval),
                        "lookback": str(spec.lookback), "provenance": PROVENANCE, "fold": str(fold),
                        "validation_ci_low": repr(evidence.ci_low), "validation_bars": str(evidence.bars)},
        )
        out.append(Candidate(trial.number, str(version), run_id, float(trial.value), evidence.ci_low))
    return CandidateSelection(tuple(out), len(complete), shown, len(complete) - shown)
