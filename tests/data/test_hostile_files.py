"""Corrupt and hostile bar files are refused precisely, and the store is left exactly as it was.

Each test ingests a good file first, then replaces it with a hostile one for the same symbol
and tries to ingest again: the refusal must name the file, the problem and the row or
timestamp, and the stored bytes and content hash must not change.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from cappuccino_core.data.errors import BarDataError
from cappuccino_core.data.files_source import FileBarSource
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.store import BarStore

H1 = Interval.H1
T0 = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
PARQUET = "BTC-USDT_1h.parquet"
CSV = "BTC-USDT_1h.csv"


def set_cell(df: pl.DataFrame, column: str, row: int, value: object) -> pl.DataFrame:
    is_row = pl.int_range(pl.len()) == row
    return df.with_columns(pl.when(is_row).then(pl.lit(value)).otherwise(pl.col(column)).alias(column))


def swap_rows(df: pl.DataFrame, i: int, j: int) -> pl.DataFrame:
    order = list(range(len(df)))
    order[i], order[j] = order[j], order[i]
    return df[order]


def iso(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))


def ingest(directory: Path, store: BarStore, start: datetime = EVER[0], end: datetime = EVER[1]):
    source = FileBarSource(directory)
    return store.write("BTC/USDT", H1, source.fetch("BTC/USDT", H1, start, end), source=source.name)


def assert_refused_and_store_unchanged(
    tmp_path: Path,
    good: pl.DataFrame,
    write_hostile: Callable[[Path], None],
    expected: list[str],
    window: tuple[datetime, datetime] = EVER,
) -> str:
    """Ingest ``good``, swap in the hostile file, and check the refusal and the store."""
    files, store = tmp_path / "files", BarStore(tmp_path / "store")
    files.mkdir()
    good.write_parquet(files / PARQUET)
    first = ingest(files, store)
    stored_path = store.path("BTC/USDT", H1)
    before = (stored_path.read_bytes(), store.manifest_path.read_bytes(), store.content_hash("BTC/USDT", H1))

    (files / PARQUET).unlink()
    write_hostile(files)
    with pytest.raises(BarDataError) as info:
        ingest(files, store, *window)
    message = str(info.value)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"

    after = (stored_path.read_bytes(), store.manifest_path.read_bytes(), store.content_hash("BTC/USDT", H1))
    assert after == before
    assert before[2] == first.content_hash_after
    return message


def parquet_of(df: pl.DataFrame) -> Callable[[Path], None]:
    return lambda directory: df.write_parquet(directory / PARQUET)


def test_truncated_parquet_is_refused_with_a_clear_error_not_an_arrow_exception(tmp_path, bars_factory):
    good = bars_factory(48)

    def truncated(directory: Path) -> None:
        good.write_parquet(directory / "whole.parquet")
        data = (directory / "whole.parquet").read_bytes()
        (directory / "whole.parquet").unlink()
        (directory / PARQUET).write_bytes(data[: len(data) // 2])

    message = assert_refused_and_store_unchanged(
        tmp_path, good, truncated, [PARQUET, "cannot read Parquet file (truncated or corrupt?)"]
    )
    assert message.startswith(str(tmp_path / "files" / PARQUET))


def test_an_empty_or_garbage_parquet_file_is_refused(tmp_path, bars_factory):
    def garbage(directory: Path) -> None:
        (directory / PARQUET).write_bytes(b"this is not parquet at all")

    assert_refused_and_store_unchanged(tmp_path, bars_factory(24), garbage, [PARQUET, "cannot read Parquet file"])


def test_unsorted_rows_are_refused_naming_the_first_offending_timestamp(tmp_path, bars_factory):
    good = bars_factory(24)
    assert_refused_and_store_unchanged(
        tmp_path,
        good,
        parquet_of(swap_rows(good, 10, 11)),
        [PARQUET, "rows not sorted ascending at row 11", "2024-01-01T10:00:00+00:00 is earlier than row 10"],
    )


def test_duplicate_timestamps_are_refused_naming_the_timestamp_and_rows(tmp_path, bars_factory):
    good = bars_factory(24)
    hostile = set_cell(good, "timestamp", 11, T0 + 10 * H)
    assert_refused_and_store_unchanged(
        tmp_path,
        good,
        parquet_of(hostile),
        [PARQUET, "duplicate timestamp at row 11 (2024-01-01T10:00:00+00:00, first seen at row 10)"],
    )


def test_high_below_low_is_refused_naming_the_row_and_values(tmp_path, bars_factory):
    good = bars_factory(24)
    hostile = set_cell(good, "high", 7, 1.0)
    assert_refused_and_store_unchanged(
        tmp_path, good, parquet_of(hostile), [PARQUET, "high < low at row 7 (2024-01-01T07:00:00+00:00", "high=1.0"]
    )


def test_negative_prices_are_refused(tmp_path, bars_factory):
    good = bars_factory(24)
    hostile = set_cell(set_cell(good, "low", 5, -3.0), "open", 5, -2.0)
    message = assert_refused_and_store_unchanged(
        tmp_path,
        good,
        parquet_of(hostile),
        [PARQUET, "open <= 0 at row 5 (2024-01-01T05:00:00+00:00", "low <= 0 at row 5"],
    )
    assert "open=-2.0" in message


def test_nan_values_are_refused_even_outside_the_requested_window(tmp_path, bars_factory):
    good = bars_factory(24)
    hostile = set_cell(good, "close", 20, float("nan"))
    assert_refused_and_store_unchanged(
        tmp_path,
        good,
        parquet_of(hostile),
        [PARQUET, "close is NaN or infinite at row 20 (2024-01-01T20:00:00+00:00"],
        window=(T0, T0 + 5 * H),
    )


def test_csv_with_mixed_time_zones_is_refused(tmp_path, bars_factory):
    good = bars_factory(24)
    stamps = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in good["timestamp"]]
    stamps[4] = (good["timestamp"][4] + H).strftime("%Y-%m-%dT%H:%M:%S+01:00")  # same instant, other zone

    def mixed(directory: Path) -> None:
        good.with_columns(pl.Series("timestamp", stamps)).write_csv(directory / CSV)

    assert_refused_and_store_unchanged(
        tmp_path,
        good,
        mixed,
        [CSV, "mixed time zones: row 4 timestamp '2024-01-01T05:00:00+01:00' has offset +01:00", "+00:00"],
    )


def test_csv_with_naive_timestamps_is_refused(tmp_path, bars_factory):
    good = bars_factory(24)

    def naive(directory: Path) -> None:
        good.with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%d %H:%M:%S")).write_csv(directory / CSV)

    assert_refused_and_store_unchanged(tmp_path, good, naive, [CSV, "row 0", "naive (no time zone)"])


def test_csv_with_a_text_value_is_refused_naming_row_and_value(tmp_path, bars_factory):
    good = bars_factory(24)

    def text(directory: Path) -> None:
        hostile = iso(good).with_columns(pl.col("volume").cast(pl.String))
        set_cell(hostile, "volume", 9, "12,5").write_csv(directory / CSV)

    assert_refused_and_store_unchanged(tmp_path, good, text, [CSV, "row 9: volume value '12,5' is not a number"])


def test_csv_missing_a_column_is_refused_naming_it(tmp_path, bars_factory):
    good = bars_factory(24)
    assert_refused_and_store_unchanged(
        tmp_path,
        good,
        lambda directory: iso(good).drop("volume").write_csv(directory / CSV),
        [CSV, "missing required column(s) volume"],
    )


def test_a_file_with_changed_history_is_refused_by_the_store_naming_the_bar(tmp_path, bars_factory):
    good = bars_factory(24)
    rewritten = set_cell(good, "close", 3, good["close"][3] * 1.01)
    rewritten = set_cell(rewritten, "high", 3, max(rewritten["high"][3], rewritten["close"][3]))
    assert_refused_and_store_unchanged(
        tmp_path,
        good,
        parquet_of(rewritten),
        ["BTC/USDT 1h from files", "bar 2024-01-01T03:00:00+00:00 differs from the stored bar", "high stored",
         "also close"],
    )


def test_randomly_corrupted_parquet_is_either_valid_bars_or_a_bar_data_error(tmp_path, bars_factory):
    """Seeded byte flips and truncations: no raw polars/arrow error or decoder panic escapes."""
    bars_factory(500).write_parquet(tmp_path / "whole.parquet")
    data = (tmp_path / "whole.parquet").read_bytes()
    directory = tmp_path / "files"
    directory.mkdir()
    rng = random.Random(1)
    refused = 0
    for _ in range(1000):
        blob = bytearray(data)
        for _ in range(3):
            blob[rng.randrange(len(blob))] = rng.randrange(256)
        if rng.random() < 0.3:
            blob = blob[: rng.randrange(len(blob))]
        (directory / PARQUET).write_bytes(bytes(blob))
        try:
            FileBarSource(directory).fetch("BTC/USDT", H1, *EVER)
        except BarDataError as exc:
            assert PARQUET in str(exc)
            refused += 1
    assert refused > 500
