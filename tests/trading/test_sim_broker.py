"""SimBroker: fills at the next bar's open with the training environment's costs, and a ledger that persists."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import torch
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from cappuccino_core.clock import FixedClock
from cappuccino_core.db import session_factory
from cappuccino_core.accounting import ExecutionCosts, execute_actions, fill_order
from cappuccino_core.trading.broker import InsufficientFunds, OrderSide, OrderStatus
from cappuccino_core.trading.sim_broker import SimBroker, SimOrderRow

if TYPE_CHECKING:  # the conftest is pytest's, not a module to import at run time
    from tests.trading.conftest import Ledger

T0 = datetime(2024, 5, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
COSTS = ExecutionCosts(fee_rate=0.0025, slippage_bps=5.0, min_order_notional=1.0)


def open_broker(ledger: Ledger, engine: Engine | None = None, name: str = "model-a", *, cash: float = 10_000.0,
                clock: FixedClock | None = None, min_qty: dict[str, float] | None = None) -> SimBroker:
    """Open this test's account ``name`` on ``engine`` (a new engine on the ledger by default)."""
    return SimBroker(engine or ledger.open_engine(), ledger.account(name), costs=COSTS, initial_cash=cash,
                     clock=clock or FixedClock(T0), min_qty=min_qty)


# -- the costs are the environment's --------------------------------------------------------


def test_fill_order_charges_a_hand_worked_fee_and_slippage() -> None:
    buy = fill_order("buy", 100.0, COSTS, quantity=10.0)
    assert buy.price == pytest.approx(100.05)  # 5 bps against the buyer
    assert buy.notional == pytest.approx(1_000.5)
    assert buy.fee == pytest.approx(2.50125)  # 0.25 % of the filled notional
    assert buy.cash_change == pytest.approx(-1_003.00125)
    sell = fill_order("sell", 100.0, COSTS, quantity=10.0)
    assert (sell.price, sell.notional) == (pytest.approx(99.95), pytest.approx(999.5))
    assert sell.cash_change == pytest.approx(999.5 - 2.49875)
    by_notional = fill_order("buy", 100.0, COSTS, notional=1_003.00125)
    assert by_notional.units == pytest.approx(10.0) and by_notional.cash_change == pytest.approx(-1_003.00125)


def test_fill_order_books_exactly_what_execute_actions_books() -> None:
    prices = torch.tensor([[250.0, 40.0]], dtype=torch.float64)
    cash, holdings = torch.tensor([1_000.0], dtype=torch.float64), torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    # Sell the whole first holding, then spend all the cash on the second asset.
    fills = execute_actions(cash, holdings, torch.tensor([[-1.0, 1.0]], dtype=torch.float64), prices, COSTS)

    sell = fill_order("sell", 250.0, COSTS, quantity=2.0)
    buy = fill_order("buy", 40.0, COSTS, notional=1_000.0 + sell.cash_change)
    assert fills.units[0, 0].item() == pytest.approx(-sell.units, rel=1e-12)
    assert fills.units[0, 1].item() == pytest.approx(buy.units, rel=1e-12)
    assert fills.fees[0].item() == pytest.approx(sell.fee + buy.fee, rel=1e-12)
    assert fills.cash[0].item() == pytest.approx(1_000.0 + sell.cash_change + buy.cash_change, abs=1e-9)


