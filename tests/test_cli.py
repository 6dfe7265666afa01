"""The command line: status exit codes and JSON, settings without secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from cappuccino_core.cli import app
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.store import BarStore
from cappuccino_core.data.synthetic import SyntheticMarketConfig, generate_bars

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPPUCCINO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CAPPUCCINO_CONFIG", str(tmp_path / "absent.toml"))
    return tmp_path / "home"


def _store_bars(home, end: datetime) -> None:
    market = SyntheticMarketConfig(seed=2, symbols=("BTC/USD", "ETH/USD"))
    store = BarStore(home / "store")
    for symbol, bars in generate_bars(market, end - timedelta(days=3), end).items():
        store.write(symbol, Interval.H1, bars, source="synthetic")


def test_data_status_json_reports_each_series_and_exits_zero_when_fresh(home) -> None:
    _store_bars(home, datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
    result = runner.invoke(app, ["data", "status", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert [s["symbol"] for s in doc["series"]] == ["BTC/USD", "ETH/USD"]
    assert all(s["rows"] == 72 and s["missing_bars"] == 0 for s in doc["series"])


def test_data_status_exits_non_zero_and_names_the_stale_series(home) -> None:
    _store_bars(home, datetime(2025, 1, 1, tzinfo=UTC))
    result = runner.invoke(app, ["data", "status", "--json"])
    assert result.exit_code == 1
    verdict = json.loads(result.stdout)["verdict"]
    assert {s["symbol"] for s in verdict["stale"]} == {"BTC/USD", "ETH/USD"}
    as_of = runner.invoke(app, ["data", "status", "--json", "--as-of", "2025-01-01T00:30:00Z"])
    assert as_of.exit_code == 0, as_of.output


def test_data_status_on_an_empty_store_says_to_ingest_first(home) -> None:
    result = runner.invoke(app, ["data", "status"])
    assert result.exit_code == 2
    assert "cappuccino data ingest" in result.output


def test_settings_command_shows_keys_only_as_set(home, monkeypatch) -> None:
    monkeypatch.setenv("APCA_API_SECRET_KEY", "s3cr3t-value")
    monkeypatch.setenv("APCA_API_KEY_ID", "AKTESTKEY123")
    result = runner.invoke(app, ["settings"])
    assert result.exit_code == 0
    assert "s3cr3t-value" not in result.output and "AKTESTKEY123" not in result.output
    assert json.loads(result.stdout)["alpaca_secret_key"] == "set"


def test_an_invalid_setting_stops_the_command_with_exit_two(home, monkeypatch) -> None:
    monkeypatch.setenv("CAPPUCCINO_HISTORY_DAYS", "oops")
    result = runner.invoke(app, ["settings"])
    assert result.exit_code == 2
    assert "CAPPUCCINO_HISTORY_DAYS" in result.output


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ingest_with_refused_keys_prints_one_line_naming_the_cause_and_no_traceback(tmp_path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.fakes.alpaca_server import FakeAlpacaServer

    with FakeAlpacaServer() as fake:
        fake.require_auth("PKRIGHTKEY0001", "right-secret-0001")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CAPPUCCINO_", "APCA_"))}
        env.update(CAPPUCCINO_HOME=str(tmp_path / "home"), CAPPUCCINO_CONFIG=str(tmp_path / "absent.toml"),
                   PYTHONPATH=str(REPO), CAPPUCCINO_SOURCE="alpaca", CAPPUCCINO_ALPACA_DATA_URL=fake.url,
                   CAPPUCCINO_SYMBOLS="BTC/USD", CAPPUCCINO_HISTORY_DAYS="7", APCA_API_KEY_ID="PKWRONGKEY0001",
                   APCA_API_SECRET_KEY="wrong-secret-0001",
                   PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")  # the ephemeral server, on a busy machine
        done = subprocess.run([sys.executable, "-c", "from cappuccino_core.cli import app; app()", "data", "ingest"],
                              env=env, capture_output=True, text=True, timeout=500, cwd=tmp_path)
        requests = len(fake.bar_requests())
    assert done.returncode == 1, done.stdout + done.stderr
    # No traceback of the refusal (Prefect's ephemeral server may print its own on a busy machine).
    tracebacks = (done.stdout + done.stderr).split("Traceback (most recent call last):")[1:]
    ours = [t for t in tracebacks if any(w in "\n".join(t.splitlines()[:40])
                                         for w in ("IngestError", "SourceRefused", "flows/ingest.py", "tasks/data.py"))]
    assert ours == [], ours
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: ingest failed for BTC/USD: alpaca BTC/USD 1h: Alpaca rejected the credentials "
                      "(HTTP 403); check the API key and secret settings"]
    assert requests == 1
