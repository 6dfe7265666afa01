"""The one contract every Broker honours, run against SimBroker (SQLite, PostgreSQL) and AlpacaBroker.

A ``Venue`` wraps a broker with the few things only its market can do: set prices, let
pending orders fill (``settle``: the sim's next bar, the fake Alpaca's fill), and count the
orders it holds. The fake Alpaca runs in ``manual`` fill mode so orders stay open until
``settle``, as the sim's do until the next bar.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from cappuccino_core.clock import FixedClock
from cappuccino_core.accounting import ExecutionCosts
from cappuccino_core.trading.alpaca_broker import AlpacaBroker
from cappuccino_core.trading.broker import (
    Broker,
    InsufficientFunds,
    InvalidOrder,
    Order,
    OrderNotFound,
    OrderSide,
    OrderStatus,
)
from cappuccino_core.trading.sim_broker import SimBroker
from tests.fakes.alpaca_server import FakeAlpacaServer, assert_local_url

if TYPE_CHECKING:  # the conftest is pytest's, not a module to import at run time
    from tests.trading.conftest import Ledger

CASH = 100_000.0
START_PRICES = {"BTC/USD": 40_000.0, "ETH/USD": 2_000.0}
MIN_QTY = {"BTC/USD": 0.0001}
KEY = "PKCONTRACTKEY000001"
SECRET = "contract-secret-never-printed"
T0 = datetime(2024, 3, 1, tzinfo=UTC)


@dataclass
class Venue:
    """A broker under test and the hooks of its market."""

    name: str
    broker: Broker
    new_broker: Callable[[], Broker]
    settle: Callable[[], None]
    set_prices: Callable[[dict[str, float]], None]
    order_count: Callable[[], int]
    burst_429: Callable[[int], None] | None = None
    urls: list[str] = field(default_factory=list)


def sim_venue(name: str, ledger: Ledger) -> Venue:
    """A SimBroker venue: ``settle`` processes the next hourly bar at the current prices."""
    clock = FixedClock(T0)
    account_id = ledger.account("contract")
    engine = ledger.open_engine()

    def new_broker() -> SimBroker:
        return SimBroker(engine, account_id, costs=ExecutionCosts(), initial_cash=CASH, clock=clock,
                         min_qty=MIN_QTY)

    broker = new_broker()
    prices = dict(START_PRICES)
    bars = [T0]
    broker.on_bar(T0, prices, prices)  # a first bar, so the sim knows prices at submission

    def settle() -> None:
        bars.append(bars[-1] + timedelta(hours=1))
        clock.set(bars[-1])
        broker.on_bar(bars[-1], prices, prices)

    return Venue(name, broker, new_broker, settle, prices.update, lambda: len(broker.orders()))


def alpaca_venue(server: FakeAlpacaServer) -> Venue:
    """An AlpacaBroker venue over the fake: ``settle`` fills the open orders."""
    server.trading.configure(cash=CASH, prices=START_PRICES, min_qty=MIN_QTY, fill_mode="manual")
    server.require_auth(KEY, SECRET)

    def new_broker() -> AlpacaBroker:
        return AlpacaBroker(KEY, SECRET, paper=True, url_override=server.url, max_retries=5,
                            backoff_seconds=0.5, sleep=lambda seconds: None, timeout_seconds=5.0)

    broker = new_broker()

    def set_prices(prices: dict[str, float]) -> None:
        for symbol, price in prices.items():
            server.trading.set_price(symbol, price)

    def burst(times: int) -> None:
        server.fail_next(status=429, json_body={"message": "too many requests."}, path="/v2/orders", times=times)

    return Venue("alpaca", broker, new_broker, lambda: server.trading.fill_open_orders() and None, set_prices,
                 lambda: len(server.trading.orders), burst, [broker.base_url, server.url])


@pytest.fixture(params=["sim-sqlite", pytest.param("sim-postgres", marks=pytest.mark.postgres), "alpaca"])
def venue(request: pytest.FixtureRequest) -> Venue:
    """Each broker in turn."""
    if request.param == "alpaca":
        return alpaca_venue(request.getfixturevalue("fake_alpaca"))
    ledger = request.getfixturevalue("ledger_for")("sqlite" if request.param == "sim-sqlite" else "postgres")
    return sim_venue(request.param, ledger)


def spent(order: Order) -> float:
    """Cash an order moved: filled notional plus the fee the broker reports (none for Alpaca's fake)."""
    assert order.filled_avg_price is not None
    return order.filled_qty * order.filled_avg_price + (order.fee or 0.0)


def received(order: Order) -> float:
    assert order.filled_avg_price is not None
    return order.filled_qty * order.filled_avg_price - (order.fee or 0.0)


# -- the contract --------------------------------------------------------------------------------


def test_every_broker_satisfies_the_protocol_and_only_talks_to_this_machine(venue: Venue) -> None:
    assert isinstance(venue.broker, Broker)
    for url in venue.urls:
        assert_local_url(url)


def test_a_new_account_holds_its_cash_and_no_positions(venue: Venue) -> None:
    account = venue.broker.account()
    assert (account.cash, account.equity, account.currency) == (CASH, CASH, "USD")
    assert venue.broker.positions() == {}


def test_buys_stay_open_until_the_market_fills_them_then_become_positions_paid_in_cash(venue: Venue) -> None:
    btc = venue.broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.5, client_order_id="buy-btc")
    eth = venue.broker.submit_order("ETH/USD", OrderSide.BUY, notional=1_000.0, client_order_id="buy-eth")
    assert btc.status.is_open and eth.status.is_open
    assert (btc.qty, btc.notional, eth.qty, eth.notional) == (0.5, None, None, 1_000.0)
    assert venue.broker.positions() == {}

    venue.settle()
    btc, eth = venue.broker.get_order(btc.id), venue.broker.get_order(eth.id)
    assert btc.status == eth.status == OrderStatus.FILLED
    assert btc.filled_qty == pytest.approx(0.5)
    assert spent(eth) == pytest.approx(1_000.0)
    positions = venue.broker.positions()
    assert list(positions) == ["BTC/USD", "ETH/USD"]
    assert positions["BTC/USD"].qty == pytest.approx(0.5)
    assert positions["BTC/USD"].avg_entry_price == pytest.approx(btc.filled_avg_price)
    assert positions["ETH/USD"].qty == pytest.approx(eth.filled_qty)
    account = venue.broker.account()
    assert account.cash == pytest.approx(CASH - spent(btc) - spent(eth))
    value = sum(p.market_value for p in positions.values())
    assert account.equity == pytest.approx(account.cash + value)


