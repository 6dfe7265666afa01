"""The command line: status exit codes and JSON, settings without secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from cli.app import app
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
        done = subprocess.run([sys.executable, "-c", "from cli.app import app; app()", "data", "ingest"],
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


def test_version_prints_the_package_version(home) -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"cappuccino {version('cappuccino')}"


@pytest.mark.parametrize("command", [["status"], ["data", "status"], ["run"], ["train", "status"], ["backtest"], ["plot"],
                                     ["portfolio"], ["home", "relocate"]])
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


def test_models_list_shows_each_versions_aliases(home) -> None:
    from cappuccino_core.tracking.store import client, ensure_store, tracking_uri

    uri = tracking_uri(home)
    ensure_store(uri)
    mlflow = client(uri)
    mlflow.create_registered_model("cappuccino-ppo")
    for _ in range(2):
        mlflow.create_model_version("cappuccino-ppo", source=str(home), tags={"stage": "candidate", "study": "s"})
    mlflow.set_registered_model_alias("cappuccino-ppo", "king", "2")
    mlflow.set_registered_model_alias("cappuccino-ppo", "production", "2")

    listed = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)

    assert [(m["version"], m["aliases"]) for m in listed] == [(1, []), (2, ["king", "production"])]


def test_train_show_without_a_study_fails_in_one_line(home) -> None:
    result = runner.invoke(app, ["train", "show"])
    assert result.exit_code == 1 and result.output.startswith("error: no studies yet")


def test_cappuccino_run_prints_each_stage_as_it_starts_and_ends_and_hides_prefects_console_chatter() -> None:
    import io
    import logging

    from rich.console import Console

    from cli.app import _stage_progress
    from flows.pipeline import PipelineStageError, _stage

    chatter = logging.StreamHandler(io.StringIO())
    logging.getLogger("prefect.flow_runs").addHandler(chatter)
    root_level = logging.getLogger().level
    logging.getLogger().setLevel(logging.WARNING)  # no -v
    shown, seconds = io.StringIO(), {}
    try:
        with _stage_progress(Console(file=shown, width=80)):
            assert chatter.level == logging.WARNING  # Prefect's console lines are hidden while the run prints its own
            with _stage("ingest", seconds):
                pass
            with pytest.raises(PipelineStageError), _stage("train", seconds):
                raise RuntimeError("boom")
        assert chatter.level == logging.NOTSET  # and shown again afterwards
    finally:
        logging.getLogger("prefect.flow_runs").removeHandler(chatter)
        logging.getLogger().setLevel(root_level)

    lines = shown.getvalue().splitlines()
    assert lines[0] == "stage 1/8 ingest: started" and lines[1].startswith("stage 1/8 ingest: done in ")
    assert lines[2] == "stage 4/8 train: started" and lines[3].startswith("stage 4/8 train: failed after ")
    assert set(seconds) == {"ingest", "train"}
