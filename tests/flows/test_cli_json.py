"""Commands that run flows print their report as JSON with --json."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()


def test_ingest_json_reports_each_symbol_and_the_data_status(prefect_harness, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CAPPUCCINO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CAPPUCCINO_CONFIG", str(tmp_path / "absent.toml"))
    result = runner.invoke(app, ["data", "ingest", "--symbols", "BTC/USD", "--start", "2026-01-01", "--end", "2026-01-03",
                                 "--as-of", "2026-01-03", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [(s["symbol"], s["added"]) for s in doc["symbols"]] == [("BTC/USD", 48)]
    assert doc["status_ok"] is True
