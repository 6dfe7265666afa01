"""Bar clocks: which closed bar a trader acts on next, in real time or replayed.

A bar is named by its **open** time (``data/bars.py``); it is closed once ``open + interval``
has passed. A trader decides at the close of a bar, so the bar to act on is the latest
closed one. ``WallBarClock`` reads the time from a ``cappuccino_core.clock.Clock`` (the
system clock in production, a ``FixedClock`` in tests); ``ReplayBarClock`` walks a list of
stored bar times as fast as the caller steps, so the sandbox runs offline and in tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Protocol

from cappuccino_core.clock import Clock, SystemClock, ensure_utc
from cappuccino_core.data.intervals import Interval


class BarClock(Protocol):
    """Yields the open times of closed bars to act on, oldest first, never the same bar twice.

    Contract: every time returned is UTC-aware, on the interval's grid, and later than the
    previous one returned.
    """

    interval: Interval

    def next_bar(self) -> datetime | None:
        """Return the next closed bar to act on, or ``None`` when there is none (yet, or any more)."""
        ...


def latest_closed_bar(now: datetime, interval: Interval) -> datetime:
    """Return the open time of the latest bar of ``interval`` that has closed at ``now``.

    Example: at 10:00:00 the 1h bar that opened at 09:00 has just closed; at 10:59:59 it is
    still the latest closed one.
    """
    seconds = int(ensure_utc(now).timestamp())
    step = interval.seconds
    return datetime.fromtimestamp((seconds // step) * step - step, tz=UTC)


class WallBarClock:
    """Real time: the latest closed bar, each one once."""

    def __init__(self, interval: Interval, clock: Clock | None = None) -> None:
        self.interval = Interval(interval)
        self._clock = clock if clock is not None else SystemClock()
        self._last: datetime | None = None

    def latest(self) -> datetime:
        """Return the latest closed bar now (whether or not it was returned before)."""
        return latest_closed_bar(self._clock.now(), self.interval)

    def next_bar(self) -> datetime | None:
        """Return the latest closed bar if it is newer than the last one returned, else ``None``.

        Bars skipped while nobody asked (a process down for hours) are not replayed: a trader
        acts on the present bar, never on old prices.
        """
        latest = self.latest()
        if self._last is not None and latest <= self._last:
            return None
        self._last = latest
        return latest


class ReplayBarClock:
    """Steps through given bar open times, one per call, as fast as the caller goes."""

    def __init__(self, bar_times: Iterable[datetime], interval: Interval) -> None:
        """Check and keep the bar times.

        Raises:
            ValueError: a naive time, a time off the interval grid, or times not strictly increasing.
        """
        self.interval = Interval(interval)
        times = [ensure_utc(t) for t in bar_times]
        step = self.interval.seconds
        for i, moment in enumerate(times):
            if moment.timestamp() % step != 0:
                raise ValueError(f"bar time {moment.isoformat()} is not on the {self.interval.value} grid")
            if i and moment <= times[i - 1]:
                raise ValueError(f"bar times must increase: {moment.isoformat()} follows {times[i - 1].isoformat()}")
        self._times: Sequence[datetime] = tuple(times)
        self._next = 0

    @classmethod
    def from_timestamps_ns(cls, timestamps: Sequence[int], interval: Interval) -> ReplayBarClock:
        """Build from ``MarketPanel.timestamps`` (int64 nanoseconds since the epoch, UTC)."""
        return cls((datetime.fromtimestamp(int(ns) // 1_000_000_000, tz=UTC) for ns in timestamps), interval)

    @property
    def remaining(self) -> int:
        """Bars not returned yet."""
        return len(self._times) - self._next

    def next_bar(self) -> datetime | None:
        """Return the next bar time, or ``None`` once every bar was returned."""
        if self._next >= len(self._times):
            return None
        moment = self._times[self._next]
        self._next += 1
        return moment

    def __iter__(self) -> Iterator[datetime]:
        """Iterate over the bars not returned yet."""
        while (moment := self.next_bar()) is not None:
            yield moment
