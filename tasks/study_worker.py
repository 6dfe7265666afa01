"""The thin Prefect task of a study worker: join a prepared study and run its trials here.

One task runs many trials (STACK-NOTES: keep tasks coarse). It is never retried: a crashed
trial is failed by the next worker's heartbeat check, and re-running a worker is just
another worker joining the study.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from cappuccino_core.data.store import BarStore
from cappuccino_core.search import runner
from cappuccino_core.study.worker import WorkerReport


@task(cache_policy=NONE, task_run_name="trials-{name}")
def run_study_trials(loc: runner.StudyLocation, name: str, bars_dir: Path, max_trials: int | None,
                     timeout_seconds: float | None) -> WorkerReport:
    """Run trials of study ``name`` until its cap, an early stop, ``max_trials`` or the timeout; return the worker report."""
    return runner.run_worker_here(loc, name, BarStore(bars_dir), max_trials=max_trials, timeout=timeout_seconds)
