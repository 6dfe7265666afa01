"""Acceptance tests of AlpacaBarSource: the real alpaca-py SDK against a local fake Alpaca."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
import requests
from polars.testing import assert_frame_equal

from cappuccino_core.data.alpaca_source import AlpacaBarSource
from cappuccino_core.data.bars import BAR_SCHEMA
from cappuccino_core.data.errors import BarDataError, SourceError
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.quality import validate_bars
from cappuccino_core.data.source import BarSource
from tests.fakes.alpaca_server import (
    REDACTED,
    FakeAlpacaServer,
    assert_local_url,
    format_time,
    make_bars,
    refuse_non_local_http,
)

START = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
KEY = "PKTESTKEYID0123456789"
SECRET = "s3cr3t-TEST-value-never-to-be-printed"


@pytest.fixture(autouse=True)
def _only_local_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that would send an HTTP request anywhere but this machine."""
    refuse_non_local_http(monkeypatch)


@pytest.fixture
def server() -> Iterator[FakeAlpacaServer]:
    with FakeAlpacaServer(page_size=400) as fake:
        yield fake
    assert fake.handler_errors == []  # a bug in the fake must not pass for a fault


def make_source(server: FakeAlpacaServer, **overrides: Any) -> tuple[AlpacaBarSource, list[float]]:
    """Return a source pointed at the fake server and the list its sleeps are recorded in."""
    sleeps: list[float] = []
    settings: dict[str, Any] = {"api_key": None, "secret_key": None, "url_override": server.url,
                                "sleep": sleeps.append, "timeout_seconds": 5.0}
    settings.update(overrides)
    source = AlpacaBarSource(**settings)
    assert_local_url(source.base_url)
    return source, sleeps


def expected_table(bars: list[dict[str, Any]]) -> pl.DataFrame:
    """The bar table the served Alpaca bars should become."""
    return pl.DataFrame({
        "timestamp": [datetime.fromisoformat(b["t"]) for b in bars],
        "open": [b["o"] for b in bars], "high": [b["h"] for b in bars],
        "low": [b["l"] for b in bars], "close": [b["c"] for b in bars],
        "volume": [b["v"] for b in bars], "trade_count": [float(b["n"]) for b in bars],
        "vwap": [b["vw"] for b in bars],
    }, schema=BAR_SCHEMA)


def first_pages(server: FakeAlpacaServer) -> list[tuple[str, str]]:
    """The (start, end) of every bars request that opened a chunk (no page token)."""
    return [(r.query["start"], r.query["end"]) for r in server.bar_requests() if "page_token" not in r.query]


def test_fetch_returns_every_served_bar_exactly_once_through_pages_chunks_and_retries(
        server: FakeAlpacaServer) -> None:
    served = {"BTC/USD": make_bars(START, 2_500, 3600, seed=1, price=42_000.0),
              "ETH/USD": make_bars(START, 2_500, 3600, seed=2, price=2_300.0)}
    for symbol, bars in served.items():
        server.load_bars(symbol, "1Hour", bars)
    server.fail_next(status=429)
    server.fail_next(status=500, after=2)  # the third page of the first chunk: the chunk restarts
    source, sleeps = make_source(server, chunk_bars=1_000)

    tables = {symbol: source.fetch(symbol, Interval.H1, START, START + 2_500 * HOUR) for symbol in served}

    for symbol, bars in served.items():
        assert_frame_equal(tables[symbol], expected_table(bars))
    assert sleeps == [1.0, 2.0]
    assert server.pending_faults == 0
    requests = server.bar_requests()
    assert sum("page_token" in r.query for r in requests) >= 4  # several pages per chunk
    assert {r.query["symbols"] for r in requests} == set(served)
    assert all(r.query["timeframe"] == "1Hour" for r in requests)


def test_fetch_cuts_a_long_range_into_consecutive_chunks_and_stitches_them(server: FakeAlpacaServer) -> None:
    bars = make_bars(START, 2_500, 3600, seed=3)
    server.load_bars("BTC/USD", "1Hour", bars)
    source, _ = make_source(server, chunk_bars=1_000)

    table = source.fetch("btc-usd", Interval.H1, START, START + 2_500 * HOUR)

    # Alpaca's end is inclusive: each chunk asks up to a microsecond before the next one.
    edges = [START + n * HOUR for n in (0, 1_000, 2_000, 2_500)]
    just_before = timedelta(microseconds=1)
    expected = [(a.isoformat(), (b - just_before).isoformat()) for a, b in zip(edges, edges[1:])]
    assert first_pages(server) == expected
    assert table["timestamp"].is_unique().all()
    assert_frame_equal(table, expected_table(bars))


