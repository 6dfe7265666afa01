"""The files bar source: naming, CSV/Parquet reading, windows, no substitution."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cappuccino_core.data.errors import BarDataError, SourceError
from cappuccino_core.data.files_source import FileBarSource
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.source import BarSource

H1 = Interval.H1
T0 = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def write_csv(bars: pl.DataFrame, path: Path, timestamp: pl.Expr) -> Path:
    bars.with_columns(timestamp.alias("timestamp")).write_csv(path)
    return path


def test_available_lists_bar_files_and_ignores_everything_else(tmp_path, bars_factory, caplog):
    bars = bars_factory(3)
    bars.write_parquet(tmp_path / "BTC-USDT_1h.parquet")
    bars.write_parquet(tmp_path / "BTC-USDT-PERP_1h.parquet")
    bars.write_parquet(tmp_path / "BTC-USDT_2h.parquet")
    write_csv(bars_factory(3, interval=Interval.M15), tmp_path / "ETH-USD_15m.csv", pl.col("timestamp").dt.epoch("ms"))
    (tmp_path / "SOURCES.md").write_text("notes")
    with caplog.at_level(logging.WARNING):
        found = FileBarSource(tmp_path).available()
    assert found == [
        ("BTC/USDT", H1, tmp_path / "BTC-USDT_1h.parquet"),
        ("ETH/USD", Interval.M15, tmp_path / "ETH-USD_15m.csv"),
    ]
    assert "BTC-USDT_2h.parquet" in caplog.text and "'2h'" in caplog.text


def test_file_source_satisfies_the_bar_source_protocol(tmp_path, bars_factory):
    bars_factory(3).write_parquet(tmp_path / "BTC-USDT_1h.parquet")
    bars_factory(3, interval=Interval.H4).write_parquet(tmp_path / "BTC-USDT_4h.parquet")
    source = FileBarSource(tmp_path)
    assert isinstance(source, BarSource)
    assert source.name == "files"
    assert source.intervals("btc-usdt") == (H1, Interval.H4)
    assert source.intervals("ETH/USDT") == ()


def test_fetch_returns_the_half_open_window_of_complete_bars(tmp_path, bars_factory):
    bars = bars_factory(24)
    bars.write_parquet(tmp_path / "BTC-USDT_1h.parquet")
    source = FileBarSource(tmp_path)
    window = source.fetch("BTC/USDT", H1, T0 + 2 * H, T0 + 5 * H)
    assert_frame_equal(window, bars.slice(2, 3))
    # An end inside a bar leaves that bar out: it has not closed by the end of the window.
    assert source.fetch("BTC/USDT", H1, T0, T0 + 5 * H + timedelta(minutes=30))["timestamp"][-1] == T0 + 4 * H
    assert_frame_equal(source.fetch("BTC/USDT", H1, *EVER), bars)
    with pytest.raises(ValueError, match="naive"):
        source.fetch("BTC/USDT", H1, datetime(2024, 1, 1), T0 + H)


def test_parquet_with_millisecond_timestamps_is_returned_as_canonical_bars(tmp_path, bars_factory):
    bars = bars_factory(5)
    bars.with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC"))).write_parquet(tmp_path / "BTC-USDT_1h.parquet")
    assert_frame_equal(FileBarSource(tmp_path).fetch("BTC/USDT", H1, *EVER), bars)


@pytest.mark.parametrize(
    "timestamp",
    [
        pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        pl.col("timestamp").dt.strftime("%Y-%m-%d %H:%M:%S+00:00"),
        pl.col("timestamp").dt.convert_time_zone("Asia/Kolkata").dt.strftime("%Y-%m-%dT%H:%M:%S%:z"),
        pl.col("timestamp").dt.epoch("ms"),
    ],
    ids=["iso-z", "iso-offset", "iso-plus-0530", "epoch-ms"],
)
def test_csv_timestamps_in_every_documented_form_read_the_same(tmp_path, bars_factory, timestamp):
    bars = bars_factory(6)
    write_csv(bars, tmp_path / "BTC-USDT_1h.csv", timestamp)
    assert_frame_equal(FileBarSource(tmp_path).fetch("BTC/USDT", H1, *EVER), bars)


def test_csv_with_optional_columns_keeps_them(tmp_path, bars_factory):
    bars = bars_factory(4).with_columns(pl.Series("trade_count", [5.0, None, 7.0, 8.0]), pl.col("close").alias("vwap"))
    write_csv(bars, tmp_path / "LTC-USD_1h.csv", pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert_frame_equal(FileBarSource(tmp_path).fetch("LTC/USD", H1, *EVER), bars)


def test_csv_with_naive_timestamps_is_refused_saying_so(tmp_path, bars_factory):
    write_csv(bars_factory(3), tmp_path / "BTC-USDT_1h.csv", pl.col("timestamp").dt.strftime("%Y-%m-%d %H:%M:%S"))
    with pytest.raises(BarDataError) as info:
        FileBarSource(tmp_path).fetch("BTC/USDT", H1, *EVER)
    message = str(info.value)
    assert "BTC-USDT_1h.csv" in message
    assert "row 0: timestamp '2024-01-01 00:00:00' is naive (no time zone)" in message


def test_asking_for_usd_when_only_usdt_exists_names_what_is_available(tmp_path, bars_factory):
    bars_factory(3).write_parquet(tmp_path / "BTC-USDT_1h.parquet")
    bars_factory(3).write_parquet(tmp_path / "ETH-USDT_1h.parquet")
    with pytest.raises(SourceError) as info:
        FileBarSource(tmp_path).fetch("BTC/USD", H1, *EVER)
    message = str(info.value)
    assert "no BTC/USD 1h file" in message
    assert "BTC is there as BTC/USDT 1h, not substituted" in message
    assert "available: BTC/USDT 1h, ETH/USDT 1h" in message


def test_a_missing_interval_is_not_resampled_from_another(tmp_path, bars_factory):
    bars_factory(8, interval=Interval.M15).write_parquet(tmp_path / "AAVE-USDT_15m.parquet")
    with pytest.raises(SourceError, match="no AAVE/USDT 1h file.*AAVE/USDT 15m"):
        FileBarSource(tmp_path).fetch("AAVE/USDT", H1, *EVER)


def test_a_series_with_both_csv_and_parquet_files_is_ambiguous(tmp_path, bars_factory):
    bars = bars_factory(3)
    bars.write_parquet(tmp_path / "BTC-USDT_1h.parquet")
    write_csv(bars, tmp_path / "BTC-USDT_1h.csv", pl.col("timestamp").dt.epoch("ms"))
    with pytest.raises(SourceError, match=r"more than one file .*BTC-USDT_1h\.csv, BTC-USDT_1h\.parquet"):
        FileBarSource(tmp_path).fetch("BTC/USDT", H1, *EVER)


def test_a_missing_directory_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        FileBarSource(tmp_path / "nowhere").available()


def test_a_file_at_the_wrong_interval_is_refused_as_off_grid(tmp_path, bars_factory):
    bars_factory(8, interval=Interval.M15).write_parquet(tmp_path / "BTC-USDT_1h.parquet")
    with pytest.raises(BarDataError, match=r"BTC-USDT_1h\.parquet: timestamp off the 1h grid at row 1"):
        FileBarSource(tmp_path).fetch("BTC/USDT", H1, *EVER)
