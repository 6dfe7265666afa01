"""The command line refuses bad input with one line, a non-zero exit, no traceback and no retry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.states import Failed

from cappuccino_core.data.errors import BarDataError, SourceError, SourceRefused
from tasks.data import fetch_and_store

REPO = Path(__file__).resolve().parents[1]

_PROBE = """
import atexit, json, sys
atexit.register(lambda: sys.stderr.write("\\nLOADED " + json.dumps(sorted(m for m in ("prefect", "flows.ingest") if m in sys.modules)) + "\\n"))
from cli.app import app
sys.argv = ["cappuccino", *{args!r}]
app()
"""


def _cappuccino(args: list[str], home: Path) -> tuple[subprocess.CompletedProcess, list[str], list[str]]:
    """Run the command in a fresh process; return it, its stderr lines (the probe's removed) and what it imported."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CAPPUCCINO_HOME": str(home), "CAPPUCCINO_CONFIG": str(home / "absent.toml"),
           "COLUMNS": "80"}
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(args=args)], capture_output=True, text=True, env=env,
                          timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    loaded = json.loads(lines.pop()[len("LOADED "):])
    return proc, lines, loaded


@pytest.mark.parametrize("args, named", [
    (["data", "ingest", "--source", "files", "--path", "/nonexistent/bars"], "/nonexistent/bars does not exist"),
    (["run", "--source", "files", "--path", "/nonexistent/bars"], "/nonexistent/bars does not exist"),
    (["data", "ingest", "--symbols", "FOO/USD"], "the synthetic market has no FOO (FOO/USD)"),
    (["data", "ingest", "--symbols", "BTC/USD,DOGE/USD"], "the synthetic market has no DOGE (DOGE/USD)"),
])
def test_a_source_that_cannot_serve_the_request_is_refused_in_one_line_before_any_flow_runs(tmp_path, args, named) -> None:
    home = tmp_path / "home"
    proc, lines, loaded = _cappuccino(args, home)
    assert proc.returncode == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], lines
    assert "Traceback" not in proc.stderr + proc.stdout
    if args[0] == "data":  # `run` imports the pipeline's parameters, but neither runs a flow
        assert loaded == []
    assert not (home / "store").exists()  # nothing was fetched, retried or stored


def test_a_files_directory_without_the_pair_is_refused_naming_what_it_has(tmp_path) -> None:
    source = tmp_path / "bars"
    source.mkdir()
    (source / "BTC-USDT_4h.csv").write_text("timestamp,open,high,low,close,volume\n")
    proc, lines, _ = _cappuccino(["data", "ingest", "--source", "files", "--path", str(source), "--symbols", "BTC/USDT"],
                                 tmp_path / "home")
    assert proc.returncode == 2
    assert lines == ["error: the files source has no BTC/USDT bars at 1h (it has 4h)"]


def test_an_invalid_setting_is_refused_in_one_line_without_a_traceback(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CAPPUCCINO_HISTORY_DAYS", "oops")
    proc, lines, _ = _cappuccino(["data", "ingest"], tmp_path / "home")
    assert proc.returncode == 2
    assert len(lines) == 1 and "CAPPUCCINO_HISTORY_DAYS" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize("error, retried", [
    (SourceRefused("bar file directory /x does not exist"), False),
    (BarDataError("BTC/USD 1h", "high below low at row 3"), False),
    (SourceError("HTTP 503 after 5 attempts"), True),
    (TimeoutError("read timed out"), True),
])
def test_the_fetch_task_retries_io_failures_but_never_a_refusal_or_bad_data(error, retried) -> None:
    condition = fetch_and_store.retry_condition_fn
    assert condition(fetch_and_store, None, Failed(data=error)) is retried
