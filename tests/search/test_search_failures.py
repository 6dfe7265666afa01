"""Failures are recorded, not hidden: a failing trial, a pruned trial, an out-of-memory retry."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
import torch
from mlflow import MlflowClient

from cappuccino_core.agents.fit import fit_agent
from cappuccino_core.clock import FixedClock
from cappuccino_core.config import Settings
from cappuccino_core.data.intervals import Interval
from cappuccino_core.search import runner
from cappuccino_core.search.objective import smaller_batch
from cappuccino_core.search.spec import PrunerConfig
from tests.search.conftest import SYMBOLS, TINY_PPO, tiny

CLOCK = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def loc(tmp_path) -> runner.StudyLocation:
    home = tmp_path / "home"
    return runner.StudyLocation(f"sqlite:///{home}/optuna/studies.db", f"sqlite:///{home}/mlflow/mlflow.db", home)


def _timeframe(loc, store, name, cap, **changes):
    settings = Settings(home=loc.home, symbols=SYMBOLS, holdout_weeks=2, train_folds=1)
    spec = tiny(runner.timeframe_spec(settings, store, name, trials=cap))
    spec = replace(spec, intervals=(Interval.H1,), lookbacks=(8,), **{"pruner": PrunerConfig(enabled=False), **changes})
    return runner.prepare(spec, loc, store)


def _runs_by_trial(loc, name):
    client = MlflowClient(loc.tracking_uri)
    spec = runner.require_spec(loc, name)
    tracker = runner.open_tracker(spec, loc)
    runs = client.search_runs([tracker.experiment_id], f"tags.mlflow.parentRunId = '{tracker.parent_run_id}'")
    return {int(r.data.tags["cappuccino.trial"]): r for r in runs}


def test_a_failing_trial_is_recorded_with_its_error_and_the_study_goes_on(loc, small_store) -> None:
    calls = []

    def fit_failing_second(*args, **kwargs):
        calls.append(kwargs["trial"])
        if kwargs["trial"] == 1:
            raise FloatingPointError("policy loss became non-finite (test)")
        return fit_agent(*args, **kwargs)

    _timeframe(loc, small_store, "fails", 3)
    report = runner.run_worker_here(loc, "fails", small_store, clock=CLOCK, fit=fit_failing_second)
    assert report.trials_by_state == {"COMPLETE": 2, "FAIL": 1}
    study = runner.read_study(loc, "fails")
    failed = study.trials[1]
    assert failed.state.name == "FAIL" and "non-finite (test)" in failed.user_attrs["error"]
    runs = _runs_by_trial(loc, "fails")
    assert runs[1].info.status == "FAILED" and "non-finite (test)" in runs[1].data.tags["cappuccino.error"]
    assert runs[0].info.status == runs[2].info.status == "FINISHED"


def test_pruned_trials_are_recorded_as_killed_runs_with_their_learning_curve(loc, small_store) -> None:
    def fit_poor_after_first(*args, **kwargs):
        if kwargs["trial"] > 0:  # a trial whose first evaluation is far below the first trial's
            ppo = kwargs["ppo_config"]
            kwargs["callback"](ppo.batch_size * ppo.eval_every_updates, -1000.0)
        return fit_agent(*args, **kwargs)

    spec = _timeframe(loc, small_store, "prunes", 3, pruner=PrunerConfig(n_startup_trials=1, n_warmup_steps=0))
    assert spec.pruner.enabled
    runner.run_worker_here(loc, "prunes", small_store, clock=CLOCK, fit=fit_poor_after_first)
    study = runner.read_study(loc, "prunes")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED", "PRUNED"]
    runs = _runs_by_trial(loc, "prunes")
    assert len(runs) == len(study.trials) == 3
    client = MlflowClient(loc.tracking_uri)
    for trial in study.trials:
        run = runs[trial.number]
        assert run.data.tags["cappuccino.state"] == trial.state.name
        assert client.get_metric_history(run.info.run_id, "validation_score"), "learning curve missing"
        if trial.state.name == "PRUNED":
            assert run.info.status == "KILLED"


def test_a_trial_out_of_memory_is_retried_once_with_a_smaller_batch(loc, small_store) -> None:
    sizes = []

    def fit_needing_small_batches(*args, **kwargs):
        sizes.append(kwargs["ppo_config"].num_envs)
        if kwargs["ppo_config"].num_envs > TINY_PPO.num_envs // 2:
            raise torch.OutOfMemoryError("DefaultCPUAllocator: can't allocate memory (test)")
        return fit_agent(*args, **kwargs)

    _timeframe(loc, small_store, "oom", 1)
    report = runner.run_worker_here(loc, "oom", small_store, clock=CLOCK, fit=fit_needing_small_batches)
    assert report.trials_by_state == {"COMPLETE": 1}
    assert sizes == [16, 8]
    trial = runner.read_study(loc, "oom").trials[0]
    assert "retried with num_envs=8" in trial.user_attrs["oom_retry"]


def test_a_second_out_of_memory_fails_the_trial(loc, small_store) -> None:
    def always_oom(*args, **kwargs):
        raise MemoryError("test: no memory at all")

    _timeframe(loc, small_store, "oom2", 1)
    report = runner.run_worker_here(loc, "oom2", small_store, clock=CLOCK, fit=always_oom)
    assert report.trials_by_state == {"FAIL": 1}
    assert "no memory at all" in runner.read_study(loc, "oom2").trials[0].user_attrs["error"]


def test_smaller_batch_halves_episodes_and_minibatch() -> None:
    smaller = smaller_batch(TINY_PPO)
    assert (smaller.num_envs, smaller.minibatch_size) == (8, 64)
    assert smaller.batch_size % smaller.minibatch_size == 0