def test_fetch_keeps_only_complete_bars_opening_inside_the_window(server: FakeAlpacaServer) -> None:
    bars = make_bars(START, 48, 3600, seed=4)
    server.load_bars("BTC/USD", "1Hour", bars)
    source, _ = make_source(server)

    aligned = source.fetch("BTC/USD", Interval.H1, START + 10 * HOUR, START + 20 * HOUR)
    # The bar opening at 20:00 has not closed by 20:30: it is incomplete.
    ragged = source.fetch("BTC/USD", Interval.H1, START + 10 * HOUR, START + 20.5 * HOUR)

    assert_frame_equal(aligned, expected_table(bars[10:20]))
    assert_frame_equal(ragged, expected_table(bars[10:20]))


@pytest.mark.parametrize(("interval", "timeframe"), [
    (Interval.M1, "1Min"), (Interval.M15, "15Min"), (Interval.M30, "30Min"),
    (Interval.H1, "1Hour"), (Interval.H4, "4Hour"), (Interval.D1, "1Day"),
])
def test_fetch_asks_alpaca_for_the_timeframe_of_the_interval(
        server: FakeAlpacaServer, interval: Interval, timeframe: str) -> None:
    bars = make_bars(START, 30, interval.seconds, seed=5)
    server.load_bars("BTC/USD", timeframe, bars)
    source, _ = make_source(server)

    table = source.fetch("BTC/USD", interval, START, START + 30 * interval.timedelta)

    assert {r.query["timeframe"] for r in server.bar_requests()} == {timeframe}
    assert_frame_equal(table, expected_table(bars))


def test_fetched_bars_pass_the_quality_gate_but_alpaca_style_daily_bars_do_not(server: FakeAlpacaServer) -> None:
    server.load_bars("BTC/USD", "1Hour", make_bars(START, 48, 3600))
    # Alpaca's 1Day crypto bars open at midnight US Central time (06:00 UTC in winter).
    server.load_bars("BTC/USD", "1Day", make_bars(START + 6 * HOUR, 10, 86_400))
    source, _ = make_source(server)

    hourly = source.fetch("BTC/USD", Interval.H1, START, START + 48 * HOUR)
    daily = source.fetch("BTC/USD", Interval.D1, START, START + timedelta(days=11))

    assert_frame_equal(validate_bars(hourly, where="alpaca", interval=Interval.H1), hourly)
    assert daily.height == 10
    with pytest.raises(BarDataError):
        validate_bars(daily, where="alpaca", interval=Interval.D1)
    assert Interval.D1 not in source.intervals("BTC/USD")


@pytest.mark.parametrize(("fault", "problem"), [
    ({"body": "{not json"}, "not valid JSON"),
    ({"body": ""}, "reply body is empty"),
    ({"json_body": [1, 2]}, "reply is a JSON list, not an object"),
    ({"json_body": {"quotes": {}}}, "reply has no 'bars' field (fields: quotes)"),
    ({"json_body": {"bars": [1, 2]}}, "reply 'bars' is a JSON list, not an object"),
    ({"json_body": {"bars": {"BTC/USD": 5}}}, "reply 'bars.BTC/USD' is a JSON int, not a list"),
    ({"json_body": {"bars": {}, "next_page_token": 12}}, "'next_page_token' is a JSON int"),
    ({"json_body": {"bars": {"BTC/USD": [7]}}}, "bar 0 of the reply is a int"),
    ({"json_body": {"bars": {"BTC/USD": [{"t": "2024-01-01T00:00:00Z", "o": 1.0}]}}},
     "'h' (high): Field required"),
    ({"json_body": {"bars": {"BTC/USD": [
        {"t": "2024-01-01T00:00:00Z", "o": "abc", "h": 1, "l": 1, "c": 1, "v": 1, "n": 1, "vw": 1}]}}},
     "'o' (open): Input should be a valid number"),
    ({"json_body": {"bars": {"BTC/USD": [
        {"t": "2024-01-01T00:00:00", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1, "n": 1, "vw": 1}]}}},
     "timestamp without time zone"),
    ({"json_body": {"bars": {"ETH/USD": []}}}, "symbols not asked for: ETH/USD"),
])
def test_fetch_refuses_a_malformed_reply_with_an_error_naming_symbol_and_problem(
        server: FakeAlpacaServer, fault: dict[str, Any], problem: str) -> None:
    server.load_bars("BTC/USD", "1Hour", make_bars(START, 24, 3600))
    server.fail_next(**fault)
    source, sleeps = make_source(server)

    with pytest.raises(BarDataError) as caught:
        source.fetch("BTC/USD", Interval.H1, START, START + 24 * HOUR)

    assert "alpaca BTC/USD 1h" in str(caught.value)
    assert problem in str(caught.value)
    assert len(server.bar_requests()) == 1  # a malformed reply is not retried
    assert sleeps == []