def test_fill_order_refuses_a_bad_side_price_or_amount() -> None:
    with pytest.raises(ValueError, match="side"):
        fill_order("hold", 100.0, COSTS, quantity=1.0)
    with pytest.raises(ValueError, match="price"):
        fill_order("buy", 0.0, COSTS, quantity=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        fill_order("buy", 100.0, COSTS, quantity=1.0, notional=100.0)


# -- execution ----------------------------------------------------------------------------


def test_an_order_fills_at_the_next_bars_open_with_fee_and_slippage(ledger: Ledger) -> None:
    broker = open_broker(ledger)
    broker.on_bar(T0, {"BTC/USD": 100.0}, {"BTC/USD": 101.0})
    order = broker.submit_order("BTC/USD", OrderSide.BUY, qty=10.0, client_order_id="b1")
    assert order.status == OrderStatus.NEW and broker.positions() == {}

    touched = broker.on_bar(T0 + HOUR, {"BTC/USD": 110.0}, {"BTC/USD": 120.0})

    assert [o.id for o in touched] == [order.id]
    filled = broker.get_order(order.id)
    expected = fill_order("buy", 110.0, COSTS, quantity=10.0)
    assert filled.filled_avg_price == pytest.approx(110.0 * 1.0005)
    assert filled.fee == pytest.approx(expected.fee)
    assert filled.filled_at == T0 + HOUR
    assert broker.account().cash == pytest.approx(10_000.0 + expected.cash_change)
    assert broker.account().equity == pytest.approx(10_000.0 + expected.cash_change + 10.0 * 120.0)
    assert broker.positions()["BTC/USD"].market_value == pytest.approx(1_200.0)
    assert [(f.units, f.price) for f in broker.fills()] == [(10.0, pytest.approx(110.055))]


def test_pending_sells_fill_before_buys_so_their_proceeds_pay_for_the_buys(ledger: Ledger) -> None:
    broker = open_broker(ledger, cash=1_000.0)
    broker.on_bar(T0, {"ETH/USD": 10.0, "BTC/USD": 100.0}, {"ETH/USD": 10.0, "BTC/USD": 100.0})
    broker.submit_order("ETH/USD", OrderSide.BUY, notional=500.0, client_order_id="eth")
    broker.on_bar(T0 + HOUR, {"ETH/USD": 10.0, "BTC/USD": 100.0}, {"ETH/USD": 10.0, "BTC/USD": 100.0})
    # 4.9 BTC costs about 541 at 110: the cash left (500) falls short unless the ETH is sold first.
    eth_units = broker.positions()["ETH/USD"].qty
    broker.submit_order("BTC/USD", OrderSide.BUY, qty=4.9, client_order_id="btc")
    broker.submit_order("ETH/USD", OrderSide.SELL, qty=eth_units, client_order_id="sell-eth")
    prices = {"ETH/USD": 10.0, "BTC/USD": 110.0}
    broker.on_bar(T0 + 2 * HOUR, prices, prices)

    assert broker.get_order("btc").status == OrderStatus.FILLED
    assert [f.side for f in broker.fills()] == [OrderSide.BUY, OrderSide.SELL, OrderSide.BUY]
    assert broker.account().cash >= 0


def test_an_order_that_no_longer_fits_at_the_fill_price_is_rejected_with_its_reason(ledger: Ledger) -> None:
    broker = open_broker(ledger, cash=1_000.0)
    broker.on_bar(T0, {"BTC/USD": 100.0}, {"BTC/USD": 100.0})
    broker.submit_order("BTC/USD", OrderSide.BUY, qty=9.9, client_order_id="tight")
    broker.on_bar(T0 + HOUR, {"BTC/USD": 105.0}, {"BTC/USD": 105.0})

    rejected = broker.get_order("tight")
    assert rejected.status == OrderStatus.REJECTED
    assert "insufficient cash" in rejected.reason
    assert broker.account().cash == 1_000.0 and broker.positions() == {} and broker.fills() == []


def test_an_order_without_a_price_this_bar_stays_pending(ledger: Ledger) -> None:
    broker = open_broker(ledger)
    broker.on_bar(T0, {"BTC/USD": 100.0, "LTC/USD": 50.0}, {"BTC/USD": 100.0, "LTC/USD": 50.0})
    broker.submit_order("LTC/USD", OrderSide.BUY, qty=1.0, client_order_id="ltc")
    assert broker.on_bar(T0 + HOUR, {"BTC/USD": 100.0}, {"BTC/USD": 100.0}) == []
    assert broker.get_order("ltc").status == OrderStatus.NEW
    broker.on_bar(T0 + 2 * HOUR, {"LTC/USD": 51.0}, {"LTC/USD": 51.0})
    assert broker.get_order("ltc").status == OrderStatus.FILLED


def test_buying_twice_averages_the_entry_price_by_units(ledger: Ledger) -> None:
    broker = open_broker(ledger, cash=100_000.0)
    broker.on_bar(T0, {"ETH/USD": 100.0}, {"ETH/USD": 100.0})
    broker.submit_order("ETH/USD", OrderSide.BUY, qty=1.0, client_order_id="a")
    broker.on_bar(T0 + HOUR, {"ETH/USD": 100.0}, {"ETH/USD": 100.0})
    broker.submit_order("ETH/USD", OrderSide.BUY, qty=3.0, client_order_id="b")
    broker.on_bar(T0 + 2 * HOUR, {"ETH/USD": 200.0}, {"ETH/USD": 200.0})
    assert broker.positions()["ETH/USD"].avg_entry_price == pytest.approx((100.05 + 3 * 200.1) / 4)


def test_a_closing_sell_below_the_minimum_quantity_is_rejected_when_it_would_fill(ledger: Ledger) -> None:
    broker = open_broker(ledger, min_qty={"BTC/USD": 0.0001})
    broker.on_bar(T0, {"BTC/USD": 40_000.0}, {"BTC/USD": 40_000.0})
    broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.0002, client_order_id="buy")
    broker.on_bar(T0 + HOUR, {"BTC/USD": 40_000.0}, {"BTC/USD": 40_000.0})
    broker.submit_order("BTC/USD", OrderSide.SELL, qty=0.00015, client_order_id="sell")
    broker.on_bar(T0 + 2 * HOUR, {"BTC/USD": 40_000.0}, {"BTC/USD": 40_000.0})

    (dust,) = broker.close_all()
    broker.on_bar(T0 + 3 * HOUR, {"BTC/USD": 40_000.0}, {"BTC/USD": 40_000.0})
    refused = broker.get_order(dust.id)
    assert refused.status == OrderStatus.REJECTED and "below the minimum" in refused.reason
    assert broker.positions()["BTC/USD"].qty == pytest.approx(0.00005)


