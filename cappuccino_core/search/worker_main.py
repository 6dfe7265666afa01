"""Entry point of a study worker process: ``python -m cappuccino_core.search.worker_main``.

Started by ``runner.spawn_workers`` (or by hand on another machine pointing at the same
PostgreSQL study storage and MLflow server). Prints its report as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run trials of one cappuccino study.")
    parser.add_argument("--storage", required=True, help="Optuna storage URL")
    parser.add_argument("--tracking", required=True, help="MLflow tracking URI (absolute)")
    parser.add_argument("--home", required=True, type=Path, help="runtime home (bar store, scratch)")
    parser.add_argument("--study", required=True)
    parser.add_argument("--max-trials", type=int, default=None)
    args = parser.parse_args(argv)

    from cappuccino_core.data.store import BarStore
    from cappuccino_core.search.runner import StudyLocation, run_worker_here

    loc = StudyLocation(args.storage, args.tracking, args.home.resolve())
    report = run_worker_here(loc, args.study, BarStore(loc.home / "store"), max_trials=args.max_trials)
    sys.stdout.write(json.dumps(report.to_dict()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
