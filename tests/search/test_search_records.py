"""A study's MLflow record ends: the parent run is FINISHED when the study is, FAILED when its trials fail."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from mlflow import MlflowClient

from cappuccino_core.clock import FixedClock
from cappuccino_core.config import Settings
from cappuccino_core.data.intervals import Interval
from cappuccino_core.search import runner
from cappuccino_core.search.spec import PrunerConfig
from cappuccino_core.tracking.runs import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, NOTE_TAG
from tests.search.conftest import SYMBOLS, tiny

CLOCK = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def loc(tmp_path) -> runner.StudyLocation:
    home = tmp_path / "home"
    return runner.StudyLocation(f"sqlite:///{home}/optuna/studies.db", f"sqlite:///{home}/mlflow/mlflow.db", home)


def _prepare(loc, store, name: str, cap: int):
    settings = Settings(home=loc.home, symbols=SYMBOLS, holdout_weeks=2, train_folds=1)
    spec = tiny(runner.timeframe_spec(settings, store, name, trials=cap))
    spec = replace(spec, intervals=(Interval.H1,), lookbacks=(8,), pruner=PrunerConfig(enabled=False))
    return runner.prepare(spec, loc, store)


def _every_run(client: MlflowClient, experiment_id: str):
    return client.search_runs([experiment_id], max_results=1000)


def test_a_finished_study_leaves_no_run_running_and_reading_it_again_does_not_reopen_it(loc, small_store) -> None:
    spec = _prepare(loc, small_store, "records", 2)
    tracker = runner.open_tracker(spec, loc)
    client = MlflowClient(loc.tracking_uri)
    assert client.get_run(tracker.parent_run_id).info.status == "RUNNING"  # open while the study is prepared

    runner.run_trials(loc, "records", small_store, 1)
    runner.finish(loc, "records")
    runner.open_tracker(spec, loc)  # what registering candidates and status commands do afterwards

    runs = _every_run(client, tracker.experiment_id)
    assert len(runs) == 3  # the parent and two trials
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert all(r.info.start_time <= r.info.end_time for r in runs)
    assert len({r.info.run_name for r in runs}) == len(runs)
    tags = client.get_experiment(tracker.experiment_id).tags
    assert tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    assert tags[NOTE_TAG].startswith("Timeframe search records: 2 PPO trials")
    assert client.get_run(tracker.parent_run_id).data.tags[NOTE_TAG].startswith("Summary of records")

    # Resumed (nothing left to run): reopened while its workers look, finished again.
    runner.run_trials(loc, "records", small_store, 1)
    runner.finish(loc, "records")
    assert client.get_run(tracker.parent_run_id).info.status == "FINISHED"


def test_when_the_trials_cannot_run_the_parent_run_ends_failed_and_the_error_is_raised(
        loc, small_store, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _prepare(loc, small_store, "broken", 2)

    def worker_dies(*args, **kwargs):
        raise OSError("scratch disk full (test)")

    monkeypatch.setattr(runner, "run_worker_here", worker_dies)
    with pytest.raises(OSError, match="scratch disk full"):
        runner.run_trials(loc, "broken", small_store, 1)
    tracker = runner.open_tracker(spec, loc)
    info = MlflowClient(loc.tracking_uri).get_run(tracker.parent_run_id).info
    assert info.status == "FAILED" and info.start_time <= info.end_time
