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

**Trading at the model's interval.** A provider serves one interval; ``at(interval)`` gives the
provider of another (the store's base bars resampled with ``data.resample``: epoch-aligned,
complete buckets only, so a bar still forming never exists). Traders are stepped by a clock
of the base interval (the hourly deployments, the replay's bars), and ``closed_bar`` is the
one rule that says, on each base bar, whether a bar of the model's interval has just closed
and which: a 4h model acts once per 4h bar, at the base bar that closes it, on the 4h bar
that opened 4 hours before that close; on the other base bars it does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import polars as pl

from cappuccino_core.clock import ensure_utc
from cappuccino_core.data.errors import BarDataError
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.resample import resample_bars
from cappuccino_core.data.store import BarStore, NotStoredError
from cappuccino_core.data.symbols import parse_symbol
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.features.spec import FeatureSpec


class MissingBarsError(RuntimeError):
    """No usable bars for the requested time (nothing stored, unreadable, or no common bar)."""


class BarProvider(Protocol):
    """Loads the bars a trader decides on. Contract: only bars with open time <= the bar asked for."""

    interval: Interval

    def panel_until(self, bar_time: datetime) -> MarketPanel:
        """Return the panel of every bar of ``interval`` that opened at or before ``bar_time``.

        Raises:
            MissingBarsError: nothing usable is available up to ``bar_time``.
        """
        ...

    def at(self, interval: Interval) -> BarProvider:
        """Return the provider of the same market at ``interval`` (``self`` at its own interval).

        Raises:
            ValueError: ``interval`` cannot be made from these bars.
        """
        ...


def closed_bar(clock_bar: datetime, clock_interval: Interval, interval: Interval) -> datetime | None:
    """Return the bar of ``interval`` that closed with the ``clock_interval`` bar opening at ``clock_bar``, else None.

    Bars are epoch-aligned (``data.resample``): a 4h bar closes at 00:00, 04:00, ... UTC. At the
    1h clock bar that opened at 03:00 (closed 04:00) the 4h bar of 00:00 has just closed; at the
    ones of 00:00, 01:00 and 02:00 no 4h bar closes. The state at the returned bar uses data up
    to its close, which is the clock bar's close: nothing later.

    Raises:
        ValueError: ``interval`` is not a whole multiple of ``clock_interval``.
    """
    clock_interval, interval = Interval(clock_interval), Interval(interval)
    if interval.seconds % clock_interval.seconds:
        raise ValueError(f"{interval.value} bars cannot be traded on a {clock_interval.value} clock: "
                         f"{interval.value} is not a whole multiple of {clock_interval.value}")
    closed = ensure_utc(clock_bar) + clock_interval.timedelta
    if int(closed.timestamp()) % interval.seconds:
        return None
    return closed - interval.timedelta


def next_close(clock_bar: datetime, clock_interval: Interval, interval: Interval) -> datetime:
    """Return when the next bar of ``interval`` closes after the clock bar's close (for the log line)."""
    closed = int((ensure_utc(clock_bar) + Interval(clock_interval).timedelta).timestamp())
    step = Interval(interval).seconds
    return datetime.fromtimestamp((closed // step + 1) * step, tz=UTC)


def bar_time_ns(bar_time: datetime) -> int:
    """Return a bar time as ``MarketPanel.timestamps`` holds it (int64 ns since the epoch, UTC)."""
    moment = ensure_utc(bar_time)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000


class PanelBarProvider:
    """Replays the rows of a built panel up to each bar time."""

    def __init__(self, panel: MarketPanel, *, build: Callable[[Interval], MarketPanel] | None = None) -> None:
        """Set up the replay.

        Args:
            panel: the bars at its interval.
            build: builds the same market's panel at another interval (once per interval);
                None: only ``panel``'s interval is served.
        """
        self.panel = panel
        self.interval = panel.interval
        self._build = build
        self._family: dict[Interval, PanelBarProvider] = {self.interval: self}  # shared by every interval's provider

    def panel_until(self, bar_time: datetime) -> MarketPanel:
        """Return rows with open time <= ``bar_time`` (views, no copies)."""
        stop = int(np.searchsorted(self.panel.timestamps, bar_time_ns(bar_time), side="right"))
        if stop == 0:
            raise MissingBarsError(f"the replay panel has no bar at or before {ensure_utc(bar_time).isoformat()}")
        return self.panel.rows(0, stop)

    def at(self, interval: Interval) -> PanelBarProvider:
        """Return the replay at ``interval`` (built once by ``build``).

        Raises:
            ValueError: another interval is asked for and there is no ``build``.
        """
        interval = Interval(interval)
        if interval not in self._family:
            if self._build is None:
                raise ValueError(f"the replay holds {self.interval.value} bars only, not {interval.value}")
            other = PanelBarProvider(self._build(interval), build=self._build)
            if other.interval != interval:
                raise ValueError(f"asked for {interval.value} bars, the replay built {other.interval.value} bars")
            other._family = self._family
            self._family[interval] = other
        return self._family[interval]


class StoreBarProvider:
    """Reads the bar store and builds the panel; the last panel is kept for the same bar time."""

    def __init__(
        self,
        store: BarStore,
        symbols: Sequence[str],
        interval: Interval,
        *,
        base_interval: Interval | None = None,
        spec: FeatureSpec = FeatureSpec(),
        max_gap_bars: int = 3,
        history_bars: int | None = None,
    ) -> None:
        """Set up the provider.

        Args:
            store: the bar store.
            symbols: pairs, in the model's column order.
            interval: the bar interval served.
            base_interval: the interval the store holds (default ``interval``); longer intervals
                are resampled from it, complete bars only.
            spec: the features to compute (the model's).
            max_gap_bars: as in ``build_panel``.
            history_bars: read only this many bars before the bar asked for (None: all stored;
                features then match training features built from the same store exactly).

        Raises:
            ValueError: ``history_bars`` below 1, or ``interval`` not a whole multiple of ``base_interval``.
        """
        if history_bars is not None and history_bars < 1:
            raise ValueError(f"history_bars must be >= 1 or None, got {history_bars}")
        self.store = store
        self.symbols = tuple(parse_symbol(s) for s in symbols)
        self.interval = Interval(interval)
        self.base_interval = Interval(base_interval or interval)
        if self.interval.seconds % self.base_interval.seconds:
            raise ValueError(f"{self.interval.value} bars cannot be made from stored {self.base_interval.value} bars")
        self.spec = spec
        self.max_gap_bars = max_gap_bars
        self.history_bars = history_bars
        self._cached: tuple[datetime, MarketPanel] | None = None
        self._others: dict[Interval, StoreBarProvider] = {}

    def at(self, interval: Interval) -> StoreBarProvider:
        """Return the provider of ``interval`` over the same stored base bars (one per interval).

        Raises:
            ValueError: ``interval`` is not a whole multiple of the stored interval.
        """
        interval = Interval(interval)
        if interval == self.interval:
            return self
        if interval not in self._others:
            self._others[interval] = StoreBarProvider(
                self.store, self.symbols, interval, base_interval=self.base_interval, spec=self.spec,
                max_gap_bars=self.max_gap_bars, history_bars=self.history_bars)
        return self._others[interval]

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
            bars = {s: self._bars(s, start, end) for s in self.symbols}
            empty = [s for s, b in bars.items() if b.height == 0]
            if empty:
                raise MissingBarsError(f"no {self.interval.value} bars of {', '.join(empty)} up to {bar_time.isoformat()}")
            from cappuccino_core.features.panel_builder import build_panel  # TA-Lib: only when a panel is built

            panel = build_panel(bars, interval=self.interval, spec=self.spec, max_gap_bars=self.max_gap_bars)
        except (NotStoredError, BarDataError) as exc:
            raise MissingBarsError(str(exc)) from exc
        self._cached = (bar_time, panel)
        return panel

    def _bars(self, symbol: str, start: datetime | None, end: datetime) -> pl.DataFrame:
        """The stored bars of ``symbol`` in ``[start, end)`` at the served interval (resampled when longer)."""
        stored = self.store.read(symbol, self.base_interval, start, end)
        if self.interval == self.base_interval:
            return stored
        return resample_bars(stored, source=self.base_interval, target=self.interval)