def test_sells_shrink_positions_and_return_their_proceeds_in_cash(venue: Venue) -> None:
    venue.broker.submit_order("BTC/USD", OrderSide.BUY, qty=1.0, client_order_id="buy")
    venue.settle()
    cash_before = venue.broker.account().cash
    venue.set_prices({"BTC/USD": 42_000.0})
    sell = venue.broker.submit_order("BTC/USD", OrderSide.SELL, qty=0.4, client_order_id="sell")
    venue.settle()

    sell = venue.broker.get_order(sell.id)
    assert sell.status == OrderStatus.FILLED
    assert venue.broker.positions()["BTC/USD"].qty == pytest.approx(0.6)
    assert venue.broker.account().cash == pytest.approx(cash_before + received(sell))


def test_resubmitting_a_client_order_id_returns_the_existing_order_and_places_one(venue: Venue) -> None:
    first = venue.broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.25, client_order_id="once")
    again = venue.broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.25, client_order_id="once")
    assert again.id == first.id
    venue.settle()
    after_fill = venue.new_broker().submit_order("BTC/USD", OrderSide.BUY, qty=0.25, client_order_id="once")

    assert after_fill.id == first.id and after_fill.status == OrderStatus.FILLED
    assert venue.order_count() == 1
    assert venue.broker.positions()["BTC/USD"].qty == pytest.approx(0.25)


def test_reusing_a_client_order_id_for_a_different_order_is_refused(venue: Venue) -> None:
    venue.broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.25, client_order_id="mine")
    with pytest.raises(InvalidOrder, match="already used"):
        venue.broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.5, client_order_id="mine")
    with pytest.raises(InvalidOrder, match="already used"):
        venue.broker.submit_order("ETH/USD", OrderSide.BUY, qty=0.25, client_order_id="mine")
    assert venue.order_count() == 1


