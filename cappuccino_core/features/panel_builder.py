"""Build a ``MarketPanel``: several assets' bars and features aligned on one time grid.

Alignment and gap policy:

* Features are computed per asset on that asset's own bar series
  (``indicators.compute_features``), so each asset loses its own warm-up rows and its
  indicators run across its own missing bars (rows are consecutive to TA-Lib).
* Assets are aligned by an **inner join on timestamp**: a panel row exists only where every
  asset has a bar and features. A bar missing in one asset removes that timestamp for all
  assets. Nothing is ever forward-filled or invented.
* Segments: consecutive panel rows whose timestamps differ by more than
  ``(max_gap_bars + 1)`` intervals (that is, more than ``max_gap_bars`` missing bars between
  them) start a new segment; ``MarketPanel.window_starts`` keeps every window inside one
  segment. Shorter gaps are bridged: one environment step simply spans them.
* ``data_hash`` is a SHA-256 over the input bars as given (symbols in order, and per
  symbol its timestamps and OHLCV values), so equal inputs give equal hashes and any
  changed bar changes it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping

import numpy as np
import polars as pl

from cappuccino_core.data.bars import REQUIRED_COLUMNS, TIMESTAMP_DTYPE
from cappuccino_core.data.errors import BarDataError
from cappuccino_core.data.intervals import Interval
from cappuccino_core.features.indicators import compute_features, resolve_spec
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.features.spec import FeatureSpec

logger = logging.getLogger(__name__)

_OHLCV: tuple[str, ...] = REQUIRED_COLUMNS[1:]


def build_panel(
    bars_by_symbol: Mapping[str, pl.DataFrame],
    *,
    interval: Interval,
    spec: FeatureSpec = FeatureSpec(),
    max_gap_bars: int = 3,
) -> MarketPanel:
    """Compute features per asset and align all assets on their common timestamps.

    Args:
        bars_by_symbol: bar tables keyed by symbol; the key order is the panel's column order.
        interval: the interval of every table.
        spec: the features to compute (its ``transforms`` are filled in if empty).
        max_gap_bars: the most missing bars a step may bridge inside one segment.

    Returns:
        The aligned panel; its ``feature_spec`` is ``spec`` with transforms filled in.

    Raises:
        ValueError: no symbols, or ``max_gap_bars`` negative.
        BarDataError: a table off the ``interval`` grid, unusable for features, or no
            timestamp common to all assets after the warm-up.
    """
    if not bars_by_symbol:
        raise ValueError("build_panel needs at least one symbol")
    if max_gap_bars < 0:
        raise ValueError(f"max_gap_bars {max_gap_bars} < 0")
    spec = resolve_spec(spec)
    symbols = tuple(bars_by_symbol)
    joined: pl.DataFrame | None = None
    for i, symbol in enumerate(symbols):
        where = f"{symbol} {interval.value}"
        bars = _on_grid(bars_by_symbol[symbol], interval, where)
        features = compute_features(bars, spec, where=where)
        table = bars.select(
            "timestamp", *(pl.col(c).cast(pl.Float64).alias(f"{c}_{i}") for c in _OHLCV)
        ).join(
            features.select("timestamp", *(pl.col(n).alias(f"f{n}_{i}") for n in spec.names)),
            on="timestamp",
            how="inner",
        )
        joined = table if joined is None else joined.join(table, on="timestamp", how="inner")
    assert joined is not None  # symbols is non-empty
    joined = joined.sort("timestamp")
    if joined.height == 0:
        raise BarDataError(", ".join(symbols), "no timestamp where every asset has a bar and features")

    timestamps = joined.get_column("timestamp").dt.epoch("ns").to_numpy().astype(np.int64)
    segment = gap_segments(timestamps, interval, max_gap_bars)

    def matrix(column: str) -> np.ndarray:
        return np.column_stack([joined.get_column(f"{column}_{i}").to_numpy() for i in range(len(symbols))])

    features = np.stack(
        [np.column_stack([joined.get_column(f"f{n}_{i}").to_numpy() for n in spec.names]) for i in range(len(symbols))],
        axis=1,
    ).astype(np.float32)
    if not np.isfinite(features).all():
        row = int(np.argwhere(~np.isfinite(features))[0][0])
        raise BarDataError(", ".join(symbols), f"a feature does not fit float32 at row {row}")
    logger.info(
        "panel %s at %s: %d rows, %d segment(s)", ",".join(symbols), interval.value, joined.height, int(segment[-1]) + 1
    )
    return MarketPanel(
        symbols=symbols,
        interval=interval,
        timestamps=timestamps,
        open=matrix("open"),
        high=matrix("high"),
        low=matrix("low"),
        close=matrix("close"),
        volume=matrix("volume"),
        features=features,
        segment=segment,
        feature_spec=spec,
        data_hash=bars_hash(bars_by_symbol),
    )


def gap_segments(timestamps: np.ndarray, interval: Interval, max_gap_bars: int) -> np.ndarray:
    """Return ``int32`` segment ids: a new segment starts after a gap of more than ``max_gap_bars`` bars.

    Args:
        timestamps: strictly increasing ``int64`` nanoseconds, ``[T]``.
        interval: the bar interval.
        max_gap_bars: missing bars a step may bridge.
    """
    step_ns = interval.seconds * 1_000_000_000
    breaks = np.diff(timestamps) > (max_gap_bars + 1) * step_ns
    return np.concatenate([[0], np.cumsum(breaks)]).astype(np.int32)


def bars_hash(bars_by_symbol: Mapping[str, pl.DataFrame]) -> str:
    """Return the SHA-256 hex digest of the bars: symbols in order, timestamps (µs) and OHLCV."""
    digest = hashlib.sha256()
    for symbol, bars in bars_by_symbol.items():
        digest.update(symbol.encode() + b"\0")
        digest.update(np.int64(bars.height).tobytes())
        stamps = bars.get_column("timestamp").cast(TIMESTAMP_DTYPE).dt.epoch("us").to_numpy()
        digest.update(np.ascontiguousarray(stamps, dtype="<i8").tobytes())
        for column in _OHLCV:
            values = bars.get_column(column).cast(pl.Float64).to_numpy()
            digest.update(np.ascontiguousarray(values, dtype="<f8").tobytes())
    return digest.hexdigest()


def _on_grid(bars: pl.DataFrame, interval: Interval, where: str) -> pl.DataFrame:
    """Return ``bars`` with ``timestamp`` as UTC microseconds, or raise if off the ``interval`` grid."""
    if "timestamp" not in bars.columns:
        raise BarDataError(where, "missing column 'timestamp'")
    dtype = bars.schema["timestamp"]
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone != "UTC":
        raise BarDataError(where, f"timestamp must be a UTC datetime, got {dtype}")
    bars = bars.with_columns(pl.col("timestamp").cast(TIMESTAMP_DTYPE))
    off = (bars.get_column("timestamp").dt.epoch("us") % (interval.seconds * 1_000_000)) != 0
    if off.any():
        row = int(off.arg_true()[0])
        raise BarDataError(where, f"row {row} timestamp {bars['timestamp'][row]} is not on the {interval.value} grid")
    return bars
