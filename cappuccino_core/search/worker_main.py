"""Entry point of a study worker process: ``python -m cappuccino_core.search.worker_main``.

Started by ``runner.spawn_workers`` (or by hand on another machine pointing at the same
PostgreSQL study storage and MLflow server). Prints its report as one JSON line.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel send this process SIGTERM when its parent dies; exit now if it has already.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere only the check at start is made. The
    signal is tied to the parent thread that started this process, which waits for it.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        raise SystemExit(f"the parent process {parent_pid} is gone; not starting")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run trials of one cappuccino study.")
    parser.add_argument("--storage", required=True, help="Optuna storage URL")
    parser.add_argument("--tracking", required=True, help="MLflow tracking URI (absolute)")
    parser.add_argument("--home", required=True, type=Path, help="runtime home (bar store, scratch)")
    parser.add_argument("--study", required=True)
    parser.add_argument("--max-trials", type=int, default=None)
    parser.add_argument("--parent-pid", type=int, default=None, help="die when this process (the spawner) dies")
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid)

    from cappuccino_core.data.store import BarStore
    from cappuccino_core.search.runner import StudyLocation, run_worker_here

    loc = StudyLocation(args.storage, args.tracking, args.home.resolve())
    report = run_worker_here(loc, args.study, BarStore(loc.home / "store"), max_trials=args.max_trials)
    sys.stdout.write(json.dumps(report.to_dict()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
