"""The trial cap is hard: across processes, threads, restarts, and whatever the trials' fate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest

from cappuccino_core.study import (
    StopReason,
    TrialCapReached,
    load_study,
    open_storage,
    prepare_study,
    run_worker,
    study_status,
)
from cappuccino_core.study.cap import CappedRDBStorage
from tests.study.study_workers import fast_objective

REPO = Path(__file__).resolve().parents[2]


def start_worker(url: str, name: str, tmp_path: Path, index: int, *extra: str) -> subprocess.Popen:
    """Start one worker process of ``tests.study.study_workers``."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.study.study_workers", "fast", url, name, *extra,
         "--ready-file", str(tmp_path / f"ready-{index}"), "--go-file", str(tmp_path / "go")],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_two_worker_processes_create_exactly_the_cap_of_trials(place, tmp_path):
    prepare_study(place.url, place.name, sampler_seed=0, cap=12, attrs={})
    # Each worker wants 20 trials; each count pauses before its insert (50 and 70 ms, so the
    # workers don't move in lockstep), widening the window in which an unlocked count goes stale.
    workers = [
        start_worker(place.url, place.name, tmp_path, i, "--max-trials", "20", "--count-delay", delay)
        for i, delay in enumerate(["0.05", "0.07"])
    ]
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"ready-{i}").exists() for i in range(2)):
        assert all(w.poll() is None for w in workers), [w.communicate() for w in workers]
        assert time.monotonic() < deadline, "workers did not get ready"
        time.sleep(0.02)
    (tmp_path / "go").touch()
    reports = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))

    status = study_status(place.url, place.name)
    assert status.total == 12
    assert status.trials_by_state["RUNNING"] == 0
    assert status.trials_by_state["COMPLETE"] == 12
    assert [r["stop_reason"] for r in reports] == ["cap", "cap"]
    assert sum(r["n_trials"] for r in reports) == 12
    assert all(r["n_trials"] >= 1 for r in reports), "both workers must have run trials concurrently"


def test_the_study_lock_excludes_trial_creation_in_another_process(place, tmp_path):
    prepare_study(place.url, place.name, sampler_seed=0, cap=5, attrs={})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ready = tmp_path / "holding"
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.study.study_workers", "hold", place.url, place.name,
         "--sleep", "1.0", "--ready-file", str(ready)],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
    )
    storage = open_storage(place.url)
    study_id = storage.get_study_id_from_name(place.name)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert holder.poll() is None, holder.communicate()[1]
        assert time.monotonic() < deadline, "the lock holder did not start"
        time.sleep(0.01)
    started = time.monotonic()
    storage.create_new_trial(study_id)
    waited = time.monotonic() - started
    _, err = holder.communicate(timeout=30)
    assert holder.returncode == 0, err
    assert waited > 0.5, f"trial creation did not wait for the other process's lock ({waited:.3f} s)"
    storage.engine.dispose()


def test_threads_racing_for_the_last_slots_never_overshoot(place, monkeypatch):
    prepare_study(place.url, place.name, sampler_seed=0, cap=3, attrs={})
    original = CappedRDBStorage.count_trials

    def slow_count(self, study_id):
        count = original(self, study_id)
        time.sleep(0.1)  # every racer counts before anyone inserts, unless the lock serialises them
        return count

    monkeypatch.setattr(CappedRDBStorage, "count_trials", slow_count)
    storage = open_storage(place.url)
    study_id = storage.get_study_id_from_name(place.name)
    outcomes: list[str] = []

    def racer() -> None:
        try:
            storage.create_new_trial(study_id)
            outcomes.append("created")
        except TrialCapReached:
            outcomes.append("refused")

    threads = [threading.Thread(target=racer) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created"] * 3 + ["refused"] * 2
    assert storage.count_trials(study_id) == 3
    storage.engine.dispose()


def test_a_restarted_worker_runs_nothing_once_the_cap_is_reached(sqlite_place):
    prepare_study(sqlite_place.url, sqlite_place.name, sampler_seed=0, cap=5, attrs={})
    first = run_worker(load_study(sqlite_place.url, sqlite_place.name, sampler_seed=0), fast_objective(0.0))
    assert first.stop_reason == StopReason.CAP
    assert first.trials_by_state == {"COMPLETE": 5}

    second = run_worker(load_study(sqlite_place.url, sqlite_place.name, sampler_seed=0), fast_objective(0.0), max_trials=10)
    assert second.stop_reason == StopReason.CAP
    assert second.n_trials == 0
    assert "cap is 5" in second.detail
    assert study_status(sqlite_place.url, sqlite_place.name).total == 5


def test_the_cap_counts_failed_and_pruned_trials(sqlite_place):
    prepare_study(sqlite_place.url, sqlite_place.name, sampler_seed=0, cap=7, attrs={})

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number % 3 == 0:
            raise ValueError(f"trial {trial.number} breaks")
        if trial.number % 3 == 1:
            raise optuna.TrialPruned()
        return x

    report = run_worker(load_study(sqlite_place.url, sqlite_place.name, sampler_seed=0), objective, max_trials=20)
    assert report.stop_reason == StopReason.CAP
    assert report.trials_by_state == {"FAIL": 3, "PRUNED": 2, "COMPLETE": 2}
    status = study_status(sqlite_place.url, sqlite_place.name)
    assert status.total == 7
    assert (status.trials_by_state["FAIL"], status.trials_by_state["PRUNED"]) == (3, 2)


def test_the_cap_counts_enqueued_waiting_trials(sqlite_place):
    prepare_study(sqlite_place.url, sqlite_place.name, sampler_seed=0, cap=2, attrs={})
    study = load_study(sqlite_place.url, sqlite_place.name, sampler_seed=0)
    study.enqueue_trial({"x": 0.5})
    study.enqueue_trial({"x": 0.25})
    with pytest.raises(TrialCapReached, match="cap is 2"):
        study.enqueue_trial({"x": 0.125})
    report = run_worker(study, fast_objective(0.0), max_trials=5)
    assert report.trials_by_state == {"COMPLETE": 2}  # the two queued trials, nothing more
    assert sorted(t.params["x"] for t in study.trials) == [0.25, 0.5]


def test_the_capped_storage_survives_optunas_cached_storage_wrapper(sqlite_place):
    prepare_study(sqlite_place.url, sqlite_place.name, sampler_seed=0, cap=1, attrs={})
    storage = open_storage(sqlite_place.url)
    study = optuna.load_study(study_name=sqlite_place.name, storage=storage)
    assert study._storage._backend is storage  # optuna wraps it; trial creation must still reach it
    study.optimize(fast_objective(0.0), n_trials=1)
    with pytest.raises(TrialCapReached):
        study.optimize(fast_objective(0.0), n_trials=1)


def test_a_study_without_a_cap_is_refused(sqlite_place):
    storage = open_storage(sqlite_place.url)
    optuna.create_study(storage=storage, study_name=sqlite_place.name)
    with pytest.raises(ValueError, match="has no trial cap"):
        load_study(sqlite_place.url, sqlite_place.name, sampler_seed=0)
