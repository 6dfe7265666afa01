"""Several worker processes on one study: the cap holds, every trial is tracked once, and a
worker killed mid-trial leaves nothing running after the next worker's pass.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from sqlalchemy import create_engine, text

from cappuccino_core.config import Settings
from cappuccino_core.data.intervals import Interval
from cappuccino_core.search import runner
from cappuccino_core.search.spec import PrunerConfig
from tests.conftest import REPO
from tests.search.conftest import SYMBOLS, fill_store, tiny


def _prepare(loc, name, cap, ppo_changes=None, **changes):
    store = fill_store(loc.home / "store", days=70)
    settings = Settings(home=loc.home, symbols=SYMBOLS, holdout_weeks=2, train_folds=1)
    spec = tiny(runner.timeframe_spec(settings, store, name, trials=cap), **(ppo_changes or {}))
    spec = replace(spec, intervals=(Interval.H1,), lookbacks=(8, 12), **{"pruner": PrunerConfig(enabled=False), **changes})
    return runner.prepare(spec, loc, store), store


def _child_runs(loc, spec):
    tracker = runner.open_tracker(spec, loc)
    return MlflowClient(loc.tracking_uri).search_runs(
        [tracker.experiment_id], f"tags.mlflow.parentRunId = '{tracker.parent_run_id}'", max_results=5000)


def _two_workers_hold_the_cap(loc, name):
    spec, _ = _prepare(loc, name, cap=6)
    procs = runner.spawn_workers(2, loc, name)
    runner.wait_workers(procs, loc, name)
    summary = runner.finish(loc, name)
    trials = runner.read_study(loc, name).trials
    assert len(trials) == 6 and summary.total_trials == 6
    assert summary.trials_by_state["RUNNING"] == summary.trials_by_state["WAITING"] == 0
    runs = _child_runs(loc, spec)
    assert sorted(int(r.data.tags["cappuccino.trial"]) for r in runs) == list(range(6))  # each trial once
    # Both workers took part (each log shows its own report line).
    logs = [(loc.home / "studies" / name / f"worker-{i}.log").read_text() for i in range(2)]
    assert all('"trials_by_state"' in log for log in logs), logs


@pytest.mark.slow
def test_two_worker_processes_on_sqlite_hold_the_cap_and_track_every_trial_once(tmp_path) -> None:
    home = tmp_path / "home"
    loc = runner.StudyLocation(f"sqlite:///{home}/optuna/studies.db", f"sqlite:///{home}/mlflow/mlflow.db", home)
    _two_workers_hold_the_cap(loc, "two-sqlite")


@pytest.fixture
def postgres_mlflow_db(postgres_url):
    """A fresh PostgreSQL database for MLflow (its tables would clash with Optuna's in `test`)."""
    name = f"cappuccino_mlflow_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_two_worker_processes_on_postgresql_hold_the_cap_and_track_every_trial_once(tmp_path, postgres_url, postgres_mlflow_db) -> None:
    name = f"two-pg-{uuid.uuid4().hex[:8]}"
    loc = runner.StudyLocation(postgres_url, postgres_mlflow_db, tmp_path / "home")
    try:
        _two_workers_hold_the_cap(loc, name)
    finally:
        optuna.delete_study(study_name=name, storage=postgres_url)


@pytest.mark.slow
def test_a_worker_killed_mid_trial_leaves_no_trial_running_and_its_run_failed(tmp_path) -> None:
    home = tmp_path / "home"
    loc = runner.StudyLocation(f"sqlite:///{home}/optuna/studies.db", f"sqlite:///{home}/mlflow/mlflow.db", home)
    # Trials long enough to be caught running (about 10 s), heartbeats every second.
    spec, store = _prepare(loc, "crash", cap=2, heartbeat_seconds=1,
                           ppo_changes={"total_steps": 100_000, "eval_every_updates": 100})
    [proc] = runner.spawn_workers(1, loc, "crash")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        running = [t for t in runner.read_study(loc, "crash").trials if t.state.name == "RUNNING"]
        if running and "mlflow_run_id" in running[0].user_attrs:
            break
        assert proc.poll() is None, "the worker ended before a trial was caught running"
        time.sleep(0.2)
    else:
        pytest.fail("no trial started within 90 s")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = running[0].number
    time.sleep(2.5)  # longer than the grace period (2 heartbeats)

    report = runner.run_worker_here(loc, "crash", store)
    summary = runner.finish(loc, "crash")
    trials = runner.read_study(loc, "crash").trials
    assert trials[killed].state.name == "FAIL"
    assert summary.trials_by_state["RUNNING"] == 0 and summary.total_trials == 2
    assert report.stop_reason == "cap"
    runs = {int(r.data.tags["cappuccino.trial"]): r for r in _child_runs(loc, spec)}
    assert len(runs) == len(trials)
    assert runs[killed].info.status == "FAILED"
    assert "heartbeat" in runs[killed].data.tags["cappuccino.error"]


def _wait_for_a_running_trial(loc, name, alive) -> int:
    """Return the number of the first trial caught RUNNING with its MLflow run (at most 90 s)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        running = [t for t in runner.read_study(loc, name).trials if t.state.name == "RUNNING"]
        if running and "mlflow_run_id" in running[0].user_attrs:
            return running[0].number
        assert alive(), "the worker ended before a trial was caught running"
        time.sleep(0.2)
    pytest.fail("no trial started within 90 s")


@pytest.mark.slow
def test_waiting_for_a_worker_killed_mid_trial_fails_its_trial_and_its_run_at_once(tmp_path) -> None:
    home = tmp_path / "home"
    loc = runner.StudyLocation(f"sqlite:///{home}/optuna/studies.db", f"sqlite:///{home}/mlflow/mlflow.db", home)
    spec, _store = _prepare(loc, "dead", cap=2, ppo_changes={"total_steps": 100_000, "eval_every_updates": 100})
    [proc] = runner.spawn_workers(1, loc, "dead")
    killed = _wait_for_a_running_trial(loc, "dead", lambda: proc.poll() is None)
    os.kill(proc.pid, signal.SIGKILL)

    with pytest.raises(runner.StudyError, match=rf"exited -9.*trial\(s\) \[{killed}\] failed.*run the command again"):
        runner.wait_workers([proc], loc, "dead")
    assert runner.read_study(loc, "dead").trials[killed].state.name == "FAIL"  # at once, not after a heartbeat
    run = {int(r.data.tags["cappuccino.trial"]): r for r in _child_runs(loc, spec)}[killed]
    assert run.info.status == "FAILED" and "exited -9 during this trial" in run.data.tags["cappuccino.error"]


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie left for an adoptive parent to reap counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_workers_die_with_the_process_that_spawned_them(tmp_path) -> None:
    home = tmp_path / "home"
    loc = runner.StudyLocation(f"sqlite:///{home}/optuna/studies.db", f"sqlite:///{home}/mlflow/mlflow.db", home)
    _prepare(loc, "orphan", cap=3, ppo_changes={"total_steps": 100_000, "eval_every_updates": 100})
    spawner = subprocess.Popen(
        [sys.executable, "-c", "import pathlib, sys\nfrom cappuccino_core.search import runner\n"
         "loc = runner.StudyLocation(sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]))\n"
         "[worker] = runner.spawn_workers(1, loc, 'orphan')\nprint(worker.pid, flush=True)\nworker.wait()\n",
         loc.storage_url, loc.tracking_uri, str(home)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    worker = int(spawner.stdout.readline())
    _wait_for_a_running_trial(loc, "orphan", lambda: _alive(worker))

    os.kill(spawner.pid, signal.SIGKILL)
    spawner.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker), "the worker outlived the process that spawned it"
