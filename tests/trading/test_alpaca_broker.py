"""AlpacaBroker: the real alpaca-py TradingClient against a local fake Alpaca (retries, errors, reconcile)."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest

from cappuccino_core.trading.alpaca_broker import AlpacaBroker, PositionDifference, alpaca_symbol_to_pair
from cappuccino_core.trading.broker import (
    BrokerError,
    BrokerUnavailable,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    OrderSide,
    OrderStatus,
)
from tests.fakes.alpaca_server import REDACTED, FakeAlpacaServer, FakeRequest, FakeResponse, assert_local_url

KEY = "PKTRADINGKEY0123456789"
SECRET = "trading-s3cr3t-never-to-be-printed"
PRICES = {"BTC/USD": 50_000.0, "ETH/USD": 2_500.0}


@pytest.fixture
def server(fake_alpaca: FakeAlpacaServer) -> FakeAlpacaServer:
    fake_alpaca.trading.configure(cash=10_000.0, prices=PRICES, min_qty={"BTC/USD": 0.0001})
    fake_alpaca.require_auth(KEY, SECRET)
    return fake_alpaca


def make_broker(server: FakeAlpacaServer, **overrides: Any) -> tuple[AlpacaBroker, list[float]]:
    """Return a broker pointed at the fake and the list its sleeps are recorded in."""
    sleeps: list[float] = []
    settings: dict[str, Any] = {"paper": True, "url_override": server.url, "sleep": sleeps.append,
                                "backoff_seconds": 1.0, "max_backoff_seconds": 4.0, "timeout_seconds": 5.0}
    settings.update(overrides)
    broker = AlpacaBroker(settings.pop("api_key", KEY), settings.pop("secret_key", SECRET), **settings)
    assert_local_url(broker.base_url)
    return broker, sleeps


def order_posts(server: FakeAlpacaServer) -> list[FakeRequest]:
    return [r for r in server.requests if r.method == "POST" and r.path == "/v2/orders"]


def test_an_order_goes_out_as_a_gtc_market_order_for_the_pair_with_our_client_id(server: FakeAlpacaServer) -> None:
    broker, _ = make_broker(server)
    order = broker.submit_order("btc-usd", OrderSide.BUY, qty=0.0123456789012, client_order_id="m1-0001")

    (post,) = order_posts(server)
    body = json.loads(post.body)
    assert body == {"symbol": "BTC/USD", "qty": 0.012345679, "side": "buy", "type": "market",
                    "time_in_force": "gtc", "client_order_id": "m1-0001"}
    assert post.headers["apca-api-key-id"] == REDACTED
    assert (order.symbol, order.status, order.client_order_id) == ("BTC/USD", OrderStatus.FILLED, "m1-0001")
    assert broker.submitted_client_order_ids == ("m1-0001",)


def test_positions_come_back_under_our_pair_names(server: FakeAlpacaServer) -> None:
    broker, _ = make_broker(server)
    broker.submit_order("ETH/USD", OrderSide.BUY, notional=1_000.0, client_order_id="e")
    position = broker.positions()["ETH/USD"]
    assert [r.path for r in server.requests if r.path.startswith("/v2/positions")] == ["/v2/positions"]
    assert (position.qty, position.avg_entry_price, position.market_value) == (0.4, 2_500.0, 1_000.0)
    assert broker.account().cash == pytest.approx(9_000.0)


def test_a_lost_reply_is_retried_and_returns_the_one_order_alpaca_placed(server: FakeAlpacaServer) -> None:
    broker, sleeps = make_broker(server)
    server.trading.lose_replies("/v2/orders", times=1)  # placed, but the reply is a 500

    order = broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.01, client_order_id="lost-reply")

    assert len(server.trading.orders) == 1 and order.id == server.trading.orders[0]["id"]
    assert len(order_posts(server)) == 2  # the retry was refused as a duplicate, then looked up
    assert sleeps == [1.0]


def test_a_429_burst_is_retried_with_backoff_and_places_one_order(server: FakeAlpacaServer) -> None:
    broker, sleeps = make_broker(server)
    server.fail_next(status=429, json_body={"message": "too many requests."}, path="/v2/orders", times=3)
    order = broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.01, client_order_id="patient")
    assert sleeps == [1.0, 2.0, 4.0]
    assert len(order_posts(server)) == 4
    assert [o["id"] for o in server.trading.orders] == [order.id]


def test_retries_back_off_exponentially_up_to_the_cap_then_raise_broker_unavailable(
        server: FakeAlpacaServer) -> None:
    broker, sleeps = make_broker(server, max_retries=4)
    server.fail_next(status=503, path="/v2/orders", times=5)
    with pytest.raises(BrokerUnavailable, match="retries exhausted") as raised:
        broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.01, client_order_id="never")
    assert raised.value.client_order_id == "never"
    assert sleeps == [1.0, 2.0, 4.0, 4.0]
    assert server.trading.orders == []


def test_a_dropped_connection_is_retried(server: FakeAlpacaServer) -> None:
    broker, sleeps = make_broker(server)
    server.fail_next(drop_connection=True, path="/v2/account")
    assert broker.account().cash == 10_000.0
    assert sleeps == [1.0]


def test_alpacas_422_is_invalid_order_and_is_not_retried(server: FakeAlpacaServer) -> None:
    broker, sleeps = make_broker(server)
    server.fail_next(status=422, json_body={"code": 40010001, "message": "qty must be > 0"}, path="/v2/orders")
    with pytest.raises(InvalidOrder, match="qty must be > 0"):
        broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.01, client_order_id="refused")
    assert sleeps == []
    assert len(order_posts(server)) == 1


def test_alpacas_403_insufficient_balance_is_insufficient_funds(server: FakeAlpacaServer) -> None:
    broker, _ = make_broker(server)
    server.fail_next(status=403, json_body={"code": 40310000, "message": "insufficient balance for USD"},
                     path="/v2/orders")
    with pytest.raises(InsufficientFunds, match="insufficient balance for USD"):
        broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.01, client_order_id="poor")


def test_refused_credentials_are_a_broker_error_that_never_shows_the_secret(
        server: FakeAlpacaServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broker, _ = make_broker(server, secret_key="wrong-" + SECRET)
    with pytest.raises(BrokerError, match="refused the credentials") as raised:
        broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.01, client_order_id="who")
    assert not isinstance(raised.value, InsufficientFunds)
    assert SECRET not in str(raised.value) and SECRET not in caplog.text and KEY not in caplog.text


def test_an_error_body_that_echoes_the_credentials_is_redacted(
        server: FakeAlpacaServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broker, _ = make_broker(server)
    server.fail_next(status=422, json_body={"code": 40010001, "message": f"bad header {KEY}:{SECRET}"},
                     path="/v2/orders")
    with pytest.raises(InvalidOrder) as raised:
        broker.submit_order("BTC/USD", OrderSide.BUY, qty=0.01, client_order_id="echo")
    assert "***" in str(raised.value)
    for text in (str(raised.value), caplog.text, repr(broker)):
        assert SECRET not in text and KEY not in text


def test_a_reply_of_the_wrong_shape_is_a_broker_error(server: FakeAlpacaServer) -> None:
    broker, _ = make_broker(server)
    server.fail_next(json_body={"cash": "1"}, path="/v2/account")
    with pytest.raises(BrokerError, match="not what the SDK expects"):
        broker.account()


def test_cancel_all_reports_every_cancellation_alpaca_refused(server: FakeAlpacaServer) -> None:
    broker, _ = make_broker(server)
    refused_id = str(uuid.uuid4())

    def partly(request: FakeRequest) -> FakeResponse:
        return FakeResponse(207, [{"id": str(uuid.uuid4()), "status": 200, "body": None},
                                  {"id": refused_id, "status": 500, "body": {"message": "try again"}}])

    server.add_route("DELETE", "/v2/orders", partly)
    with pytest.raises(BrokerError, match=f"refused 1 cancellation.*{refused_id}.*try again"):
        broker.cancel_all()


def test_get_order_and_cancel_order_tell_unknown_ids_apart(server: FakeAlpacaServer) -> None:
    broker, _ = make_broker(server)
    server.trading.configure(fill_mode="manual")
    order = broker.submit_order("ETH/USD", OrderSide.BUY, qty=1.0, client_order_id="plain-text-id")
    assert broker.get_order("plain-text-id").id == order.id
    with pytest.raises(OrderNotFound, match="not an Alpaca order id"):
        broker.cancel_order("plain-text-id")
    broker.cancel_order(order.id)
    assert broker.get_order(order.id).status == OrderStatus.CANCELED


def test_reconcile_reports_unknown_open_orders_missing_ids_and_position_differences(
        server: FakeAlpacaServer) -> None:
    broker, _ = make_broker(server)
    broker.submit_order("ETH/USD", OrderSide.BUY, qty=1.0, client_order_id="ours-filled")
    server.trading.configure(fill_mode="manual")
    ours_open = broker.submit_order("ETH/USD", OrderSide.BUY, qty=0.5, client_order_id="ours-open")
    stranger, _ = make_broker(server)  # another process placing an order we have no record of
    theirs = stranger.submit_order("BTC/USD", OrderSide.BUY, qty=0.01, client_order_id="theirs")

    report = broker.reconcile(["ours-filled", "ours-open", "ours-lost"], {"ETH/USD": 1.0, "BTC/USD": 0.5})

    assert not report.clean
    assert {o.id for o in report.open_orders} == {ours_open.id, theirs.id}
    assert [o.client_order_id for o in report.unknown_open_orders] == ["theirs"]
    assert report.missing_client_order_ids == ("ours-lost",)
    assert report.position_differences == (PositionDifference("BTC/USD", 0.5, 0.0),)


def test_reconcile_of_a_fresh_start_with_our_own_record_is_clean(server: FakeAlpacaServer) -> None:
    broker, _ = make_broker(server)
    broker.submit_order("ETH/USD", OrderSide.BUY, qty=1.0, client_order_id="a")
    report = broker.reconcile(expected_positions={"ETH/USD": 1.0})
    assert report.clean and report.open_orders == ()


def test_live_trading_points_at_alpacas_live_url_and_sends_nothing_on_creation() -> None:
    live = AlpacaBroker(KEY, SECRET, paper=False)
    paper = AlpacaBroker(KEY, SECRET, paper=True)
    assert live.base_url == "https://api.alpaca.markets"
    assert paper.base_url == "https://paper-api.alpaca.markets"
    assert SECRET not in repr(live)


def test_keys_are_required_and_never_echoed() -> None:
    with pytest.raises(ValueError, match="API key and a secret key") as raised:
        AlpacaBroker(KEY, "", paper=True)
    assert KEY not in str(raised.value)


@pytest.mark.parametrize("given, pair", [("BTCUSD", "BTC/USD"), ("BTC/USD", "BTC/USD"), ("ethusdt", "ETH/USDT"),
                                         ("AAVEUSD", "AAVE/USD")])
def test_alpaca_symbols_read_as_our_pairs(given: str, pair: str) -> None:
    assert alpaca_symbol_to_pair(given) == pair


def test_an_unreadable_alpaca_symbol_is_refused() -> None:
    with pytest.raises(BrokerError, match="cannot read Alpaca symbol 'AAPL'"):
        alpaca_symbol_to_pair("AAPL")
