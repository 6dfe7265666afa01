"""A whole (tiny) study end to end: Optuna, MLflow child runs, the record, the registry.

Phase 2 then Phase 3 in this process with a tiny training budget; the machinery is under
test here, not learning (see test_search_learning.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from cappuccino_core.agents.fit import evaluate_policy
from cappuccino_core.agents.checkpoint import ModelMismatchError
from cappuccino_core.clock import FixedClock
from cappuccino_core.config import Settings
from cappuccino_core.data.intervals import Interval
from cappuccino_core.registry.loader import load_policy
from cappuccino_core.search import runner
from cappuccino_core.search.market import PanelCache
from cappuccino_core.search.objective import decode_returns
from cappuccino_core.search.protocol import fold_validation, plan_folds, trial_score
from cappuccino_core.search.candidates import register_candidates
from cappuccino_core.search.spec import PrunerConfig
from tests.search.conftest import SYMBOLS, tiny

from datetime import UTC, datetime

CLOCK = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def loc(tmp_path) -> runner.StudyLocation:
    home = tmp_path / "home"
    return runner.StudyLocation(f"sqlite:///{home}/optuna/studies.db", f"sqlite:///{home}/mlflow/mlflow.db", home)


def _settings(home: Path, **extra) -> Settings:
    return Settings(home=home, symbols=SYMBOLS, holdout_weeks=2, train_folds=2, **extra)


def _children(client: MlflowClient, experiment_id: str, parent: str):
    return client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent}'", max_results=1000)


def test_timeframe_then_training_study_every_trial_is_one_child_run_and_reproduces_its_score(loc, small_store) -> None:
    settings = _settings(loc.home)
    # Phase 2: two intervals x two lookbacks, four trials.
    tf = tiny(runner.timeframe_spec(settings, small_store, "tf", trials=4))
    tf = replace(tf, intervals=(Interval.H1, Interval.H4), lookbacks=(8, 12), pruner=PrunerConfig(enabled=False))
    tf = runner.prepare(tf, loc, small_store)
    report = runner.run_worker_here(loc, "tf", small_store, clock=CLOCK)
    assert report.n_trials == 4
    tf_summary = runner.finish(loc, "tf")
    choice = runner.timeframe_choice(loc, "tf")
    assert (str(choice.interval), choice.lookback) in {(a.interval, a.lookback) for a in choice.alternatives}
    assert tf_summary.trials_by_state["COMPLETE"] + tf_summary.trials_by_state["FAIL"] == 4

    # Phase 3 on Phase 2's choice.
    spec = tiny(runner.training_spec(_settings(loc.home, candidates=2), choice, tf, "train", trials=5))
    spec = runner.prepare(replace(spec, pruner=PrunerConfig(enabled=False)), loc, small_store)
    assert (spec.interval, spec.lookback, spec.prior_trials) == (choice.interval, choice.lookback, 4)
    runner.run_worker_here(loc, "train", small_store, clock=CLOCK)
    summary = runner.finish(loc, "train")
    assert summary.total_trials == 5 and summary.trials_by_state["RUNNING"] == 0
    assert summary.dsr_tests == 5 + 4  # every trial tried, the timeframe search's included
    assert summary.pbo is not None or summary.pbo_reason

    client = MlflowClient(loc.tracking_uri)
    tracker = runner.open_tracker(spec, loc)
    children = _children(client, tracker.experiment_id, tracker.parent_run_id)
    study = runner.read_study(loc, "train")
    trials = study.get_trials()
    assert len(children) == len(trials)
    assert sorted(int(r.data.tags["cappuccino.trial"]) for r in children) == [t.number for t in trials]
    for run in children:
        assert {"cappuccino.study", "cappuccino.interval", "cappuccino.lookback", "cappuccino.data_hash",
                "cappuccino.feature_spec_version", "cappuccino.code_version", "cappuccino.seed",
                "cappuccino.split.search_end"} <= run.data.tags.keys()

    # Every complete trial's fold checkpoints load through the registry loader and reproduce its score.
    panel = PanelCache(small_store, spec).search(spec.interval)
    folds = plan_folds(panel, spec.lookback, spec.protocol, period_start=spec.split.search_start)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert complete, "no complete trial to check"
    for trial in complete:
        run_id = trial.user_attrs["mlflow_run_id"]
        scores = []
        returns = []
        for k, fold in enumerate(folds):
            loaded = load_policy(f"runs:/{run_id}/checkpoints/fold_{k}", panel, tracking_uri=loc.tracking_uri,
                                 expected_study="train")
            score, reports = evaluate_policy(loaded.policy, fold_validation(panel, fold, spec.lookback, spec.protocol),
                                             loaded.normalizer, loaded.env_config)
            scores.append(score)
            returns.extend(r.returns - r.benchmark_returns for r in reports)
        assert scores == trial.user_attrs["fold_scores"]
        assert trial_score(scores, spec.protocol.dispersion_penalty) == trial.value
        np.testing.assert_allclose(decode_returns(trial.user_attrs["excess_returns"]), np.concatenate(returns), rtol=1e-6, atol=1e-9)
        assert client.get_run(run_id).data.metrics["score"] == pytest.approx(trial.value)

    # Only trials with validation evidence become candidates; the tiny budget shows little, so the
    # registry path is exercised without the evidence rule, and re-running registers nothing new.
    selection = register_candidates(study, spec, tracker)
    shown = sum(t.user_attrs["evidence"]["passed"] for t in complete)
    assert (selection.with_evidence, len(selection.candidates)) == (shown, min(2, shown))
    assert selection.refused == len(complete) - shown
    candidates = list(register_candidates(study, spec, tracker, require_evidence=False).candidates)
    assert len(candidates) == min(2, len(complete))
    again = register_candidates(study, spec, tracker, require_evidence=False).candidates
    assert [c.version for c in again] == [c.version for c in candidates]
    version = client.get_model_version("cappuccino-ppo", candidates[0].version)
    assert version.tags["provenance"] == "validated_fold" and version.run_id == candidates[0].run_id
    assert candidates[0].run_id == study.trials[candidates[0].trial].user_attrs["mlflow_run_id"]  # the validated network's run
    assert len(_children(client, tracker.experiment_id, tracker.parent_run_id)) == len(trials)
    loaded = load_policy(f"models:/cappuccino-ppo/{candidates[0].version}", panel, tracking_uri=loc.tracking_uri,
                         expected_study="train")
    assert loaded.card.trial == candidates[0].trial
    with pytest.raises(ModelMismatchError, match="tf|other"):
        load_policy(f"models:/cappuccino-ppo/{candidates[0].version}", panel, tracking_uri=loc.tracking_uri,
                    expected_study="other")