def test_concurrent_submissions_of_one_client_order_id_place_one_order(venue: Venue) -> None:
    brokers = [venue.new_broker() for _ in range(4)]
    results: list[str] = []
    errors: list[BaseException] = []

    def submit(broker: Broker) -> None:
        try:
            results.append(broker.submit_order("ETH/USD", OrderSide.BUY, qty=1.0, client_order_id="race").id)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread below
            errors.append(error)

    threads = [threading.Thread(target=submit, args=(broker,)) for broker in brokers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len(results) == 4 and len(set(results)) == 1
    assert venue.order_count() == 1


@pytest.mark.parametrize("amount", [{"qty": 3.0}, {"notional": 150_000.0}], ids=["qty", "notional"])
def test_a_buy_beyond_the_cash_raises_insufficient_funds_and_places_nothing(venue: Venue, amount: dict) -> None:
    with pytest.raises(InsufficientFunds, match="insufficient balance") as raised:
        venue.broker.submit_order("BTC/USD", OrderSide.BUY, client_order_id="too-big", **amount)
    assert raised.value.client_order_id == "too-big"
    with pytest.raises(OrderNotFound):
        venue.broker.get_order("too-big")
    assert venue.broker.account().cash == CASH


def test_open_buys_hold_their_cash_back_from_later_buys(venue: Venue) -> None:
    venue.broker.submit_order("BTC/USD", OrderSide.BUY, notional=60_000.0, client_order_id="first")
    with pytest.raises(InsufficientFunds):
        venue.broker.submit_order("ETH/USD", OrderSide.BUY, notional=60_000.0, client_order_id="second")


def test_selling_more_than_is_held_raises_insufficient_funds(venue: Venue) -> None:
    with pytest.raises(InsufficientFunds):
        venue.broker.submit_order("ETH/USD", OrderSide.SELL, qty=1.0, client_order_id="naked")
    venue.broker.submit_order("ETH/USD", OrderSide.BUY, qty=2.0, client_order_id="buy")
    venue.settle()
    venue.broker.submit_order("ETH/USD", OrderSide.SELL, qty=1.5, client_order_id="sell-most")
    with pytest.raises(InsufficientFunds):  # 0.5 left once the open sell is counted
        venue.broker.submit_order("ETH/USD", OrderSide.SELL, qty=1.0, client_order_id="sell-more")


@pytest.mark.parametrize("amount", [
    {"qty": 0.0}, {"qty": -1.0}, {"qty": math.nan}, {"notional": 0.0}, {"qty": 1.0, "notional": 10.0}, {},
    {"qty": 0.00001},  # below the BTC minimum quantity
    {"notional": 0.5},  # below the minimum order notional
], ids=["zero", "negative", "nan", "zero-notional", "both", "neither", "below-min-qty", "below-min-notional"])
def test_invalid_amounts_raise_invalid_order_and_place_nothing(venue: Venue, amount: dict) -> None:
    with pytest.raises(InvalidOrder):
        venue.broker.submit_order("BTC/USD", OrderSide.BUY, client_order_id="bad", **amount)
    with pytest.raises(OrderNotFound):
        venue.broker.get_order("bad")
    assert venue.order_count() == 0


def test_get_order_finds_an_order_by_id_and_by_client_order_id_in_utc(venue: Venue) -> None:
    order = venue.broker.submit_order("ETH/USD", OrderSide.BUY, qty=1.0, client_order_id="find-me")
    assert venue.broker.get_order(order.id) == venue.broker.get_order("find-me")
    assert order.submitted_at.utcoffset() == timedelta(0)
    venue.settle()
    filled = venue.broker.get_order(order.id)
    assert filled.filled_at is not None and filled.filled_at.utcoffset() == timedelta(0)
    with pytest.raises(OrderNotFound):
        venue.broker.get_order(str(uuid.uuid4()))


def test_a_canceled_order_never_fills(venue: Venue) -> None:
    order = venue.broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.1, client_order_id="cancel-me")
    venue.broker.cancel_order(order.id)
    venue.settle()
    assert venue.broker.get_order(order.id).status == OrderStatus.CANCELED
    assert venue.broker.positions() == {}
    assert venue.broker.account().cash == CASH


def test_canceling_a_filled_or_unknown_order_raises_a_typed_error(venue: Venue) -> None:
    order = venue.broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.1, client_order_id="done")
    venue.settle()
    with pytest.raises(InvalidOrder, match="not cancelable"):
        venue.broker.cancel_order(order.id)
    with pytest.raises(OrderNotFound):
        venue.broker.cancel_order(str(uuid.uuid4()))


def test_cancel_all_cancels_every_open_order_and_leaves_filled_ones(venue: Venue) -> None:
    filled = venue.broker.submit_order("ETH/USD", OrderSide.BUY, qty=1.0, client_order_id="filled")
    venue.settle()
    open_ids = [venue.broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.1, client_order_id=f"open-{i}").id
                for i in range(2)]

    assert sorted(venue.broker.cancel_all()) == sorted(open_ids)
    assert all(venue.broker.get_order(i).status == OrderStatus.CANCELED for i in open_ids)
    assert venue.broker.get_order(filled.id).status == OrderStatus.FILLED
    assert venue.broker.cancel_all() == []


def test_close_all_cancels_open_orders_and_flattens_every_position(venue: Venue) -> None:
    venue.broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.5, client_order_id="btc")
    venue.broker.submit_order("ETH/USD", OrderSide.BUY, qty=3.0, client_order_id="eth")
    venue.settle()
    pending = venue.broker.submit_order("ETH/USD", OrderSide.BUY, qty=1.0, client_order_id="pending")

    closing = venue.broker.close_all()
    assert sorted((o.symbol, o.side, o.qty) for o in closing) == [
        ("BTC/USD", OrderSide.SELL, pytest.approx(0.5)), ("ETH/USD", OrderSide.SELL, pytest.approx(3.0))]
    assert venue.broker.get_order(pending.id).status == OrderStatus.CANCELED
    venue.settle()
    assert venue.broker.positions() == {}
    account = venue.broker.account()
    assert account.equity == pytest.approx(account.cash)
    assert all(venue.broker.get_order(o.id).status == OrderStatus.FILLED for o in closing)


def test_a_burst_of_429_replies_is_retried_and_the_order_placed_once(venue: Venue) -> None:
    if venue.burst_429 is None:
        pytest.skip("SimBroker has no rate limit to hit; its analogue, concurrent submissions "
                    "contending for the ledger, is test_concurrent_submissions_of_one_client_order_id_place_one_order")
    venue.burst_429(3)
    order = venue.broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.1, client_order_id="through-429s")
    assert venue.broker.get_order("through-429s").id == order.id
    assert venue.order_count() == 1
