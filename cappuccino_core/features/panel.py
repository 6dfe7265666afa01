"""The market panel: several assets aligned on one time grid, with prices and features.

This is what the environment, the backtester, the arena and the trader read. It is
built by ``features.panel_builder.build_panel`` from stored bars (see there for the gap
policy) and never contains forward-filled bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cappuccino_core.data.intervals import Interval
from cappuccino_core.features.spec import FeatureSpec


@dataclass(frozen=True, eq=False)
class MarketPanel:
    """Aligned multi-asset bars and features.

    Attributes:
        symbols: asset symbols, in column order.
        interval: bar interval.
        timestamps: bar open times, ``int64`` nanoseconds since the epoch (UTC), shape ``[T]``,
            strictly increasing.
        open, high, low, close, volume: raw bar values, ``float64`` ``[T, A]``.
        features: scale-free per-asset features, ``float32`` ``[T, A, F]`` (see ``feature_spec``);
            row ``t`` uses bars up to and including ``t`` only.
        segment: ``int32`` ``[T]``: rows with equal ids form a contiguous run of the grid. A
            window (lookback plus episode) must never span two segments.
        feature_spec: how ``features`` were made.
        data_hash: content hash of the bars the panel was built from.
    """

    symbols: tuple[str, ...]
    interval: Interval
    timestamps: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    features: np.ndarray
    segment: np.ndarray
    feature_spec: FeatureSpec
    data_hash: str

    @property
    def num_bars(self) -> int:
        """Number of rows ``T``."""
        return int(self.timestamps.shape[0])

    @property
    def num_assets(self) -> int:
        """Number of assets ``A``."""
        return len(self.symbols)

    def rows(self, start: int, stop: int) -> MarketPanel:
        """Return rows ``[start, stop)`` as a new panel (views, no copies)."""
        return MarketPanel(
            symbols=self.symbols,
            interval=self.interval,
            timestamps=self.timestamps[start:stop],
            open=self.open[start:stop],
            high=self.high[start:stop],
            low=self.low[start:stop],
            close=self.close[start:stop],
            volume=self.volume[start:stop],
            features=self.features[start:stop],
            segment=self.segment[start:stop],
            feature_spec=self.feature_spec,
            data_hash=self.data_hash,
        )

    def window_starts(self, lookback: int, horizon: int) -> np.ndarray:
        """Return every row ``t`` where rows ``[t - lookback + 1, t + horizon]`` lie in one segment.

        ``t`` is the decision bar of an episode's first step; ``horizon`` is the number of
        steps after it (each step needs the next bar to execute and value the portfolio).
        """
        n = self.num_bars
        first = lookback - 1
        last = n - 1 - horizon
        if last < first:
            return np.empty(0, dtype=np.int64)
        t = np.arange(first, last + 1)
        same = self.segment[t - lookback + 1] == self.segment[t + horizon]
        return t[same].astype(np.int64)
