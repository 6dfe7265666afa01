"""The local bar store: merge rules, idempotency, atomic writes, the manifest."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cappuccino_core.data.errors import BarDataError
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.store import BarStore, NotStoredError, StoreError, bars_content_hash

H1 = Interval.H1
T0 = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)


def snapshot(store: BarStore, symbol: str = "BTC/USDT", interval: Interval = H1) -> tuple[bytes, bytes, int]:
    """The data file bytes, the manifest bytes and the data file mtime."""
    path = store.path(symbol, interval)
    return path.read_bytes(), store.manifest_path.read_bytes(), path.stat().st_mtime_ns


def visible_files(store: BarStore) -> list[str]:
    return sorted(str(p.relative_to(store.bars_dir)) for p in store.bars_dir.rglob("*") if p.is_file())


def test_store_round_trips_bars_under_the_documented_layout(tmp_path, bars_factory):
    store = BarStore(tmp_path)
    bars = bars_factory(30)
    result = store.write("btc-usdt", H1, bars, source="synthetic", updated_at=T0)
    assert store.path("BTC/USDT", H1) == tmp_path / "bars" / "BTC-USDT" / "1h.parquet"
    assert_frame_equal(store.read("BTC/USDT", H1), bars)
    assert (result.rows_before, result.rows_after, result.added, result.unchanged) == (0, 30, 30, False)
    assert result.content_hash_before is None
    assert result.content_hash_after == bars_content_hash(bars) == store.content_hash("BTC/USDT", H1)
    cover = store.coverage("BTC/USDT", H1)
    assert cover is not None
    assert (cover.first_bar, cover.last_bar, cover.rows) == (T0, T0 + 29 * H, 30)
    assert (cover.source, cover.updated_at) == ("synthetic", T0)
    manifest = json.loads(store.manifest_path.read_text())
    assert manifest["series"]["BTC-USDT/1h"]["content_hash"] == result.content_hash_after
    assert visible_files(store) == [".lock", "BTC-USDT/1h.parquet", "manifest.json"]


def test_rewriting_stored_bars_changes_nothing_and_leaves_the_files_untouched(tmp_path, bars_factory):
    store = BarStore(tmp_path)
    bars = bars_factory(30)
    first = store.write("BTC/USDT", H1, bars, source="a")
    before = snapshot(store)
    again = store.write("BTC/USDT", H1, bars.slice(5, 10), source="b", updated_at=T0)
    assert again.unchanged and again.added == 0
    assert again.content_hash_before == again.content_hash_after == first.content_hash_after
    assert snapshot(store) == before
    assert store.coverage("BTC/USDT", H1).sources == ("a",)  # type: ignore[union-attr]


def test_overlapping_ingest_deduplicates_on_timestamp(tmp_path, bars_factory):
    store = BarStore(tmp_path)
    bars = bars_factory(50)
    store.write("BTC/USDT", H1, bars.slice(0, 30), source="a")
    result = store.write("BTC/USDT", H1, bars.slice(20, 30), source="b")
    assert (result.rows_before, result.added, result.rows_after) == (30, 20, 50)
    assert_frame_equal(store.read("BTC/USDT", H1), bars)
    # The same content hashes the same however it was assembled.
    other = BarStore(tmp_path / "other")
    assert other.write("BTC/USDT", H1, bars, source="a").content_hash_after == result.content_hash_after
    assert store.coverage("BTC/USDT", H1).sources == ("a", "b")  # type: ignore[union-attr]


def test_store_refuses_a_bar_that_conflicts_with_a_stored_one_and_changes_nothing(tmp_path, bars_factory):
    store = BarStore(tmp_path)
    bars = bars_factory(30)
    store.write("BTC/USDT", H1, bars.slice(0, 20), source="a")
    before = snapshot(store)
    at_noon = pl.col("timestamp") == T0 + 12 * H
    changed = bars.with_columns(pl.when(at_noon).then(pl.col("volume") + 1).otherwise(pl.col("volume")).alias("volume"))
    with pytest.raises(BarDataError) as info:
        store.write("BTC/USDT", H1, changed, source="b")
    message = str(info.value)
    assert "bar 2024-01-01T12:00:00+00:00 differs from the stored bar (volume stored" in message
    assert "nothing was written" in message
    assert snapshot(store) == before


def test_store_refuses_invalid_bars_before_creating_anything(tmp_path, bars_factory):
    store = BarStore(tmp_path)
    bars = bars_factory(5).with_columns(pl.lit(1.0).alias("high"))
    with pytest.raises(BarDataError, match=r"BTC/USDT 1h from feed: .*high < low at row 0"):
        store.write("BTC/USDT", H1, bars, source="feed")
    assert not store.path("BTC/USDT", H1).exists()
    assert store.coverage("BTC/USDT", H1) is None


def test_store_keeps_gaps_as_gaps(tmp_path, bars_factory):
    store = BarStore(tmp_path)
    bars = bars_factory(20)
    holed = pl.concat([bars.slice(0, 5), bars.slice(10, 10)])
    store.write("BTC/USDT", H1, holed, source="a")
    assert_frame_equal(store.read("BTC/USDT", H1), holed)
    store.write("BTC/USDT", H1, bars.slice(5, 2), source="a")
    assert store.read("BTC/USDT", H1)["timestamp"].to_list() == [T0 + h * H for h in [*range(7), *range(10, 20)]]


def test_read_window_is_half_open_and_accepts_any_aware_zone(tmp_path, bars_factory):
    store = BarStore(tmp_path)
    store.write("BTC/USDT", H1, bars_factory(24), source="a")
    window = store.read("BTC/USDT", H1, start=T0 + 3 * H, end=T0 + 6 * H)
    assert window["timestamp"].to_list() == [T0 + 3 * H, T0 + 4 * H, T0 + 5 * H]
    athens = datetime(2024, 1, 1, 7, tzinfo=ZoneInfo("Europe/Athens"))  # 05:00 UTC
    assert store.read("BTC/USDT", H1, start=athens)["timestamp"][0] == T0 + 5 * H
    with pytest.raises(ValueError, match="naive"):
        store.read("BTC/USDT", H1, start=datetime(2024, 1, 1))


def test_read_of_an_unstored_series_raises_naming_what_is_stored(tmp_path, bars_factory):
    store = BarStore(tmp_path)
    with pytest.raises(NotStoredError, match="no BTC/USD 1h bars stored .*stored: nothing"):
        store.read("BTC/USD", H1)
    store.write("BTC/USDT", H1, bars_factory(3), source="a")
    with pytest.raises(NotStoredError, match="stored: BTC/USDT 1h"):
        store.read("BTC/USD", H1)


def test_entries_intervals_and_hashes_describe_every_stored_series(tmp_path, bars_factory):
    store = BarStore(tmp_path)
    assert store.entries() == [] and store.content_hash("ETH/USDT", H1) is None
    store.write("ETH/USDT", Interval.H4, bars_factory(6, interval=Interval.H4), source="a")
    store.write("ETH/USDT", H1, bars_factory(6), source="a")
    store.write("BTC/USDT", H1, bars_factory(6, seed=1), source="a")
    assert [(c.symbol, c.interval) for c in store.entries()] == [
        ("BTC/USDT", H1),
        ("ETH/USDT", H1),
        ("ETH/USDT", Interval.H4),
    ]
    assert store.intervals("eth-usdt") == (H1, Interval.H4)
    assert store.content_hash("ETH/USDT", H1) == bars_content_hash(store.read("ETH/USDT", H1))


def test_optional_columns_may_differ_between_writes_without_altering_stored_values(tmp_path, bars_factory):
    store = BarStore(tmp_path)
    bars = bars_factory(10)
    store.write("BTC/USD", H1, bars.slice(0, 6), source="files")
    later = bars.slice(4, 6).with_columns(pl.lit(7.0).alias("trade_count"), pl.col("close").alias("vwap"))
    result = store.write("BTC/USD", H1, later, source="alpaca")
    assert result.added == 4
    stored = store.read("BTC/USD", H1)
    assert stored.columns == ["timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]
    assert stored["trade_count"].to_list() == [None] * 6 + [7.0] * 4
    assert_frame_equal(stored.select(bars.columns), bars)


def test_crash_at_replace_leaves_the_previous_file_and_manifest_intact(tmp_path, bars_factory, monkeypatch):
    store = BarStore(tmp_path)
    bars = bars_factory(40)
    store.write("BTC/USDT", H1, bars.slice(0, 20), source="a")
    before = snapshot(store)

    def crash(src, dst):
        raise OSError("simulated power loss at os.replace")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated power loss"):
        store.write("BTC/USDT", H1, bars, source="a")
    monkeypatch.undo()
    assert snapshot(store) == before
    assert_frame_equal(store.read("BTC/USDT", H1), bars.slice(0, 20))
    assert visible_files(store) == [".lock", "BTC-USDT/1h.parquet", "manifest.json"]


def test_crash_inside_the_parquet_writer_leaves_no_partial_file(tmp_path, bars_factory, monkeypatch):
    store = BarStore(tmp_path)
    bars = bars_factory(40)
    store.write("BTC/USDT", H1, bars.slice(0, 20), source="a")
    before = snapshot(store)

    def half_written(self, file, **kwargs):
        file.write(b"PAR1 half a file")
        raise OSError("simulated crash mid-write")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", half_written)
    with pytest.raises(OSError, match="mid-write"):
        store.write("BTC/USDT", H1, bars, source="a")
    monkeypatch.undo()
    assert snapshot(store) == before
    assert_frame_equal(store.read("BTC/USDT", H1), bars.slice(0, 20))
    assert visible_files(store) == [".lock", "BTC-USDT/1h.parquet", "manifest.json"]


def test_a_crash_between_data_file_and_manifest_is_repaired_by_the_next_write(tmp_path, bars_factory, monkeypatch):
    store = BarStore(tmp_path)
    bars = bars_factory(40)
    store.write("BTC/USDT", H1, bars.slice(0, 20), source="a")
    manifest_before = store.manifest_path.read_bytes()
    real_replace = os.replace

    def crash_on_manifest(src, dst):
        if Path(dst).name == "manifest.json":
            raise OSError("simulated crash before the manifest")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_manifest)
    with pytest.raises(OSError, match="before the manifest"):
        store.write("BTC/USDT", H1, bars, source="a")
    monkeypatch.undo()
    # The data file is whole (the new one); the manifest is the old one, not a partial one.
    assert_frame_equal(store.read("BTC/USDT", H1), bars)
    assert store.manifest_path.read_bytes() == manifest_before
    assert visible_files(store) == [".lock", "BTC-USDT/1h.parquet", "manifest.json"]
    repaired = store.write("BTC/USDT", H1, bars, source="a")
    assert repaired.unchanged
    assert store.coverage("BTC/USDT", H1).rows == 40  # type: ignore[union-attr]
    assert store.content_hash("BTC/USDT", H1) == bars_content_hash(bars)


def test_rebuild_manifest_recomputes_entries_from_the_data_files(tmp_path, bars_factory):
    store = BarStore(tmp_path)
    store.write("BTC/USDT", H1, bars_factory(12), source="files")
    expected = store.entries()
    store.manifest_path.unlink()
    assert store.entries() == []
    rebuilt = store.rebuild_manifest()
    assert [(c.symbol, c.interval, c.rows, c.content_hash) for c in rebuilt] == [
        (c.symbol, c.interval, c.rows, c.content_hash) for c in expected
    ]
    assert rebuilt[0].source == "unknown"


def test_concurrent_writers_are_serialised_by_the_lock(tmp_path, bars_factory):
    store = BarStore(tmp_path)
    bars = bars_factory(80)
    errors: list[BaseException] = []

    def writer(chunk: int) -> None:
        try:
            BarStore(tmp_path).write("BTC/USDT", H1, bars.slice(chunk * 10, 10), source=f"w{chunk}")
        except BaseException as exc:  # noqa: BLE001 -- collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert_frame_equal(store.read("BTC/USDT", H1), bars)
    assert store.coverage("BTC/USDT", H1).rows == 80  # type: ignore[union-attr]


def test_a_corrupt_stored_file_is_reported_by_path(tmp_path, bars_factory):
    store = BarStore(tmp_path)
    store.write("BTC/USDT", H1, bars_factory(12), source="a")
    path = store.path("BTC/USDT", H1)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BarDataError, match=r"1h\.parquet: stored Parquet file cannot be read"):
        store.read("BTC/USDT", H1)


def test_verify_detects_a_stored_file_changed_outside_the_store(tmp_path, bars_factory):
    store = BarStore(tmp_path)
    bars = bars_factory(12)
    store.write("BTC/USDT", H1, bars, source="a")
    store.verify("BTC/USDT", H1)
    bars.with_columns(pl.col("volume") * 2).write_parquet(store.path("BTC/USDT", H1))
    with pytest.raises(StoreError, match="content hash .* differs from the manifest's"):
        store.verify("BTC/USDT", H1)
    with pytest.raises(NotStoredError):
        store.verify("ETH/USDT", H1)


def test_a_bar_from_another_market_is_named_in_one_short_line(tmp_path, bars_factory):
    store = BarStore(tmp_path)
    bars = bars_factory(300)
    store.write("BTC/USDT", H1, bars, source="a")
    numeric = [c for c in bars.columns if c != "timestamp"]
    other = bars.with_columns([pl.col(c) * 1.37 for c in numeric])  # every field of every bar differs
    with pytest.raises(BarDataError) as info:
        store.write("BTC/USDT", H1, other, source="b")
    message = str(info.value)
    assert message.startswith("BTC/USDT 1h")
    assert "bar 2024-01-01T00:00:00+00:00 differs from the stored bar (open stored" in message
    assert "300 conflicting bars in all; nothing was written" in message
    assert len(message) < 300