def test_a_malformed_page_after_good_fetches_fails_the_whole_fetch(server: FakeAlpacaServer) -> None:
    server.load_bars("BTC/USD", "1Hour", make_bars(START, 1_000, 3600))
    source, _ = make_source(server)
    assert source.fetch("BTC/USD", Interval.H1, START, START + 1_000 * HOUR).height == 1_000

    server.fail_next(body="{truncated", after=1)  # the second page of the next fetch
    with pytest.raises(BarDataError, match=r"alpaca BTC/USD 1h: reply body is not valid JSON"):
        source.fetch("BTC/USD", Interval.H1, START, START + 1_000 * HOUR)


def test_fetch_refuses_a_reply_that_repeats_a_bar(server: FakeAlpacaServer) -> None:
    bars = make_bars(START, 10, 3600)
    server.load_bars("BTC/USD", "1Hour", bars + [dict(bars[3], o=1.0)])
    source, _ = make_source(server)

    with pytest.raises(BarDataError, match="repeats the bar at 2024-01-01T03:00:00"):
        source.fetch("BTC/USD", Interval.H1, START, START + 20 * HOUR)


def test_fetch_stops_a_page_token_that_never_ends(server: FakeAlpacaServer) -> None:
    bar = make_bars(START, 1, 3600)[0]
    server.fail_next(json_body={"bars": {"BTC/USD": [bar]}, "next_page_token": "again"}, times=50)
    source, _ = make_source(server, chunk_bars=5)

    with pytest.raises(BarDataError, match="more than the 5 bars the window"):
        source.fetch("BTC/USD", Interval.H1, START, START + 5 * HOUR)
    assert len(server.bar_requests()) == 6  # the SDK stops paging at limit = 5 + 1


@pytest.mark.parametrize(("keys", "status"), [((None, None), 401), ((KEY, SECRET), 403)])
def test_refused_credentials_raise_at_once_without_revealing_them(
        server: FakeAlpacaServer, caplog: pytest.LogCaptureFixture,
        keys: tuple[str | None, str | None], status: int) -> None:
    server.require_auth("PKRIGHTKEY", "right-secret")
    source, sleeps = make_source(server, api_key=keys[0], secret_key=keys[1])
    caplog.set_level(logging.DEBUG)

    with pytest.raises(SourceError) as caught:
        source.fetch("BTC/USD", Interval.H1, START, START + 24 * HOUR)

    message = str(caught.value)
    assert "Alpaca rejected the credentials" in message and f"HTTP {status}" in message
    for secret in (KEY, SECRET):
        assert secret not in message and secret not in caplog.text and secret not in repr(source)
    assert len(server.bar_requests()) == 1
    assert sleeps == []


def test_credentials_are_sent_as_alpaca_headers_and_never_recorded(server: FakeAlpacaServer) -> None:
    server.require_auth(KEY, SECRET)
    server.load_bars("BTC/USD", "1Hour", make_bars(START, 24, 3600))
    source, _ = make_source(server, api_key=KEY, secret_key=SECRET)

    assert source.fetch("BTC/USD", Interval.H1, START, START + 24 * HOUR).height == 24
    headers = server.bar_requests()[0].headers
    assert headers["apca-api-key-id"] == REDACTED and headers["apca-api-secret-key"] == REDACTED


def test_fetch_without_credentials_sends_no_auth_headers(server: FakeAlpacaServer) -> None:
    server.load_bars("BTC/USD", "1Hour", make_bars(START, 24, 3600))
    source, _ = make_source(server)

    assert source.fetch("BTC/USD", Interval.H1, START, START + 24 * HOUR).height == 24
    headers = server.bar_requests()[0].headers
    assert "apca-api-key-id" not in headers and "apca-api-secret-key" not in headers


def test_exhausted_retries_raise_naming_status_and_attempts(server: FakeAlpacaServer) -> None:
    server.fail_next(status=504, times=3)  # 504: a code the SDK would retry itself
    source, sleeps = make_source(server, max_retries=2)

    with pytest.raises(SourceError, match=r"alpaca BTC/USD 1h: .*failed after 3 attempts.*HTTP 504"):
        source.fetch("BTC/USD", Interval.H1, START, START + 24 * HOUR)
    # Exactly our 3 attempts reached the server: the SDK's own retries are off.
    assert len(server.bar_requests()) == 3
    assert sleeps == [1.0, 2.0]