def test_submission_checks_use_the_latest_close_as_the_price(ledger: Ledger) -> None:
    broker = open_broker(ledger, cash=1_000.0)
    broker.on_bar(T0, {"BTC/USD": 100.0}, {"BTC/USD": 200.0})
    with pytest.raises(InsufficientFunds, match="requested: 1"):
        broker.submit_order("BTC/USD", OrderSide.BUY, qty=5.0, client_order_id="at-200")  # ~1003 at 200
    broker.submit_order("BTC/USD", OrderSide.BUY, qty=4.9, client_order_id="fits")


@pytest.mark.parametrize("problem, opens, closes, match", [
    ("naive time", {"BTC/USD": 1.0}, {"BTC/USD": 1.0}, "naive"),
    ("no close", {"BTC/USD": 1.0}, {}, "no close price for BTC/USD"),
    ("nan open", {"BTC/USD": math.nan}, {"BTC/USD": 1.0}, "open price of BTC/USD"),
    ("zero close", {"BTC/USD": 1.0}, {"BTC/USD": 0.0}, "close price of BTC/USD"),
])
def test_on_bar_refuses_bad_bars(ledger: Ledger, problem: str, opens: dict, closes: dict, match: str) -> None:
    broker = open_broker(ledger)
    when = T0.replace(tzinfo=None) if problem == "naive time" else T0
    with pytest.raises(ValueError, match=match):
        broker.on_bar(when, opens, closes)


def test_on_bar_refuses_a_bar_that_is_not_after_the_last_one(ledger: Ledger) -> None:
    broker = open_broker(ledger)
    broker.on_bar(T0 + HOUR, {"BTC/USD": 1.0}, {"BTC/USD": 1.0})
    for when in (T0 + HOUR, T0):
        with pytest.raises(ValueError, match="not after the last bar"):
            broker.on_bar(when, {"BTC/USD": 1.0}, {"BTC/USD": 1.0})


# -- the ledger ---------------------------------------------------------------------------


