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
    result = runner.invoke(app, ["settings", "--json"])
    assert result.exit_code == 0
    assert "s3cr3t-value" not in result.output and "AKTESTKEY123" not in result.output
    assert json.loads(result.stdout)["alpaca_secret_key"] == "set"
    table = runner.invoke(app, ["settings"], terminal_width=80)
    assert table.exit_code == 0 and "s3cr3t-value" not in table.output
    assert "alpaca secret key" in table.output and max(len(line) for line in table.output.splitlines()) <= 80


def test_an_invalid_setting_stops_the_command_with_exit_two(home, monkeypatch) -> None:
    monkeypatch.setenv("CAPPUCCINO_HISTORY_DAYS", "oops")
    result = runner.invoke(app, ["settings"])
    assert result.exit_code == 2
    assert "CAPPUCCINO_HISTORY_DAYS" in result.output


def test_version_prints_the_package_version(home) -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"cappuccino {version('cappuccino')}"


@pytest.mark.parametrize("command", [["status"], ["data", "status"], ["run"], ["train", "status"]])
def test_help_shows_flags_without_a_value_type(command) -> None:
    result = runner.invoke(app, [*command, "--help"], terminal_width=80)
    assert result.exit_code == 0
    assert "--json" in result.stdout and "<bool>" not in result.stdout and "<str>" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


COMMANDS = [["settings"], ["status"], ["data", "ingest"], ["data", "status"], ["search", "timeframe"], ["train"],
            ["train", "status"], ["train", "show"], ["models", "list"], ["arena", "run"], ["arena", "status"], ["sandbox", "status"], ["kill"], ["resume"], ["run"]]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_offers_json(command) -> None:
    result = runner.invoke(app, [*command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert "--json" in result.stdout


def test_status_json_and_board_on_a_fresh_home(home) -> None:
    doc = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert doc["study"]["training"]["status"] == "not started"
    board = runner.invoke(app, ["status"], terminal_width=80)
    assert board.exit_code == 0 and "training study" in board.stdout
    assert max(len(line) for line in board.stdout.splitlines()) <= 80


def test_the_data_status_table_fits_80_columns_without_cutting_a_cell(home) -> None:
    _store_bars(home, datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
    result = runner.invoke(app, ["data", "status"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in result.stdout
    assert any(line.startswith("BTC/USD ") and line.rstrip().endswith("fresh") for line in lines)


def test_models_list_on_a_fresh_home_says_nothing_is_registered_and_creates_no_store(home) -> None:
    assert json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout) == []
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0 and "no registered versions of cappuccino-ppo" in result.stdout
    assert not (home / "mlflow").exists()


def test_train_show_without_a_study_fails_in_one_line(home) -> None:
    result = runner.invoke(app, ["train", "show"])
    assert result.exit_code == 1 and result.output.startswith("error: no studies yet")
