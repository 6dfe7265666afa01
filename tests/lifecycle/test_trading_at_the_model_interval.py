"""Trading at the model's interval: a 4h model on the hourly clock acts once per closed 4h bar.

The store holds 1h bars of the synthetic market (as every home does); the model was "trained"
on 4h bars resampled from them. The sandbox, the production trader and the replay are stepped
on every 1h bar, as the hourly deployments and the replay's clock do. On the 1h bar that closes
a 4h bar the model decides on that 4h bar; on the three others it does nothing. Its journal
then replays exactly in the backtester on the 4h panel (the same accounting and risk layers).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from cappuccino_core.clock import FixedClock
from cappuccino_core.config import load_settings
from cappuccino_core.data.ingest import IngestWindow, ingest_symbol
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.store import BarStore
from cappuccino_core.data.synthetic import SyntheticBarSource, SyntheticMarketConfig
from cappuccino_core.features.market import panel_from_store
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.operations.live import Approval, go_live
from cappuccino_core.operations.live_account import allocations
from cappuccino_core.operations.production import (
    NO_NEW_BAR,
    live_trader_id,
    production_trader_id,
    step_live,
    step_production,
)
from cappuccino_core.pipeline.replay import plan_replay, replay_lifecycle
from cappuccino_core.operations.site import LifecycleSite
from cappuccino_core.lifecycle.stages import Stage
from cappuccino_core.trading.bars_provider import StoreBarProvider, bar_time_ns, closed_bar
from cappuccino_core.trading.journal import StepStatus
from cappuccino_core.trading.model import TradingModel
from tests.trading.parity import replay_parity
from cappuccino_core.sandbox.runner import Sandbox, sandbox_trader_id
from tests.fakes.alpaca_server import FakeAlpacaServer
from tests.lifecycle.lifecycle_scenarios import grant_live
from tests.trading.trading_scenarios import PhasePolicy, model_for

LIVE_KEY, LIVE_SECRET = "AKLIVEKEY00000004", "live-s3cr3t-4h"

SYMBOLS = ("BTC/USD", "ETH/USD", "LTC/USD")
ORIGIN = datetime(2026, 3, 1, tzinfo=UTC)
DAYS = 20
HOUR, H4 = timedelta(hours=1), timedelta(hours=4)
MODEL = "models:/four-hour/1"
START = ORIGIN + timedelta(days=10)  # 60 4h bars before it: the features' warm-up and the lookback
HOURS = 48


@pytest.fixture
def store(tmp_path: Path) -> BarStore:
    store = BarStore(tmp_path / "store")
    source = SyntheticBarSource(SyntheticMarketConfig(seed=3, symbols=SYMBOLS, plant_strength=1.0, origin=ORIGIN))
    for symbol in SYMBOLS:
        ingest_symbol(source, store, symbol, Interval.H1, IngestWindow(ORIGIN, ORIGIN + timedelta(days=DAYS)))
    return store


def panel_at(store: BarStore, interval: Interval) -> MarketPanel:
    return panel_from_store(store, SYMBOLS, interval=interval, base_interval=Interval.H1)


def four_hour_model(store: BarStore) -> TradingModel:
    panel = panel_at(store, Interval.H4)
    assert panel.interval is Interval.H4
    return model_for(panel, PhasePolicy, model_id=MODEL)


def hours(start: datetime, count: int) -> list[datetime]:
    return [start + k * HOUR for k in range(count)]


def test_the_rule_names_the_4h_bar_that_closed_with_a_1h_bar_and_no_other() -> None:
    at = datetime(2026, 3, 6, tzinfo=UTC)
    assert [closed_bar(at + k * HOUR, Interval.H1, Interval.H4) for k in range(8)] == \
        [None, None, None, at, None, None, None, at + H4]
    assert closed_bar(at, Interval.H1, Interval.H1) == at
    with pytest.raises(ValueError, match="not a whole multiple"):
        closed_bar(at, Interval.H4, Interval.H1)


def test_a_4h_sandbox_model_makes_one_decision_per_closed_4h_bar_and_replays_in_the_4h_backtest(
        engine: Engine, store: BarStore) -> None:
    model = four_hour_model(store)
    sandbox = Sandbox(engine, StoreBarProvider(store, SYMBOLS, Interval.H1), load_model={MODEL: model}.__getitem__,
                      clock=FixedClock(START))
    run = sandbox.start(MODEL, start=START, period=timedelta(days=3))
    assert run.interval is Interval.H4  # a 4h model is taken, not refused

    decided = {}
    for clock_bar in hours(START, HOURS):
        for trader_id, outcome in sandbox.step_all(clock_bar).items():
            decided[clock_bar] = outcome

    assert len(decided) == HOURS // 4
    assert all(outcome.bar_time == clock_bar + HOUR - H4 for clock_bar, outcome in decided.items())
    assert {outcome.status for outcome in decided.values()} == {StepStatus.TRADED}
    entries = sandbox.journal.entries(run.trader_id)
    assert [e.bar_time for e in entries] == [START + k * H4 for k in range(HOURS // 4)]
    parity = replay_parity(entries, sandbox.trader(run.trader_id).model, panel_at(store, Interval.H4))
    assert parity.within_tolerance and parity.bars == HOURS // 4, parity.to_dict()
    assert sum(len(e.orders) for e in entries) >= 4 and entries[-1].equity != entries[0].equity  # it did trade


def _site(engine: Engine, store: BarStore, tmp_path: Path, model: TradingModel) -> LifecycleSite:
    settings = load_settings(home=tmp_path / "home", symbols=SYMBOLS)
    return LifecycleSite(settings, engine, StoreBarProvider(store, SYMBOLS, Interval.H1), {MODEL: model}.__getitem__,
                         FixedClock(START))


def test_the_production_trader_steps_a_4h_model_only_when_a_4h_bar_closed(
        engine: Engine, store: BarStore, tmp_path: Path) -> None:
    model = four_hour_model(store)
    site = _site(engine, store, tmp_path, model)
    site.store.move(MODEL, Stage.SANDBOX, who="test", why="setup", at=START)
    site.store.move(MODEL, Stage.PRODUCTION, who="test", why="setup", at=START)

    steps = {clock_bar: step_production(site, clock_bar) for clock_bar in hours(START, HOURS)}

    traded = {bar: s for bar, s in steps.items() if s.status != NO_NEW_BAR}
    assert len(traded) == HOURS // 4 and {s.status for s in traded.values()} == {"traded"}
    assert all(s.bar_time == (bar + HOUR - H4).isoformat() for bar, s in traded.items())
    idle = [s for s in steps.values() if s.status == NO_NEW_BAR]
    assert len(idle) == HOURS - HOURS // 4
    assert "trades 4h bars: none closed at" in idle[0].message and "\n" not in idle[0].message
    entries = site.journal.entries(production_trader_id(MODEL))
    assert [e.bar_time for e in entries] == [START + k * H4 for k in range(HOURS // 4)]
    cash = replace(model.env_config, initial_cash=site.settings.production_cash)
    parity = replay_parity(entries, replace(model, env_config=cash), panel_at(store, Interval.H4))
    assert parity.within_tolerance, parity.to_dict()


def test_the_replay_steps_a_4h_model_on_the_1h_clock_by_the_same_rule(
        engine: Engine, store: BarStore, tmp_path: Path) -> None:
    model = four_hour_model(store)
    settings = load_settings(home=tmp_path / "home", symbols=SYMBOLS)
    plan = plan_replay(settings, panel_at(store, Interval.H4), START, START + HOURS * HOUR,
                       build=lambda interval: panel_at(store, interval))
    assert plan.site.bars.interval is Interval.H1 and len(plan.bar_times) == HOURS  # the base clock
    plan = replace(plan, site=replace(plan.site, engine=engine, load_model={MODEL: model}.__getitem__, tracking=None))

    report = replay_lifecycle(plan, [MODEL], sandbox_days=1.0)

    trader_id = sandbox_trader_id(MODEL)
    assert report.steps[trader_id] == {"traded": 24 // 4}  # one day of 4h bars
    entries = plan.site.journal.entries(trader_id)
    assert [e.bar_time for e in entries] == [START + k * H4 for k in range(6)]
    parity = replay_parity(entries, replace(model, env_config=replace(model.env_config, initial_cash=10_000.0)),
                           plan.panel)
    assert parity.within_tolerance, parity.to_dict()
    production = [e.bar_time for e in plan.site.journal.entries(production_trader_id(MODEL))]
    assert all(int(t.timestamp()) % Interval.H4.seconds == 0 for t in production)  # 4h bars only, if promoted


def test_the_live_trader_steps_a_4h_model_by_the_same_rule_and_allocates_only_when_it_trades(
        engine: Engine, store: BarStore, tmp_path: Path, fake_alpaca: FakeAlpacaServer) -> None:
    fake_alpaca.require_auth(LIVE_KEY, LIVE_SECRET)
    fake_alpaca.trading.configure(cash=100_000.0, fill_mode="immediate")
    model = four_hour_model(store)
    settings = load_settings(home=tmp_path / "home", symbols=SYMBOLS, live_enabled=True, live_api_key=LIVE_KEY,
                             live_secret_key=LIVE_SECRET, alpaca_live_url=fake_alpaca.url, live_capital=10_000.0)
    site = LifecycleSite(settings, engine, StoreBarProvider(store, SYMBOLS, Interval.H1),
                         {MODEL: model}.__getitem__, FixedClock(START))
    site.store.move(MODEL, Stage.SANDBOX, who="test", why="setup", at=START - HOUR)
    site.store.move(MODEL, Stage.PRODUCTION, who="test", why="setup", at=START - HOUR)
    go_live(site, MODEL, *grant_live(site, MODEL, START, Approval(True, "test", "owner")), at=START)
    closes = panel_at(store, Interval.H1)

    steps = []
    for clock_bar in hours(START, 12):
        row = int(np.searchsorted(closes.timestamps, bar_time_ns(clock_bar)))
        fake_alpaca.trading.configure(prices=dict(zip(SYMBOLS, closes.close[row].tolist())))
        steps.append(step_live(site, clock_bar))

    assert [s.status for s in steps] == (["no_new_bar"] * 3 + ["traded"]) * 3
    assert [s.bar_time for s in steps if s.status == "traded"] == \
        [(START + k * H4).isoformat() for k in range(3)]
    assert all(s.allocation is None for s in steps if s.status == "no_new_bar")
    assert [a.effective_bar for a in allocations(engine, live_trader_id(MODEL), START)][:1] == [START]
    assert [e.bar_time for e in site.journal.entries(live_trader_id(MODEL))] == [START + k * H4 for k in range(3)]
