"""The real Binance files in shared/data/ohlcv: read as they are, measured as SOURCES.md says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cappuccino_core.data.errors import SourceError
from cappuccino_core.data.files_source import FileBarSource
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.quality import assess_quality
from cappuccino_core.data.store import BarStore, bars_content_hash

EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# From the coverage table of shared/data/ohlcv/SOURCES.md:
# file stem -> (rows, missing bars, gap runs, longest gap bars, longest from, longest to, zero-volume rows)
SOURCES_TABLE = {
    "BTC-USDT_1h": (74276, 316, 29, 188, "2024-09-06T04:00", "2024-09-13T23:00", 4),
    "ETH-USDT_1h": (74274, 316, 29, 188, "2024-09-06T04:00", "2024-09-13T23:00", 6),
    "LTC-USDT_1h": (71644, 122, 27, 33, "2018-02-08T01:00", "2018-02-09T09:00", 3),
    "BCH-USDT_1h": (54568, 32, 15, 5, "2020-02-19T12:00", "2020-02-19T16:00", 2),
    "LINK-USDT_1h": (62146, 60, 20, 10, "2019-05-15T03:00", "2019-05-15T12:00", 4),
    "UNI-USDT_1h": (47541, 20, 10, 4, "2020-12-21T14:00", "2020-12-21T17:00", 2),
    "AAVE-USDT_1h": (46712, 186, 11, 166, "2024-09-07T02:00", "2024-09-13T23:00", 2),
    "AVAX-USDT_1h": (47422, 20, 10, 4, "2020-12-21T14:00", "2020-12-21T17:00", 2),
    "AAVE-USDT_15m": (69629, 89, 9, 18, "2021-04-25T04:15", "2021-04-25T08:30", 5),
    "AVAX-USDT_15m": (71822, 89, 9, 18, "2021-04-25T04:15", "2021-04-25T08:30", 8),
}


def ingest(store: BarStore, source: FileBarSource, symbol: str, interval: Interval):
    bars = source.fetch(symbol, interval, *EVER)
    return store.write(symbol, interval, bars, source=source.name)


@pytest.mark.parametrize("symbol", ["BTC/USDT", "ETH/USDT"])
def test_ingesting_the_shared_file_stores_every_bar_and_reingesting_changes_nothing(
    tmp_path, shared_ohlcv_dir, symbol
):
    rows, missing, runs, longest, first, last, _ = SOURCES_TABLE[f"{symbol.replace('/', '-')}_1h"]
    store, source = BarStore(tmp_path), FileBarSource(shared_ohlcv_dir)
    result = ingest(store, source, symbol, Interval.H1)
    assert (result.added, result.rows_after) == (rows, rows)

    stored = store.read(symbol, Interval.H1)
    now = stored["timestamp"][-1] + timedelta(hours=1)
    report = assess_quality(stored, interval=Interval.H1, now=now, staleness_limit=timedelta(hours=2))
    assert report.rows == rows
    assert (report.missing_bars, report.gap_runs) == (missing, runs)
    assert report.longest_gap is not None
    assert (report.longest_gap.bars, report.longest_gap.first_missing, report.longest_gap.last_missing) == (
        longest,
        utc(first),
        utc(last),
    )
    assert not report.broken and not report.stale

    path = store.path(symbol, Interval.H1)
    mtime, data, manifest = path.stat().st_mtime_ns, path.read_bytes(), store.manifest_path.read_bytes()
    again = ingest(store, source, symbol, Interval.H1)
    assert again.unchanged and again.added == 0
    assert again.content_hash_after == result.content_hash_after == bars_content_hash(stored)
    assert (path.stat().st_mtime_ns, path.read_bytes(), store.manifest_path.read_bytes()) == (mtime, data, manifest)


@pytest.mark.parametrize("stem", sorted(SOURCES_TABLE))
def test_every_shared_file_validates_and_matches_the_sources_table(shared_ohlcv_dir, stem):
    rows, missing, runs, longest, first, last, zero_volume = SOURCES_TABLE[stem]
    path = shared_ohlcv_dir / f"{stem}.parquet"
    if not path.exists():
        pytest.skip(f"{path} is not in this copy of the shared data")
    interval = Interval(stem.split("_")[1])
    bars = FileBarSource(shared_ohlcv_dir).read_file(path, interval)
    now = bars["timestamp"][-1] + interval.timedelta
    report = assess_quality(bars, interval=interval, now=now, staleness_limit=timedelta(0))
    assert (report.rows, report.missing_bars, report.gap_runs, report.zero_volume_bars) == (
        rows,
        missing,
        runs,
        zero_volume,
    )
    assert report.expected_slots == rows + missing
    assert report.longest_gap is not None
    assert (report.longest_gap.bars, report.longest_gap.first_missing, report.longest_gap.last_missing) == (
        longest,
        utc(first),
        utc(last),
    )
    assert not report.broken


def test_the_shared_files_are_usdt_and_usd_is_not_substituted(shared_ohlcv_dir):
    with pytest.raises(SourceError, match="BTC is there as BTC/USDT 1h, not substituted"):
        FileBarSource(shared_ohlcv_dir).fetch("BTC/USD", Interval.H1, *EVER)
