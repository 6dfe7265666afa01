"""The demo pipeline over several synthetic markets: does it promote on an edge, and only there?

    python -m benchmarks.demo_runs --seeds 1,2,3,4,5 --plant 2.0     # the demo, five markets
    python -m benchmarks.demo_runs --seeds 11,12,... --plant 0.0     # the same pipeline without an edge

Each run is ``cappuccino run --demo`` on a fresh home with the market's seed (and, for the
no-edge runs, the plant switched off) changed: the pipeline flow in a process of its own. One
JSON line per run on stdout; ``--out FILE`` also writes the list. The section functions in
``benchmarks.sections`` aggregate them (``demo_promotion_rate``, ``noedge_promotion_rate``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = """
import json, sys
from cappuccino_core.config import RunOverrides
from cappuccino_core.pipeline.demo import DEMO_OVERRIDES, DEMO_WORKERS
from flows.pipeline import PipelineParams, pipeline
seed, plant = int(sys.argv[1]), float(sys.argv[2])
overrides = RunOverrides(**{**DEMO_OVERRIDES, "synthetic_seed": seed, "synthetic_plant_strength": plant})
report = pipeline(params=PipelineParams(name=f"demo-{seed}", workers=DEMO_WORKERS, overrides=overrides))
print("REPORT " + json.dumps(report.model_dump(mode="json"), default=str))
"""


def run_one(seed: int, plant: float) -> dict:
    """Run the demo pipeline on market ``seed`` with ``plant``; return its headline figures."""
    with tempfile.TemporaryDirectory(prefix=f"demo-{seed}-") as tmp:
        env = {**os.environ, "CAPPUCCINO_HOME": str(Path(tmp) / "home"), "CAPPUCCINO_CONFIG": str(Path(tmp) / "absent.toml"),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
        for name in ("MLFLOW_TRACKING_URI", "CAPPUCCINO_STUDY_STORAGE"):
            env.pop(name, None)
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(seed), str(plant)], capture_output=True, text=True,
                              env=env, cwd=Path(__file__).resolve().parents[1])
        seconds = time.perf_counter() - started
        lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
        if proc.returncode != 0 or not lines:
            workers = {str(log.relative_to(tmp)): log.read_text(errors="replace")[-1500:]
                       for log in sorted(Path(tmp).glob("home/studies/*/worker-*.log"))}
            return {"seed": seed, "plant": plant, "error": proc.stderr[-1500:], "worker_logs": workers,
                    "seconds": round(seconds, 1)}
    report = json.loads(lines[-1][len("REPORT "):])
    arena, training = report["arena"], report["training"]["summary"]
    return {
        "seed": seed, "plant": plant, "seconds": round(seconds, 1),
        "timeframe": f"{report['timeframe']['choice']['interval']}x{report['timeframe']['choice']['lookback']}",
        "promoted": len(arena["promoted_here"]), "matches": arena["matches_played"],
        "candidates": len(report["training"]["candidates"]), "with_evidence": training.get("with_evidence"),
        "complete_trials": training["trials_by_state"].get("COMPLETE"),
        "king_holdout_excess_sharpe": arena.get("king_holdout_excess_sharpe"),
        "king_holdout_ci_low": arena.get("king_holdout_ci_low"), "edge_tested_king": arena.get("edge_tested_king"),
        "edge_tests": [{"passed": t["passed"], "king_score": t["king_score"], "ci_low": t["ci_low"]} for t in arena.get("edge_tests", [])],
        "selection_spearman": training.get("selection_spearman"), "selection_n": training.get("selection_n"),
        "min_ppo_updates": training.get("min_ppo_updates"), "best_validation": training.get("best_value"),
        "stage_seconds": report["stage_seconds"], "green_light": report["green_light"].get("status"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", required=True, help="market seeds, comma-separated")
    parser.add_argument("--plant", type=float, default=2.0, help="planted edge strength (0: none)")
    parser.add_argument("--out", type=Path, help="also write the runs here (JSON list)")
    args = parser.parse_args()
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        runs.append(run_one(seed, args.plant))
        print(json.dumps(runs[-1]), flush=True)
        if args.out:
            args.out.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
