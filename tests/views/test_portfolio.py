"""`cappuccino portfolio`: each trader's account at its last decided bar, read from the journal the traders write."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from cli.app import app
from cappuccino_core.config import Settings
from cappuccino_core.db import create_schema, default_database_url, make_engine, session_factory
from cappuccino_core.operations.production import production_trader_id
from cappuccino_core.lifecycle.stages import Stage
from cappuccino_core.lifecycle.store import LifecycleStore
from cappuccino_core.trading.journal import JournalEntry, StepStatus, TradeJournal
from cappuccino_core.risk.config import RiskConfig
from cappuccino_core.sandbox.runs import SandboxRunRow, sandbox_trader_id

runner = CliRunner()
T0 = datetime(2026, 3, 1, tzinfo=UTC)
SANDBOX_MODEL, PRODUCTION_MODEL = "models:/cappuccino-ppo/3", "models:/cappuccino-ppo/2"


def _entry(trader: str, hour: int, *, equity: float, cash: float, positions: dict, prices: dict, orders=(),
           status: StepStatus = StepStatus.TRADED) -> JournalEntry:
    bar = T0 + timedelta(hours=hour)
    if status is not StepStatus.TRADED:
        return JournalEntry(trader, bar, status, bar + timedelta(hours=1, seconds=5), errors=("bar missing",))
    return JournalEntry(trader, bar, status, bar + timedelta(hours=1, seconds=5), equity=equity, cash=cash,
                        prices=prices, positions=positions, orders=tuple(orders))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Settings:
    """A home whose sandbox run and production model each journaled a few bars."""
    settings = Settings(home=tmp_path / "home")
    monkeypatch.setenv("CAPPUCCINO_HOME", str(settings.home))
    monkeypatch.setenv("CAPPUCCINO_CONFIG", str(tmp_path / "absent.toml"))
    engine = make_engine(default_database_url(settings.home))
    create_schema(engine)
    sandbox = sandbox_trader_id(SANDBOX_MODEL)
    with session_factory(engine).begin() as session:
        session.add(SandboxRunRow(trader_id=sandbox, model_ref=SANDBOX_MODEL, started_at=T0, ends_at=T0 + timedelta(days=7),
                                  ended_at=None, initial_cash=10_000.0, interval="1h",
                                  risk=json.dumps(RiskConfig().to_dict()), created_at=T0))
    journal = TradeJournal(engine)
    prices = {"BTC/USD": 50_000.0, "ETH/USD": 2_500.0}
    journal.record(_entry(sandbox, 0, equity=10_000.0, cash=10_000.0, positions={"BTC/USD": 0.0, "ETH/USD": 0.0},
                          prices=prices))
    order = {"client_order_id": "c-1", "symbol": "ETH/USD", "side": "buy", "qty": None, "notional": 500.0,
             "status": "accepted", "order_id": "o-1", "reason": None}
    filled = {**order, "client_order_id": "c-0", "symbol": "BTC/USD", "status": "filled"}
    journal.record(_entry(sandbox, 1, equity=10_250.0, cash=5_250.0, positions={"BTC/USD": 0.1, "ETH/USD": 0.0},
                          prices=prices, orders=[order, filled]))
    journal.record(_entry(sandbox, 2, equity=0, cash=0, positions={}, prices={}, status=StepStatus.SKIPPED_STALE))
    store = LifecycleStore(engine)
    for stage in (Stage.ARENA, Stage.SANDBOX, Stage.PRODUCTION):
        store.move(PRODUCTION_MODEL, stage, who="test", why="test", at=T0)
    prod = production_trader_id(PRODUCTION_MODEL)
    journal.record(_entry(prod, 0, equity=20_000.0, cash=20_000.0, positions={"BTC/USD": 0.0}, prices=prices))
    journal.record(_entry(prod, 1, equity=19_000.0, cash=14_000.0, positions={"BTC/USD": 0.1}, prices=prices))
    return settings


def test_portfolio_json_shows_positions_cash_equity_pnl_since_entry_open_orders_and_the_last_step(home) -> None:
    result = runner.invoke(app, ["portfolio", "--json"])
    assert result.exit_code == 0, result.output
    sandbox, production = json.loads(result.stdout)["portfolios"]
    assert (sandbox["stage"], sandbox["model"], sandbox["state"]) == ("sandbox", SANDBOX_MODEL, "active")
    assert sandbox["as_of"] == "2026-03-01T01:00:00+00:00" and (sandbox["equity"], sandbox["cash"]) == (10_250.0, 5_250.0)
    assert sandbox["pnl"] == pytest.approx(250.0) and sandbox["pnl_fraction"] == pytest.approx(0.025)  # from its initial cash
    assert sandbox["positions"] == [{"symbol": "BTC/USD", "units": 0.1, "price": 50_000.0, "value": 5_000.0,
                                     "weight": pytest.approx(5_000.0 / 10_250.0)}]
    assert [o["client_order_id"] for o in sandbox["open_orders"]] == ["c-1"]  # the filled one is not open
    assert sandbox["last_step"]["bar"] == "2026-03-01T02:00:00+00:00" and sandbox["last_step"]["status"] == "skipped_stale"
    assert production["stage"] == "production" and production["trader_id"] == production_trader_id(PRODUCTION_MODEL)
    assert production["entry_equity"] == 20_000.0 and production["pnl"] == pytest.approx(-1_000.0)  # from its first bar


def test_portfolio_stage_filters_and_an_unknown_stage_is_refused_in_one_line(home) -> None:
    only = json.loads(runner.invoke(app, ["portfolio", "--stage", "production", "--json"]).stdout)["portfolios"]
    assert [p["stage"] for p in only] == ["production"]
    assert json.loads(runner.invoke(app, ["portfolio", "--stage", "live", "--json"]).stdout) == {"portfolios": []}
    bad = runner.invoke(app, ["portfolio", "--stage", "paper"])
    assert bad.exit_code == 2 and bad.stderr.strip() == "error: --stage must be one of sandbox, production, live, not 'paper'"


def test_the_portfolio_table_fits_80_columns(home) -> None:
    result = runner.invoke(app, ["portfolio"], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "open order: buy ETH/USD 500.00 notional (accepted)" in result.stdout and "v3" in result.stdout


def test_a_home_without_traders_says_so(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CAPPUCCINO_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("CAPPUCCINO_CONFIG", str(tmp_path / "absent.toml"))
    result = runner.invoke(app, ["portfolio"])
    assert result.exit_code == 0 and result.stdout.strip() == "no sandbox, production or live trader yet"
