"""Failed trials are recorded and skipped; a crashed worker's trial is failed and retried."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import text

from cappuccino_core.study import StopReason, load_study, prepare_study, run_worker, study_status
from tests.study.study_workers import fast_objective

REPO = Path(__file__).resolve().parents[2]


def test_a_failing_trial_records_its_error_and_the_study_continues(sqlite_place):
    prepare_study(sqlite_place.url, sqlite_place.name, sampler_seed=0, cap=10, attrs={})
    study = load_study(sqlite_place.url, sqlite_place.name, sampler_seed=0)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number == 1:
            raise ValueError("learning rate 3.0 diverged")
        return x

    report = run_worker(study, objective, max_trials=4)
    assert report.stop_reason == StopReason.MAX_TRIALS
    assert report.trials_by_state == {"COMPLETE": 3, "FAIL": 1}
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.trials[1].user_attrs["error"] == "ValueError: learning rate 3.0 diverged"
    assert "error" not in study.trials[0].user_attrs


def test_a_nan_result_fails_the_trial_with_a_recorded_error(sqlite_place):
    prepare_study(sqlite_place.url, sqlite_place.name, sampler_seed=0, cap=10, attrs={})
    study = load_study(sqlite_place.url, sqlite_place.name, sampler_seed=0)
    report = run_worker(study, lambda trial: math.nan, max_trials=1)
    assert report.trials_by_state == {"FAIL": 1}
    assert study.trials[0].user_attrs["error"] == "objective returned nan"


def test_keyboard_interrupt_is_not_swallowed(sqlite_place):
    prepare_study(sqlite_place.url, sqlite_place.name, sampler_seed=0, cap=10, attrs={})
    study = load_study(sqlite_place.url, sqlite_place.name, sampler_seed=0)

    def objective(trial: optuna.Trial) -> float:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_worker(study, objective, max_trials=3)
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def wait_until(condition, timeout: float, what: str, process: subprocess.Popen | None = None):
    """Poll ``condition`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if process is not None and process.poll() is not None:
            raise AssertionError(f"worker exited early: {process.communicate()[1]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_killed_workers_trial_is_failed_retried_and_completed_by_the_next_worker(place):
    prepare_study(place.url, place.name, sampler_seed=0, cap=4, attrs={})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    crashing = subprocess.Popen(
        [sys.executable, "-m", "tests.study.study_workers", "slow", place.url, place.name,
         "--heartbeat", "1", "--grace", "2"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        # Running *and* past its suggestion: killed before it, the trial would have no params to retry.
        wait_until(lambda: any(t.state == TrialState.RUNNING and t.params
                               for t in optuna.load_study(study_name=place.name, storage=place.url).trials),
                   30, "a RUNNING trial with its params", crashing)
    finally:
        os.kill(crashing.pid, signal.SIGKILL)
        crashing.communicate(timeout=30)

    stale = wait_until(
        lambda: study_status(place.url, place.name, heartbeat_interval=1, grace_period=2).running_stale,
        15, "the killed trial's heartbeat to go stale",
    )
    assert stale == (0,)

    study = load_study(place.url, place.name, sampler_seed=0, heartbeat_interval=1, grace_period=2, retry_stale=1)
    report = run_worker(study, fast_objective(0.0), max_trials=10)

    assert report.stop_reason == StopReason.CAP
    trials = study.trials
    assert trials[0].state == TrialState.FAIL  # the killed trial
    retry = trials[1]
    assert retry.state == TrialState.COMPLETE
    assert retry.system_attrs["failed_trial"] == 0  # RetryHeartbeatStaleTrialCallback.retried_trial_number
    assert retry.params == trials[0].params  # the same configuration, run again
    status = study_status(place.url, place.name, heartbeat_interval=1, grace_period=2)
    assert status.trials_by_state["RUNNING"] == 0
    assert status.total == 4
    assert status.running_stale == ()


def test_a_stale_trial_is_not_retried_beyond_the_cap(sqlite_place):
    prepare_study(sqlite_place.url, sqlite_place.name, sampler_seed=0, cap=1, attrs={})
    study = load_study(sqlite_place.url, sqlite_place.name, sampler_seed=0, heartbeat_interval=1, grace_period=2)
    storage = study._storage._backend
    trial_id = storage.create_new_trial(study._study_id)  # the cap's only trial, "running"
    storage.record_heartbeat(trial_id)
    with storage.engine.begin() as conn:  # its worker died long ago
        conn.execute(text("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00'"))

    report = run_worker(study, fast_objective(0.0), max_trials=5)
    assert report.stop_reason == StopReason.CAP
    assert report.n_trials == 0
    status = study_status(sqlite_place.url, sqlite_place.name)
    assert status.trials_by_state["FAIL"] == 1
    assert status.total == 1  # the retry would have been trial 2 of a 1-trial cap
