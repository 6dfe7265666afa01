"""Bar providers: where a trader gets the latest closed bars and their features.

A provider returns a ``MarketPanel`` of the bars that have closed by a bar time (open times
up to and including it), with features computed by ``features.panel_builder`` exactly as in
training. The trader checks that the last row is the bar it acts on; a provider never
invents, fills or forward-fills a bar.

* ``PanelBarProvider`` replays a panel already built (offline sandbox, tests, parity): the
  rows are the very rows the backtester trades.
* ``StoreBarProvider`` reads the local ``BarStore`` (which the ingest flow keeps fresh).
  TA-Lib's EMA-style indicators depend on the first bar of the series, so by default it reads
  everything stored, and features match a panel built from the same store; ``history_bars``
  trades that exactness for speed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import numpy as np

from cappuccino_core.clock import ensure_utc
from cappuccino_core.data.errors import BarDataError
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.store import BarStore, NotStoredError
from cappuccino_core.data.symbols import parse_symbol
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.features.spec import FeatureSpec


class MissingBarsError(RuntimeError):
    """No usable bars for the requested time (nothing stored, unreadable, or no common bar)."""


class BarProvider(Protocol):
    """Loads the bars a trader decides on. Contract: only bars with open time <= the bar asked for."""

    def panel_until(self, bar_time: datetime) -> MarketPanel:
        """Return the panel of every bar that opened at or before ``bar_time``.

        Raises:
            MissingBarsError: nothing usable is available up to ``bar_time``.
        """
        ...


def bar_time_ns(bar_time: datetime) -> int:
    """Return a bar time as ``MarketPanel.timestamps`` holds it (int64 ns since the epoch, UTC)."""
    moment = ensure_utc(bar_time)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000


class PanelBarProvider:
    """Replays the rows of a built panel up to each bar time."""

    def __init__(self, panel: MarketPanel) -> None:
        self.panel = panel

    def panel_until(self, bar_time: datetime) -> MarketPanel:
        """Return rows with open time <= ``bar_time`` (views, no copies)."""
        stop = int(np.searchsorted(self.panel.timestamps, bar_time_ns(bar_time), side="right"))
        if stop == 0:
            raise MissingBarsError(f"the replay panel has no bar at or before {ensure_utc(bar_time).isoformat()}")
        return self.panel.rows(0, stop)


class StoreBarProvider:
    """Reads the bar store and builds the panel; the last panel is kept for the same bar time."""

    def __init__(
        self,
        store: BarStore,
        symbols: Sequence[str],
        interval: Interval,
        *,
        spec: FeatureSpec = FeatureSpec(),
        max_gap_bars: int = 3,
        history_bars: int | None = None,
    ) -> None:
        """Set up the provider.

        Args:
            store: the bar store.
            symbols: pairs, in the model's column order.
            interval: the bar interval.
            spec: the features to compute (the model's).
            max_gap_bars: as in ``build_panel``.
            history_bars: read only this many bars before the bar asked for (None: all stored;
                features then match training features built from the same store exactly).
        """
        if history_bars is not None and history_bars < 1:
            raise ValueError(f"history_bars must be >= 1 or None, got {history_bars}")
        self.store = store
        self.symbols = tuple(parse_symbol(s) for s in symbols)
        self.interval = Interval(interval)
        self.spec = spec
        self.max_gap_bars = max_gap_bars
        self.history_bars = history_bars
        self._cached: tuple[datetime, MarketPanel] | None = None

    def panel_until(self, bar_time: datetime) -> MarketPanel:
        """Read the bars that opened at or before ``bar_time`` and build their panel.

        Raises:
            MissingBarsError: a symbol has nothing stored, its bars are unusable, or no bar
                is common to every symbol.
        """
        bar_time = ensure_utc(bar_time)
        if self._cached is not None and self._cached[0] == bar_time:
            return self._cached[1]
        end = bar_time + self.interval.timedelta
        start = None if self.history_bars is None else end - self.interval.timedelta * self.history_bars
        try:
            bars = {s: self.store.read(s, self.interval, start, end) for s in self.symbols}
            empty = [s for s, b in bars.items() if b.height == 0]
            if empty:
                raise MissingBarsError(f"no {self.interval.value} bars of {', '.join(empty)} up to {bar_time.isoformat()}")
            from cappuccino_core.features.panel_builder import build_panel  # TA-Lib: only when a panel is built

            panel = build_panel(bars, interval=self.interval, spec=self.spec, max_gap_bars=self.max_gap_bars)
        except (NotStoredError, BarDataError) as exc:
            raise MissingBarsError(str(exc)) from exc
        self._cached = (bar_time, panel)
        return panel
