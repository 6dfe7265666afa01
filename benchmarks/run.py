"""Run every benchmark section in its own process (clean peak-RSS figures) and merge the results.

    python -m benchmarks.run                 # all sections
    python -m benchmarks.run --only ingest   # one section

Each section prints one JSON object of named figures; the runner merges them into
``benchmarks/results.json`` (keys of sections not run are kept from the previous file), then
regenerates the generated tables of README.md (``python -m benchmarks.readme``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.readme import README, update_readme

RESULTS = Path(__file__).resolve().parent / "results.json"
SECTIONS = ("ingest", "env", "ppo", "sb3", "quality", "trial", "study", "arena", "make_run", "risk", "demo_seeds", "noedge", "cli")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections")
    parser.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.section:
        from benchmarks import sections

        sys.stdout.write(json.dumps(getattr(sections, f"bench_{args.section}")()) + "\n")
        return
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for section in args.only or SECTIONS:
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.run", "--section", section],
            capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"benchmark section {section!r} failed (exit {proc.returncode})")
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
        results.update(figures)
        print(f"{section:8s} {time.perf_counter() - started:6.1f}s  {json.dumps(figures)}", flush=True)
    results["machine_cpus"] = os.cpu_count()
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
    tmp.replace(RESULTS)
    print(f"wrote {RESULTS}")
    print(f"{'updated' if update_readme(README, RESULTS) else 'unchanged'}: generated tables of {README}")


if __name__ == "__main__":
    main()
