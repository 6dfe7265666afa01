"""The ``ingest`` flow under Prefect's test harness: synthetic, files and the real alpaca-py client."""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.store import BarStore
from flows.ingest import IngestError, IngestParams, ingest
from tests.conftest import shared_data_dir
from tests.fakes.alpaca_server import FakeAlpacaServer, assert_local_url, make_bars, refuse_non_local_http


def test_ingest_flow_stores_the_synthetic_market_and_a_second_run_changes_nothing(prefect_harness, cappuccino_env, monkeypatch) -> None:
    monkeypatch.setenv("CAPPUCCINO_SYMBOLS", "BTC/USD,ETH/USD,LTC/USD")
    first = ingest(params=IngestParams())
    assert first.ok and first.status_ok
    assert [s.symbol for s in first.symbols] == ["BTC/USD", "ETH/USD", "LTC/USD"]
    assert all(s.added == 240 and s.rows_after == 240 for s in first.symbols)  # 10 days of 1h bars
    store = BarStore(cappuccino_env / "store")
    hashes = {e.symbol: e.content_hash for e in store.entries()}

    second = ingest(params=IngestParams(end=first.window_end))
    assert all(s.fetched == 240 and s.added == 0 and s.rows_after == 240 for s in second.symbols)
    assert {e.symbol: e.content_hash for e in store.entries()} == hashes


def test_ingest_flow_refuses_stale_history_unless_an_as_of_time_is_given(prefect_harness, cappuccino_env, monkeypatch) -> None:
    source_dir = shared_data_dir()
    if not (source_dir / "BTC-USDT_1h.parquet").exists():
        pytest.skip(f"shared data not found at {source_dir} (set CAPPUCCINO_SHARED_DATA)")
    params = dict(source="files", files_path=str(source_dir), symbols=["BTC/USDT"], end=datetime(2026, 2, 1, tzinfo=UTC))
    stale = ingest(params=IngestParams(**params))
    assert not stale.status_ok
    assert "stale: BTC/USDT 1h" in stale.status["verdict"]["message"]
    research = ingest(params=IngestParams(**params, as_of=datetime(2026, 2, 1, tzinfo=UTC)))
    assert research.status_ok
    assert research.status["verdict"]["as_of"] == "2026-02-01T00:00:00+00:00"


@pytest.fixture
def alpaca(monkeypatch, cappuccino_env):
    refuse_non_local_http(monkeypatch)
    with FakeAlpacaServer(page_size=100) as server:
        assert_local_url(server.url)
        monkeypatch.setenv("CAPPUCCINO_SOURCE", "alpaca")
        monkeypatch.setenv("CAPPUCCINO_ALPACA_DATA_URL", server.url)
        monkeypatch.setenv("CAPPUCCINO_SYMBOLS", "BTC/USD,ETH/USD")
        monkeypatch.setenv("CAPPUCCINO_HISTORY_DAYS", "7")
        yield server


def _end_of_last_hour() -> datetime:
    now = datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0)


def test_ingest_flow_retries_alpaca_429_and_500_and_stores_every_served_bar_once(prefect_harness, alpaca) -> None:
    end = _end_of_last_hour()
    start = end - timedelta(days=7)
    served = {sym: make_bars(start, 7 * 24, 3600, seed=i, price=100 + 50 * i) for i, sym in enumerate(("BTC/USD", "ETH/USD"))}
    for symbol, bars in served.items():
        alpaca.load_bars(symbol, "1Hour", bars)
    alpaca.fail_next(status=429)
    alpaca.fail_next(status=500)

    report = ingest(params=IngestParams(end=end))

    assert report.ok
    assert alpaca.pending_faults == 0
    store = BarStore(alpaca_home(alpaca))
    for symbol, bars in served.items():
        stored = store.read(symbol, Interval.H1)
        assert stored.height == len(bars) == 168
        assert stored["close"].to_list() == [b["c"] for b in bars]
        assert stored["timestamp"].is_unique().all()


