"""`cappuccino backtest`: a registered model on stored bars, through the arena's own backtest, beside the baselines."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from cappuccino_core.arena.admission import version_uri
from cappuccino_core.arena.service import ArenaSite, admit, open_arena
from cappuccino_core.pipeline.holdout import holdout_results
from cappuccino_core.views.model_backtest import TRADE_COLUMNS
from tests.views.conftest import MODEL

runner = CliRunner()
HOLDOUT = ["--start", "2022-02-19", "--end", "2022-03-12"]  # the study's arena holdout (see the fixture's split)


def _backtest(*args: str):
    return runner.invoke(app(), ["backtest", *args], terminal_width=80)


def app():
    from cli.app import app as cli

    return cli


def test_the_king_is_backtested_with_its_trades_pairs_exit_reasons_and_the_baselines_on_the_same_bars(cli_env, tmp_path) -> None:
    export = tmp_path / "out" / "trades.csv"
    result = _backtest("--model", "king", *HOLDOUT, "--export", str(export), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["model"] == f"models:/{MODEL}@king" and doc["version"] == cli_env.version and doc["study"] == "views-study"
    assert (doc["interval"], doc["lookback"], doc["start"], doc["end"]) == ("1h", 8, "2022-02-19T00:00:00+00:00",
                                                                           "2022-03-12T00:00:00+00:00")
    assert doc["steps"] == 21 * 24 - 1
    assert [b["name"] for b in doc["baselines"]] == ["buy_and_hold", "momentum", "mean_reversion", "sixty_forty"]
    assert doc["conditions"]["fee_rate"] == 0.0025 and doc["conditions"]["risk"]["stop_loss"] == 0.10  # the arena's
    trades = doc["trades"]
    assert trades, "the fixture's policy trades"
    closed = [t for t in trades if t["closed"]]
    assert doc["metrics"]["trade_count"] == len(closed)
    assert doc["metrics"]["win_rate_trades"] == pytest.approx(sum(t["pnl"] > 0 for t in closed) / len(closed))
    assert sum(p["pnl"] for p in doc["pairs"]) == pytest.approx(sum(t["pnl"] for t in trades))
    assert sum(e["trades"] for e in doc["exit_reasons"]) == len(trades)
    assert any(e["risk_layer"] for e in doc["exit_reasons"]) and sum(doc["risk_triggers"].values()) > 0
    with export.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == TRADE_COLUMNS and len(rows) == len(trades)
    assert [r["exit_reason"] for r in rows] == [t["exit_reason"] for t in trades]


def test_the_backtest_of_an_arena_entrant_equals_the_arenas_own_holdout_backtest(cli_env) -> None:
    settings = cli_env.settings
    site = ArenaSite.from_settings(settings)
    admit(open_arena(site, "views"), site)
    arena = holdout_results(settings, "views-study", version_uri(MODEL, cli_env.version), arena_id="views")
    result = _backtest("--model", f"models:/{MODEL}/{cli_env.version}", "--start", arena["start"], "--end", arena["end"],
                       "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["steps"] + 1 == arena["bars"]
    assert doc["metrics"]["total_return"] == pytest.approx(arena["metrics"]["total_return"], rel=1e-9)
    assert doc["metrics"]["max_drawdown"] == pytest.approx(arena["metrics"]["max_drawdown"], rel=1e-9)
    for mine, theirs in zip(doc["baselines"], arena["baselines"], strict=True):
        assert mine["metrics"]["total_return"] == pytest.approx(theirs["metrics"]["total_return"], rel=1e-9)


def test_the_table_fits_80_columns(cli_env) -> None:
    result = _backtest("--model", "king", *HOLDOUT)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].startswith(f"Backtest of models:/{MODEL}@king") and any(line.startswith("buy_and_hold") for line in lines)
    assert "Exit reasons" in result.stdout


@pytest.mark.parametrize(("args", "says"), [
    (["--model", f"models:/{MODEL}/99", *HOLDOUT], f"models:/{MODEL}/99: Model Version (name={MODEL}, version=99) not found"),
    (["--model", "models:/no-such-model@king", *HOLDOUT], "models:/no-such-model@king:"),
    (["--model", "king", "--start", "2022-02-19", "--end", "2022-04-01"], "after the stored bars"),
    (["--model", "king", "--start", "2021-06-01", "--end", "2022-03-01"], "the model observes 8 bars"),
    (["--model", "king", "--start", "2022-02-19", "--end", "2022-02-19T02:00"], "too few bars: the window holds 2 1h bar(s)"),
    (["--model", "king", "--start", "2022-03-01", "--end", "2022-02-01"], "the window is empty"),
])
def test_a_backtest_that_cannot_be_run_is_refused_in_one_line(cli_env, args, says) -> None:
    result = _backtest(*args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and says in errors[0], result.stderr
    assert "Traceback" not in result.output
