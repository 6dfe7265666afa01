"""Worker entry points for the study tests that need real separate processes.

Run as ``python -m tests.study.study_workers MODE URL STUDY [options]`` from the repo root;
prints the ``WorkerReport`` as one JSON line on stdout.

- ``fast``: objective sleeps ``--sleep`` seconds and returns its suggested ``x``.
- ``slow``: objective suggests ``x`` then sleeps 30 s (to be killed mid-trial).
- ``hold``: takes the storage's study lock, writes the ready file, holds the lock ``--sleep`` s.

``--ready-file``/``--go-file`` line workers up: each writes its ready file after loading the
study and waits for the go file, so two workers really start trials at the same moment.
``--count-delay`` sleeps after the cap's count and before the insert, widening the race
window the cross-process lock must close.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import optuna

from cappuccino_core.study import load_study, open_storage, run_worker
from cappuccino_core.study.cap import CappedRDBStorage

SLOW_SECONDS = 30.0


def fast_objective(sleep: float):
    """An objective that sleeps briefly and returns the suggested ``x``."""

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        time.sleep(sleep)
        return x

    return objective


def slow_objective(trial: optuna.Trial) -> float:
    """An objective that suggests ``x`` and then hangs long enough to be killed."""
    x = trial.suggest_float("x", 0.0, 1.0)
    time.sleep(SLOW_SECONDS)
    return x


def delay_count(seconds: float) -> None:
    """Make every trial-cap count pause before the insert (this process only)."""
    original = CappedRDBStorage.count_trials

    def slow_count(self: CappedRDBStorage, study_id: int) -> int:
        count = original(self, study_id)
        time.sleep(seconds)
        return count

    CappedRDBStorage.count_trials = slow_count  # type: ignore[method-assign]


def wait_for(path: Path, timeout: float = 30.0) -> None:
    """Wait until ``path`` exists."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)


def hold_study_lock(url: str, name: str, ready_file: Path, seconds: float) -> None:
    """Hold the study's cross-process lock for ``seconds``, announcing it with ``ready_file``."""
    storage = open_storage(url)
    study_id = storage.get_study_id_from_name(name)
    with storage.study_lock(study_id):
        ready_file.touch()
        time.sleep(seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["fast", "slow", "hold"])
    parser.add_argument("url")
    parser.add_argument("study")
    parser.add_argument("--max-trials", type=int, default=None)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--heartbeat", type=int, default=60)
    parser.add_argument("--grace", type=int, default=None)
    parser.add_argument("--count-delay", type=float, default=0.0)
    parser.add_argument("--ready-file", type=Path, default=None)
    parser.add_argument("--go-file", type=Path, default=None)
    args = parser.parse_args()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.mode == "hold":
        hold_study_lock(args.url, args.study, args.ready_file, args.sleep)
        return
    if args.count_delay:
        delay_count(args.count_delay)
    study = load_study(args.url, args.study, sampler_seed=0, heartbeat_interval=args.heartbeat, grace_period=args.grace)
    if args.ready_file is not None:
        args.ready_file.touch()
    if args.go_file is not None:
        wait_for(args.go_file)
    objective = fast_objective(args.sleep) if args.mode == "fast" else slow_objective
    report = run_worker(study, objective, max_trials=args.max_trials)
    print(json.dumps(report.to_dict()), flush=True)


if __name__ == "__main__":
    main()