def test_a_malformed_alpaca_reply_fails_the_flow_clearly_and_leaves_the_store_unchanged(prefect_harness, alpaca) -> None:
    end = _end_of_last_hour()
    for i, symbol in enumerate(("BTC/USD", "ETH/USD")):
        alpaca.load_bars(symbol, "1Hour", make_bars(end - timedelta(days=7), 168, 3600, seed=i))
    ingest(params=IngestParams(end=end - timedelta(days=1)))
    store = BarStore(alpaca_home(alpaca))
    before = {e.symbol: (e.content_hash, e.rows) for e in store.entries()}

    alpaca.fail_next(body="{not json")
    with pytest.raises(IngestError) as failure:
        ingest(params=IngestParams(end=end))

    # Symbols are fetched concurrently: whichever met the bad reply failed, naming itself and the problem.
    failed = [s for s in failure.value.report.symbols if s.error]
    assert len(failed) == 1
    assert failed[0].symbol in str(failure.value) and "not valid JSON" in str(failure.value)
    unchanged = {e.symbol: (e.content_hash, e.rows) for e in store.entries()}
    assert unchanged[failed[0].symbol] == before[failed[0].symbol]
    other = next(s for s in failure.value.report.symbols if not s.error)
    assert other.added == 24  # the healthy symbol still took its new day of bars


def alpaca_home(server) -> Path:
    """The bar store of the home the ``cappuccino_env`` fixture set."""
    return Path(os.environ["CAPPUCCINO_HOME"]) / "store"


def test_refused_alpaca_keys_fail_at_once_naming_the_credentials_not_an_empty_store(
        prefect_harness, alpaca, monkeypatch) -> None:
    alpaca.require_auth("PKRIGHTKEY0001", "right-secret-0001")
    monkeypatch.setenv("APCA_API_KEY_ID", "PKWRONGKEY0001")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "wrong-secret-0001")
    started = time.monotonic()
    with pytest.raises(IngestError) as failure:
        ingest(params=IngestParams(end=_end_of_last_hour()))
    assert time.monotonic() - started < 10  # no retry waits (2, 10, 30 s)
    assert len(alpaca.bar_requests()) == 2  # one request per symbol: a 403 is never retried
    assert "Alpaca rejected the credentials (HTTP 403)" in str(failure.value)
    assert "empty" not in str(failure.value) and failure.value.report.status is None
    assert failure.value.expected


def test_an_unreachable_alpaca_is_reported_as_unreachable_after_its_retries(
        prefect_harness, alpaca, monkeypatch) -> None:
    import flows.ingest as ingest_flow

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: every connection is refused
    monkeypatch.setenv("CAPPUCCINO_ALPACA_DATA_URL", f"http://127.0.0.1:{port}")
    real_make_source = ingest_flow.make_source
    sleeps: list[float] = []

    def fast_source(settings):
        source = real_make_source(settings)
        source._sleep = sleeps.append  # the source's own backoff, recorded instead of waited
        return source

    monkeypatch.setattr(ingest_flow, "make_source", fast_source)
    monkeypatch.setattr(ingest_flow, "fetch_and_store", ingest_flow.fetch_and_store.with_options(retry_delay_seconds=0))
    with pytest.raises(IngestError) as failure:
        ingest(params=IngestParams(end=_end_of_last_hour()))
    message = str(failure.value)
    assert "retries exhausted" in message and "ConnectionError" in message and "empty" not in message
    assert len(sleeps) == 2 * 4 * 5  # 2 symbols x (1 + 3 task retries) x 5 backoffs: a connection error is retried


def test_a_missing_files_directory_is_refused_at_once_without_retries(prefect_harness, cappuccino_env, tmp_path) -> None:
    started = time.monotonic()
    with pytest.raises(IngestError, match="does not exist") as failure:
        ingest(params=IngestParams(source="files", files_path=str(tmp_path / "no-such-dir"), symbols=["BTC/USDT"]))
    assert time.monotonic() - started < 10  # not retried after 2, 10 and 30 s
    assert failure.value.report.status is None and "empty" not in str(failure.value)
