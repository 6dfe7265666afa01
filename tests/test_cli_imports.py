"""The command line starts fast: its views import no training, tracking or orchestration library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "mlflow", "prefect", "matplotlib", "talib", "optuna.importance", "alpaca", "pandas")

_PROBE = """
import atexit, json, sys
atexit.register(lambda: sys.stderr.write("\\nLOADED " + json.dumps([m for m in {heavy!r} if m in sys.modules]) + "\\n"))
from cli.app import app
sys.argv = ["cappuccino", *{args!r}]
app()
"""


def _loaded_after(args: list[str], home: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CAPPUCCINO_HOME": str(home), "CAPPUCCINO_CONFIG": str(home / "absent.toml")}
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY, args=args)], capture_output=True, text=True,
                          env=env, timeout=120)
    marker = [line for line in proc.stderr.splitlines() if line.startswith("LOADED ")]
    assert marker, proc.stderr[-2000:]
    return proc, json.loads(marker[-1].removeprefix("LOADED "))


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["status", "--json"], ["train", "status", "--json"],
                                  ["arena", "status", "--json"], ["data", "ingest", "--help"], ["portfolio", "--json"],
                                  ["backtest", "--help"], ["plot", "--help"]])
def test_help_version_and_the_views_import_no_heavy_library(tmp_path, args) -> None:
    proc, loaded = _loaded_after(args, tmp_path / "home")
    assert loaded == [], f"cappuccino {' '.join(args)} imported {loaded}"
    if args == ["status", "--json"]:
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout)["data"]["status"] == "not started"


def test_the_modules_the_status_board_reads_through_import_no_heavy_library() -> None:
    # With a production or live model the board reads their records through these modules.
    modules = ("cappuccino_core.operations.status_board", "cappuccino_core.operations.live", "cappuccino_core.operations.production",
               "cappuccino_core.operations.track_records", "cappuccino_core.arena.standing", "cappuccino_core.sandbox.report",
               "cappuccino_core.search.location", "cappuccino_core.search.spec", "cappuccino_core.study.status")
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules) + (
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == ""


def test_importing_the_command_line_leaves_the_environment_alone(monkeypatch) -> None:
    monkeypatch.delenv("DO_NOT_TRACK", raising=False)
    code = "import os, cli.app; print(os.environ.get('DO_NOT_TRACK'))"
    env = {k: v for k, v in os.environ.items() if k != "DO_NOT_TRACK"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**env, "PYTHONPATH": str(REPO)})
    assert proc.stdout.strip() == "None", proc.stderr[-2000:]
