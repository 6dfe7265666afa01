"""Resampling: OHLCV aggregation into complete, epoch-aligned UTC buckets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from cappuccino_core.data.bars import TIMESTAMP_DTYPE
from cappuccino_core.data.errors import BarDataError
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.resample import resample_bars

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def hourly(hours: list[int], *, start: datetime = T0, volume: float | None = None) -> pl.DataFrame:
    """Hand-built 1h bars at ``start + h hours``; bar h has open h, high h+2, low h-1 (+100), close h+1."""
    rows = [
        {
            "timestamp": start + timedelta(hours=h),
            "open": 100.0 + h,
            "high": 102.0 + h,
            "low": 99.0 + h,
            "close": 101.0 + h,
            "volume": float(h + 1) if volume is None else volume,
            "trade_count": 10.0 * (h + 1),
            "vwap": 100.5 + h,
        }
        for h in hours
    ]
    return pl.DataFrame(rows).with_columns(pl.col("timestamp").cast(TIMESTAMP_DTYPE))


def test_four_hour_bucket_aggregates_ohlcv_by_hand() -> None:
    out = resample_bars(hourly([0, 1, 2, 3]), source=Interval.H1, target=Interval.H4)
    assert out.height == 1
    row = out.row(0, named=True)
    assert row["timestamp"] == T0
    assert (row["open"], row["high"], row["low"], row["close"]) == (100.0, 105.0, 99.0, 104.0)
    assert row["volume"] == 1 + 2 + 3 + 4
    assert row["trade_count"] == 10 + 20 + 30 + 40
    expected_vwap = (100.5 * 1 + 101.5 * 2 + 102.5 * 3 + 103.5 * 4) / 10
    assert row["vwap"] == pytest.approx(expected_vwap)


def test_trailing_partial_bucket_and_bucket_with_a_gap_are_dropped() -> None:
    # 00-03 complete; 04-07 misses 05:00 (a gap); 08-09 is the trailing partial bucket.
    bars = hourly([0, 1, 2, 3, 4, 6, 7, 8, 9])
    out = resample_bars(bars, source=Interval.H1, target=Interval.H4)
    assert out["timestamp"].to_list() == [T0]


def test_four_hour_buckets_start_at_multiples_of_four_hours_utc() -> None:
    out = resample_bars(hourly(list(range(2, 14))), source=Interval.H1, target=Interval.H4)
    # 02-03 is the incomplete head of the 00:00 bucket; 04:00 and 08:00 are complete; 12-13 is partial.
    assert out["timestamp"].to_list() == [T0 + timedelta(hours=4), T0 + timedelta(hours=8)]
    assert out["open"].to_list() == [104.0, 108.0]
    assert out["close"].to_list() == [108.0, 112.0]


def test_daily_buckets_start_at_midnight_utc() -> None:
    start = datetime(2023, 12, 31, 22, tzinfo=UTC)
    out = resample_bars(hourly(list(range(0, 28)), start=start), source=Interval.H1, target=Interval.D1)
    assert out["timestamp"].to_list() == [datetime(2024, 1, 1, tzinfo=UTC)]
    assert out["open"][0] == 102.0 and out["close"][0] == 126.0  # bars 2..25 of the input
    assert out.schema["timestamp"] == TIMESTAMP_DTYPE


def test_null_trade_count_and_zero_volume_make_the_aggregate_undefined() -> None:
    second_bar = pl.col("timestamp") == T0 + timedelta(hours=1)
    bars = hourly([0, 1, 2, 3, 4, 5, 6, 7], volume=0.0).with_columns(
        pl.when(second_bar).then(None).otherwise(pl.col("trade_count")).alias("trade_count")
    )
    out = resample_bars(bars, source=Interval.H1, target=Interval.H4)
    assert out["trade_count"].to_list() == [None, 10.0 * (5 + 6 + 7 + 8)]
    assert out["vwap"].null_count() == 2  # no volume traded: vwap is undefined, not zero


def test_optional_columns_appear_only_when_present() -> None:
    bars = hourly([0, 1, 2, 3]).drop("trade_count", "vwap")
    out = resample_bars(bars, source=Interval.H1, target=Interval.H4)
    assert out.columns == ["timestamp", "open", "high", "low", "close", "volume"]


def test_target_not_a_multiple_of_source_is_refused() -> None:
    with pytest.raises(ValueError, match="not a whole multiple"):
        resample_bars(hourly([0, 1, 2, 3]), source=Interval.H4, target=Interval.H1)


def test_same_interval_returns_the_bars_unchanged() -> None:
    bars = hourly([0, 1, 5])
    assert resample_bars(bars, source=Interval.H1, target=Interval.H1).equals(bars)


def test_timestamps_off_the_source_grid_are_refused() -> None:
    bars = hourly([0, 1, 2, 3]).with_columns(pl.col("timestamp") + timedelta(minutes=30))
    with pytest.raises(BarDataError, match="not on the 1h grid"):
        resample_bars(bars, source=Interval.H1, target=Interval.H4)


def test_unsorted_or_duplicate_timestamps_are_refused() -> None:
    with pytest.raises(BarDataError, match="strictly increasing"):
        resample_bars(hourly([0, 2, 1, 3]), source=Interval.H1, target=Interval.H4)
    with pytest.raises(BarDataError, match="strictly increasing"):
        resample_bars(hourly([0, 1, 1, 2, 3]), source=Interval.H1, target=Interval.H4)


def test_naive_timestamps_are_refused() -> None:
    bars = hourly([0, 1, 2, 3]).with_columns(pl.col("timestamp").dt.replace_time_zone(None))
    with pytest.raises(BarDataError, match="UTC"):
        resample_bars(bars, source=Interval.H1, target=Interval.H4)


def test_empty_input_gives_empty_output_with_the_same_columns() -> None:
    bars = hourly([0]).clear()
    out = resample_bars(bars, source=Interval.H1, target=Interval.H4)
    assert out.height == 0 and out.columns == bars.columns