def test_a_restarted_broker_on_the_same_database_sees_the_same_state(ledger: Ledger) -> None:
    clock = FixedClock(T0)
    first = open_broker(ledger, clock=clock)
    first.on_bar(T0, {"BTC/USD": 100.0}, {"BTC/USD": 100.0})
    first.submit_order("BTC/USD", OrderSide.BUY, qty=20.0, client_order_id="filled")
    first.on_bar(T0 + HOUR, {"BTC/USD": 100.0}, {"BTC/USD": 105.0})
    pending = first.submit_order("BTC/USD", OrderSide.SELL, qty=5.0, client_order_id="pending")
    state = (first.account(), first.positions(), first.orders(), first.fills())

    restarted = open_broker(ledger, clock=clock)  # a new engine: a new process
    assert (restarted.account(), restarted.positions(), restarted.orders(), restarted.fills()) == state
    assert restarted.submit_order("BTC/USD", OrderSide.SELL, qty=5.0, client_order_id="pending") == pending
    restarted.on_bar(T0 + 2 * HOUR, {"BTC/USD": 110.0}, {"BTC/USD": 110.0})
    assert restarted.positions()["BTC/USD"].qty == pytest.approx(15.0)
    with pytest.raises(ValueError, match="not after the last bar"):
        open_broker(ledger, clock=clock).on_bar(T0 + 2 * HOUR, {"BTC/USD": 1.0}, {"BTC/USD": 1.0})


def test_accounts_sharing_one_database_are_independent(ledger: Ledger) -> None:
    engine = ledger.open_engine()
    a, b = open_broker(ledger, engine, "model-a", cash=1_000.0), open_broker(ledger, engine, "model-b", cash=5_000.0)
    for broker in (a, b):
        broker.on_bar(T0, {"ETH/USD": 10.0}, {"ETH/USD": 10.0})
    order_a = a.submit_order("ETH/USD", OrderSide.BUY, qty=10.0, client_order_id="same-id")
    order_b = b.submit_order("ETH/USD", OrderSide.BUY, qty=20.0, client_order_id="same-id")
    a.on_bar(T0 + HOUR, {"ETH/USD": 10.0}, {"ETH/USD": 10.0})

    assert order_a.id != order_b.id
    assert a.get_order("same-id").status == OrderStatus.FILLED
    assert b.get_order("same-id").status == OrderStatus.NEW
    assert b.positions() == {} and b.account().cash == 5_000.0


def test_the_database_itself_refuses_a_second_order_with_the_same_client_order_id(ledger: Ledger) -> None:
    engine = ledger.open_engine()
    broker = open_broker(ledger, engine)
    broker.on_bar(T0, {"ETH/USD": 10.0}, {"ETH/USD": 10.0})
    order = broker.submit_order("ETH/USD", OrderSide.BUY, qty=1.0, client_order_id="unique")
    with pytest.raises(IntegrityError), session_factory(engine).begin() as session:
        session.add(SimOrderRow(id=str(uuid.uuid4()), account_id=ledger.account("model-a"), seq=99,
                                client_order_id="unique", symbol="ETH/USD", side="buy", qty=1.0, status="new",
                                filled_qty=0.0, submitted_at=order.submitted_at))
    assert len(broker.orders()) == 1


def test_reopening_an_account_with_another_initial_cash_is_refused(ledger: Ledger) -> None:
    engine = ledger.open_engine()
    open_broker(ledger, engine, cash=1_000.0)
    with pytest.raises(ValueError, match="stored with initial cash 1000.0"):
        open_broker(ledger, engine, cash=2_000.0)


def test_times_read_back_from_the_ledger_are_utc_aware(ledger: Ledger) -> None:
    broker = open_broker(ledger, clock=FixedClock(datetime(2024, 5, 1, 2, 30, tzinfo=UTC)))
    order = broker.submit_order("ETH/USD", OrderSide.BUY, qty=1.0, client_order_id="t")
    stored = broker.get_order(order.id).submitted_at
    assert stored == datetime(2024, 5, 1, 2, 30, tzinfo=UTC) and stored.tzinfo is not None