def test_backoff_doubles_up_to_its_cap_then_the_fetch_succeeds(server: FakeAlpacaServer) -> None:
    server.load_bars("BTC/USD", "1Hour", make_bars(START, 24, 3600))
    server.fail_next(status=429, times=5)
    source, sleeps = make_source(server, max_retries=5, backoff_seconds=1.0, max_backoff_seconds=3.0)

    assert source.fetch("BTC/USD", Interval.H1, START, START + 24 * HOUR).height == 24
    assert sleeps == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_timeouts_and_dropped_connections_are_retried(server: FakeAlpacaServer) -> None:
    bars = make_bars(START, 24, 3600)
    server.load_bars("BTC/USD", "1Hour", bars)
    server.fail_next(stall_seconds=30.0)  # released when the server stops
    server.fail_next(drop_connection=True)
    source, sleeps = make_source(server, timeout_seconds=0.3)

    table = source.fetch("BTC/USD", Interval.H1, START, START + 24 * HOUR)

    assert_frame_equal(table, expected_table(bars))
    assert sleeps == [1.0, 2.0]


@pytest.mark.parametrize("status", [400, 404, 422])
def test_other_client_errors_are_not_retried(server: FakeAlpacaServer, status: int) -> None:
    server.fail_next(status=status)
    source, sleeps = make_source(server)

    with pytest.raises(SourceError, match=f"refused the request with HTTP {status}"):
        source.fetch("BTC/USD", Interval.H1, START, START + 24 * HOUR)
    assert len(server.bar_requests()) == 1 and sleeps == []


def test_chunks_and_retries_are_logged_at_info(
        server: FakeAlpacaServer, caplog: pytest.LogCaptureFixture) -> None:
    server.load_bars("BTC/USD", "1Hour", make_bars(START, 48, 3600))
    server.fail_next(status=429)
    source, _ = make_source(server, chunk_bars=24)
    caplog.set_level(logging.INFO, logger="cappuccino_core.data.alpaca_source")

    source.fetch("BTC/USD", Interval.H1, START, START + 48 * HOUR)

    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("chunk 1 of 2" in m for m in messages) and any("chunk 2 of 2" in m for m in messages)
    assert any("HTTP 429; retry 1 of 5 in 1.0 s" in m for m in messages)


def test_an_empty_window_returns_an_empty_bar_table_without_asking(server: FakeAlpacaServer) -> None:
    source, _ = make_source(server)

    table = source.fetch("BTC/USD", Interval.H1, START, START)

    assert table.height == 0 and table.schema == pl.Schema(BAR_SCHEMA)
    assert server.bar_requests() == []


def test_source_follows_the_bar_source_protocol_and_refuses_bad_arguments(server: FakeAlpacaServer) -> None:
    source, _ = make_source(server)

    assert isinstance(source, BarSource) and source.name == "alpaca"
    assert Interval.H1 in source.intervals("BTC/USD")
    with pytest.raises(ValueError, match="timezone-aware"):
        source.fetch("BTC/USD", Interval.H1, datetime(2024, 1, 1), START + HOUR)
    with pytest.raises(ValueError, match="after end"):
        source.fetch("BTC/USD", Interval.H1, START + HOUR, START)
    with pytest.raises(ValueError, match="given together"):
        AlpacaBarSource(api_key=KEY, secret_key=None, url_override=server.url)


def test_the_guard_stops_any_request_to_the_real_alpaca() -> None:
    source = AlpacaBarSource(api_key=None, secret_key=None, sleep=lambda _: None)

    with pytest.raises(AssertionError, match="tests may only talk to 127.0.0.1"):
        source.fetch("BTC/USD", Interval.H1, START, START + HOUR)


def test_the_fake_server_pages_with_opaque_tokens_and_honours_limit(server: FakeAlpacaServer) -> None:
    server.load_bars("BTC/USD", "1Hour", make_bars(START, 10, 3600))
    url = f"{server.url}/v1beta3/crypto/us/bars"
    query = {"symbols": "BTC/USD", "timeframe": "1Hour", "start": format_time(START), "limit": 4}

    first = requests.get(url, params=query, timeout=5).json()
    second = requests.get(url, params={**query, "page_token": first["next_page_token"]}, timeout=5).json()

    assert [b["t"] for b in first["bars"]["BTC/USD"]] == [format_time(START + n * HOUR) for n in range(4)]
    assert [b["t"] for b in second["bars"]["BTC/USD"]] == [format_time(START + n * HOUR) for n in range(4, 8)]
    assert requests.get(url, params={**query, "limit": 0}, timeout=5).status_code == 400
