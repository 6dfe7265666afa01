"""Demotion: a live model that breaks a limit goes back to paper, its SimBroker book flattened, all recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine

from cappuccino_core.clock import FixedClock
from cappuccino_core.data.intervals import Interval
from cappuccino_core.accounting import ExecutionCosts
from cappuccino_core.lifecycle.demotion import DemotionConfig, NoLiveModel, demote_live, enforce_verdict
from cappuccino_core.lifecycle.kill_switch import KillSwitch
from cappuccino_core.lifecycle.limits import MonitorConfig, evaluate_limits
from cappuccino_core.lifecycle.stages import Role, Stage
from cappuccino_core.lifecycle.store import LifecycleStore
from cappuccino_core.lifecycle.track_record import TrackRecord
from cappuccino_core.trading.broker import BrokerUnavailable, OrderSide
from cappuccino_core.trading.sim_broker import SimBroker

T0 = datetime(2024, 6, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
PRICES = {"BTC/USD": 50_000.0, "ETH/USD": 2_500.0}
LIVE, CHALLENGER = "models:/cappuccino-ppo/1", "models:/cappuccino-ppo/2"


@pytest.fixture
def store(engine: Engine) -> LifecycleStore:
    return LifecycleStore(engine)


@pytest.fixture
def live_book(engine: Engine) -> SimBroker:
    """A live account (simulated) holding BTC and ETH."""
    broker = SimBroker(engine, "live", costs=ExecutionCosts(), initial_cash=10_000.0, clock=FixedClock(T0))
    broker.on_bar(T0, PRICES, PRICES)
    broker.submit_order("BTC/USD", OrderSide.BUY, notional=3_000.0, client_order_id="b1")
    broker.submit_order("ETH/USD", OrderSide.BUY, notional=2_000.0, client_order_id="e1")
    broker.on_bar(T0 + HOUR, PRICES, PRICES)
    assert set(broker.positions()) == {"BTC/USD", "ETH/USD"}
    return broker


def go_live(store: LifecycleStore, model: str = LIVE) -> None:
    for i, stage in enumerate([Stage.SANDBOX, Stage.PRODUCTION, Stage.LIVE]):
        store.move(model, stage, who="test", why=f"to {stage}", at=T0 + i * HOUR)


def next_bar(broker: SimBroker, hours: int = 2) -> None:
    broker.on_bar(T0 + hours * HOUR, PRICES, PRICES)


def test_a_model_that_held_both_roles_returns_to_production_and_its_live_book_is_flattened(
        store: LifecycleStore, live_book: SimBroker) -> None:
    go_live(store)
    result = demote_live(store, reason="drawdown 11 %", who="monitor", at=T0 + 2 * HOUR, broker=live_book,
                         figures={"drawdown": 0.11})

    assert (result.transition.from_stage, result.transition.to_stage) == (Stage.LIVE, Stage.PRODUCTION)
    assert store.holders() == {Role.PRODUCTION: LIVE, Role.LIVE: None}
    assert result.production_after == LIVE
    assert sorted(o.symbol for o in result.closing_orders) == ["BTC/USD", "ETH/USD"]
    next_bar(live_book)
    assert live_book.positions() == {}
    recorded = store.transitions(LIVE)[-1]
    assert (recorded.who, recorded.why) == ("monitor", "drawdown 11 %")
    assert recorded.figures["drawdown"] == 0.11
    assert recorded.figures["demotion"] == {"requested": "production", "flatten": True, "held_production": True}


def test_a_live_model_beaten_on_paper_meanwhile_is_retired_and_production_keeps_the_winner(
        store: LifecycleStore, live_book: SimBroker) -> None:
    go_live(store)
    store.move(CHALLENGER, Stage.SANDBOX, who="arena", why="promoted", at=T0)
    store.move(CHALLENGER, Stage.PRODUCTION, who="flow:promotion", why="beat it", at=T0 + HOUR)

    result = demote_live(store, reason="daily loss", who="monitor", at=T0 + 2 * HOUR, broker=live_book)

    assert result.transition.to_stage is Stage.RETIRED
    assert f"{CHALLENGER} holds production" in result.transition.why
    assert store.holders() == {Role.PRODUCTION: CHALLENGER, Role.LIVE: None}


def test_demotion_configured_to_retire_frees_production_for_the_next_promotion(
        store: LifecycleStore, live_book: SimBroker) -> None:
    go_live(store)
    result = demote_live(store, reason="errors", who="monitor", at=T0 + 2 * HOUR, broker=live_book,
                         config=DemotionConfig(target=Stage.RETIRED))
    assert store.stage_of(LIVE) is Stage.RETIRED
    assert store.holders() == {Role.PRODUCTION: None, Role.LIVE: None} and result.production_after is None


def test_flattening_can_be_switched_off(store: LifecycleStore, live_book: SimBroker) -> None:
    go_live(store)
    result = demote_live(store, reason="r", who="monitor", at=T0 + 2 * HOUR, config=DemotionConfig(flatten=False))
    next_bar(live_book)
    assert result.closing_orders == () and set(live_book.positions()) == {"BTC/USD", "ETH/USD"}


def test_nothing_moves_without_a_live_model_or_without_the_broker_to_flatten(store: LifecycleStore) -> None:
    with pytest.raises(NoLiveModel):
        demote_live(store, reason="r", who="monitor", at=T0, config=DemotionConfig(flatten=False))
    go_live(store)
    with pytest.raises(ValueError, match="needs the live broker"):
        demote_live(store, reason="r", who="monitor", at=T0 + 3 * HOUR)
    assert store.holder(Role.LIVE) == LIVE


class DownBroker:
    """A live broker that cannot be reached."""

    def close_all(self) -> list:
        raise BrokerUnavailable("close all: retries exhausted")


def test_a_broker_failure_while_flattening_propagates_after_the_model_left_live(store: LifecycleStore) -> None:
    go_live(store)
    with pytest.raises(BrokerUnavailable):
        demote_live(store, reason="r", who="monitor", at=T0 + 3 * HOUR, broker=DownBroker())  # type: ignore[arg-type]
    assert store.holder(Role.LIVE) is None


# -- on each monitoring limit ------------------------------------------------------------------------


def steady(n: int) -> np.ndarray:
    return np.where(np.arange(n) % 2 == 0, 0.002, -0.001)


def losing_day() -> np.ndarray:
    return np.full(24, (1 - 0.01) ** (1 / 24) - 1)


BREAKING = {  # a record (returns, error hours before the end) that breaks only the named limit
    "drawdown": (np.concatenate([steady(6), [-0.12, 1 / 0.88 - 1], steady(16)]), ()),
    "rolling_sharpe": (np.concatenate([steady(24), np.tile([0.002, -0.0021], 7 * 12)]), ()),
    "daily_loss": (np.concatenate([steady(24), np.full(24, (1 - 0.06) ** (1 / 24) - 1), steady(4)]), ()),
    "losing_days": (np.concatenate([steady(24), losing_day(), losing_day(), losing_day()]), ()),
    "errors": (steady(30), (1, 2, 3)),
}


@pytest.mark.parametrize("limit", list(BREAKING))
def test_breaking_each_monitoring_limit_demotes_the_live_model_to_paper(
        store: LifecycleStore, live_book: SimBroker, engine: Engine, limit: str) -> None:
    returns, error_hours = BREAKING[limit]
    times = tuple(T0 + i * HOUR for i in range(len(returns)))
    track = TrackRecord(T0 - HOUR, times, returns, np.zeros(len(returns)), Interval.H1,
                        tuple(times[-1] - h * HOUR for h in error_hours))
    config = MonitorConfig(max_losing_days=None) if limit == "rolling_sharpe" else MonitorConfig()
    verdict = evaluate_limits(track, as_of=track.end, config=config)
    assert verdict.breached == (limit,), verdict.reasons()
    go_live(store)

    result = enforce_verdict(store, verdict, switch=KillSwitch(engine), who="monitor", broker=live_book)

    assert result is not None and result.transition.to_stage is Stage.PRODUCTION
    assert store.holders() == {Role.PRODUCTION: LIVE, Role.LIVE: None}
    assert limit in result.transition.why
    assert result.transition.figures["verdict"]["breached"] == [limit]
    assert not KillSwitch(engine).is_halted()
    next_bar(live_book, hours=3)
    assert live_book.positions() == {}


def test_a_verdict_below_critical_changes_nothing(store: LifecycleStore, engine: Engine) -> None:
    go_live(store)
    returns = steady(30)
    track = TrackRecord(T0 - HOUR, tuple(T0 + i * HOUR for i in range(30)), returns, np.zeros(30), Interval.H1,
                        (T0 + 20 * HOUR,))
    verdict = evaluate_limits(track, as_of=track.end)
    assert verdict.level.value == "warning"
    assert enforce_verdict(store, verdict, switch=KillSwitch(engine), who="monitor") is None
    assert store.holder(Role.LIVE) == LIVE


def test_an_emergency_demotes_and_halts_all_trading(store: LifecycleStore, live_book: SimBroker,
                                                    engine: Engine) -> None:
    go_live(store)
    returns = np.concatenate([steady(10), [-0.2], steady(3)])
    track = TrackRecord(T0 - HOUR, tuple(T0 + i * HOUR for i in range(len(returns))), returns,
                        np.zeros(len(returns)), Interval.H1)
    verdict = evaluate_limits(track, as_of=track.end)

    result = enforce_verdict(store, verdict, switch=KillSwitch(engine), who="monitor", broker=live_book)

    assert result is not None and store.holder(Role.LIVE) is None
    state = KillSwitch(engine).state()
    assert state.halted and "total_loss" in (state.reason or "") and state.who == "monitor"
