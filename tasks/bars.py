"""Refresh the latest few bars before a trader steps (the traders read the local bar store).

The ``ingest`` deployment runs daily (full window, quality and freshness check); the hourly
``sandbox`` and ``production-trading`` flows call ``refresh_latest_bars`` first so the bar they
step on is stored. Each symbol is one ``fetch_and_store`` task (retried on I/O only). Storing
is an upsert: a bar already stored with the same values is a no-op, so a repeated refresh
changes nothing; a bar that differs from the stored one is refused (``BarDataError``) and named.
"""

from __future__ import annotations

from datetime import datetime

from prefect import unmapped
from pydantic import BaseModel

from cappuccino_core.clock import ensure_utc
from cappuccino_core.config import Settings
from cappuccino_core.config.components import make_source
from cappuccino_core.data.ingest import IngestWindow, ingest_window
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.store import BarStore
from tasks.data import fetch_and_store

REFRESH_BARS = 6
"""Bars of the base interval fetched before each trading step (the one traded and five before it)."""


class BarRefresh(BaseModel):
    """What a refresh fetched and stored, per symbol, and which symbols failed (and why)."""

    window_start: datetime
    window_end: datetime
    added: dict[str, int]
    failed: dict[str, str]


def recent_window(bar_time: datetime, interval: Interval, bars: int, now: datetime) -> IngestWindow:
    """Return the ``bars`` bars ending with the one that opened at ``bar_time``, never past the last closed bar.

    The window is ``[bar_time - (bars - 1) * step, bar_time + step)``, its end cut at the end of
    the latest bar closed at ``now`` (a bar still forming is never asked for). It may be empty.

    Raises:
        ValueError: ``bars`` is below 1.
    """
    if bars < 1:
        raise ValueError(f"a refresh needs at least one bar, got {bars}")
    bar_time = ensure_utc(bar_time)
    step = Interval(interval).timedelta
    closed_end = ingest_window(now, Interval(interval), step).end
    end = min(bar_time + step, closed_end)
    start = min(bar_time - step * (bars - 1), end)
    return IngestWindow(start, end)


def refresh_latest_bars(settings: Settings, bar_time: datetime, now: datetime, bars: int = REFRESH_BARS) -> BarRefresh:
    """Fetch and store the last ``bars`` base-interval bars up to ``bar_time`` for every symbol (call in a flow).

    Failures (after the task's retries) are returned per symbol, not raised: the caller steps
    its traders anyway (a trader skips a bar it cannot see) and then fails its run naming them.
    """
    interval = settings.base_interval
    window = recent_window(bar_time, interval, bars, now)
    symbols = list(settings.symbols)
    if window.start >= window.end:
        return BarRefresh(window_start=window.start, window_end=window.end, added={}, failed={})
    source, store = make_source(settings), BarStore(settings.bars_dir)
    futures = fetch_and_store.map(unmapped(source), unmapped(store), symbols, unmapped(interval), unmapped(window))
    added: dict[str, int] = {}
    failed: dict[str, str] = {}
    for symbol, future in zip(symbols, futures):
        future.wait()
        if future.state.is_completed():
            added[symbol] = future.result().write.added
        else:
            failed[symbol] = str(future.state.result(raise_on_failure=False))
    return BarRefresh(window_start=window.start, window_end=window.end, added=added, failed=failed)
