"""The panel builder: inner-join alignment, no fills, gap segments and a stable data hash."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cappuccino_core.data.errors import BarDataError
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.synthetic import SyntheticMarketConfig, generate_bars
from cappuccino_core.features.indicators import FEATURE_TRANSFORMS, compute_features, warmup_rows
from cappuccino_core.features.panel_builder import bars_hash, build_panel, gap_segments
from cappuccino_core.features.spec import FEATURE_NAMES

SYMBOLS = ("LINK/USD", "BTC/USD", "ETH/USD")  # deliberately not sorted
HOURS = 400
HOUR_NS = 3600 * 1_000_000_000
SHARED_DATA = Path(
    os.environ.get("CAPPUCCINO_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data" / "ohlcv")
)


@pytest.fixture(scope="module")
def bars() -> dict[str, pl.DataFrame]:
    config = SyntheticMarketConfig(seed=2, symbols=SYMBOLS)
    return generate_bars(config, config.origin, config.origin + timedelta(hours=HOURS))


def without_rows(frame: pl.DataFrame, rows: range) -> pl.DataFrame:
    """Return ``frame`` with the given row positions removed (a gap in the feed)."""
    return frame.with_row_index().filter(~pl.col("index").is_in(list(rows))).drop("index")


def test_panel_keeps_symbol_order_and_has_no_undefined_values(bars: dict[str, pl.DataFrame]) -> None:
    panel = build_panel(bars, interval=Interval.H1)
    assert panel.symbols == SYMBOLS
    assert panel.num_bars == HOURS - warmup_rows()
    assert panel.features.shape == (panel.num_bars, 3, len(FEATURE_NAMES)) and panel.features.dtype == np.float32
    assert np.isfinite(panel.features).all() and np.isfinite(panel.close).all()
    assert (np.diff(panel.timestamps) == HOUR_NS).all() and (panel.segment == 0).all()
    assert panel.feature_spec.transforms == FEATURE_TRANSFORMS


def test_panel_values_are_each_assets_own_bars_and_features(bars: dict[str, pl.DataFrame]) -> None:
    panel = build_panel(bars, interval=Interval.H1)
    for i, symbol in enumerate(SYMBOLS):
        own = compute_features(bars[symbol])
        np.testing.assert_allclose(panel.features[:, i, :], own.select(FEATURE_NAMES).to_numpy(), rtol=1e-6)
        source = bars[symbol].tail(panel.num_bars)
        np.testing.assert_array_equal(panel.close[:, i], source["close"].to_numpy())
        np.testing.assert_array_equal(panel.volume[:, i], source["volume"].to_numpy())


def test_a_short_gap_in_one_asset_removes_the_rows_for_all_and_is_bridged(bars: dict[str, pl.DataFrame]) -> None:
    gapped = dict(bars)
    gapped["BTC/USD"] = without_rows(bars["BTC/USD"], range(200, 203))  # 3 missing bars = max_gap_bars
    panel = build_panel(gapped, interval=Interval.H1, max_gap_bars=3)
    missing = bars["BTC/USD"]["timestamp"][200:203].dt.epoch("ns").to_list()
    assert not set(missing) & set(panel.timestamps.tolist())
    assert panel.num_bars == HOURS - warmup_rows() - 3
    assert (panel.segment == 0).all()
    assert np.diff(panel.timestamps).max() == 4 * HOUR_NS
    assert np.isfinite(panel.features).all()


def test_a_gap_longer_than_max_gap_bars_starts_a_new_segment(bars: dict[str, pl.DataFrame]) -> None:
    gapped = dict(bars)
    gapped["ETH/USD"] = without_rows(bars["ETH/USD"], range(200, 204))  # 4 missing bars > 3
    panel = build_panel(gapped, interval=Interval.H1, max_gap_bars=3)
    assert set(np.unique(panel.segment).tolist()) == {0, 1}
    first_of_new = int(np.argmax(panel.segment == 1))
    assert panel.timestamps[first_of_new] - panel.timestamps[first_of_new - 1] == 5 * HOUR_NS
    assert panel.timestamps[first_of_new] == bars["ETH/USD"]["timestamp"].dt.epoch("ns")[204]


def test_window_starts_never_cross_a_segment(bars: dict[str, pl.DataFrame]) -> None:
    gapped = dict(bars)
    gapped["LINK/USD"] = without_rows(bars["LINK/USD"], range(150, 160))
    panel = build_panel(gapped, interval=Interval.H1)
    lookback, horizon = 20, 30
    starts = panel.window_starts(lookback, horizon)
    assert starts.size > 0
    for t in starts:
        assert panel.segment[t - lookback + 1] == panel.segment[t + horizon]
    boundary = int(np.argmax(panel.segment == 1))
    assert not any(t - lookback + 1 < boundary <= t + horizon for t in starts)


def test_gap_segments_counts_missing_bars_against_the_limit() -> None:
    stamps = np.array([0, 1, 3, 6, 7, 12, 13], dtype=np.int64) * HOUR_NS
    # 1 -> 3 misses 1 bar, 3 -> 6 misses 2, 7 -> 12 misses 4.
    assert gap_segments(stamps, Interval.H1, 2).tolist() == [0, 0, 0, 0, 0, 1, 1]
    assert gap_segments(stamps, Interval.H1, 1).tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert gap_segments(stamps, Interval.H1, 0).tolist() == [0, 0, 1, 2, 2, 3, 3]


def test_data_hash_is_stable_and_changes_with_any_bar(bars: dict[str, pl.DataFrame]) -> None:
    first = build_panel(bars, interval=Interval.H1).data_hash
    copied = {s: f.clone() for s, f in bars.items()}
    assert build_panel(copied, interval=Interval.H1).data_hash == first
    as_ms = {s: f.with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC"))) for s, f in bars.items()}
    assert bars_hash(as_ms) == first
    changed = dict(bars)
    changed["ETH/USD"] = bars["ETH/USD"].with_row_index().with_columns(
        pl.when(pl.col("index") == 5).then(pl.col("volume") * 1.0001).otherwise(pl.col("volume")).alias("volume")
    ).drop("index")
    assert bars_hash(changed) != first  # row 5 is in the warm-up: the panel is equal, the input is not
    reordered = {s: bars[s] for s in reversed(SYMBOLS)}
    assert bars_hash(reordered) != first


def test_no_common_timestamp_is_refused(bars: dict[str, pl.DataFrame]) -> None:
    apart = {"BTC/USD": bars["BTC/USD"].head(100), "ETH/USD": bars["ETH/USD"].tail(100)}
    with pytest.raises(BarDataError, match="no timestamp where every asset"):
        build_panel(apart, interval=Interval.H1)


def test_bars_off_the_interval_grid_are_refused(bars: dict[str, pl.DataFrame]) -> None:
    with pytest.raises(BarDataError, match="not on the 4h grid"):
        build_panel(bars, interval=Interval.H4)


def test_empty_input_and_negative_gap_limit_are_refused(bars: dict[str, pl.DataFrame]) -> None:
    with pytest.raises(ValueError, match="at least one symbol"):
        build_panel({}, interval=Interval.H1)
    with pytest.raises(ValueError, match="max_gap_bars"):
        build_panel(bars, interval=Interval.H1, max_gap_bars=-1)


def test_real_binance_bars_with_outages_build_a_segmented_panel() -> None:
    files = {f"{base}/USD": SHARED_DATA / f"{base}-USDT_1h.parquet" for base in ("BTC", "AAVE")}
    if not all(path.exists() for path in files.values()):
        pytest.skip(f"shared Binance bars not found under {SHARED_DATA} (set CAPPUCCINO_SHARED_DATA)")
    panel = build_panel({s: pl.read_parquet(p) for s, p in files.items()}, interval=Interval.H1)
    # SOURCES.md lists a 188-bar BTC outage and a 166-bar AAVE outage in September 2024.
    assert panel.segment.max() >= 1
    assert np.isfinite(panel.features).all()
    steps = np.diff(panel.timestamps)
    assert (steps[np.diff(panel.segment) == 0] <= 4 * HOUR_NS).all()
