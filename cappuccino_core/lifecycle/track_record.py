"""A model's realised track record: per-bar returns, the benchmark's on the same bars, its errors.

The gates and monitors judge a model on this one value. It is built from equity marks (the
trade journal's equity at each traded bar, and the equal-weight buy-and-hold index at the same
bars): ``returns[i]`` runs from mark ``i`` to mark ``i + 1``. Times are the journal's bar times
(bar opening times; the equity is marked at that bar's close), UTC. Skipped bars simply leave
no mark, so a return may span several bars; the time covered is what counts as history.

Days are UTC calendar days of the marks: a day's return compounds the returns whose mark falls
on that day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np

from cappuccino_core.clock import ensure_utc
from cappuccino_core.data.intervals import Interval
from cappuccino_core.evaluation.metrics import as_returns, total_return


@dataclass(frozen=True, eq=False)
class TrackRecord:
    """Returns and benchmark returns between consecutive equity marks, and the errors seen.

    Attributes:
        start: time of the first equity mark (the first return starts there).
        times: time of the mark each return ends at; strictly increasing, all after ``start``.
        returns: fractional return of the model from the previous mark to each mark.
        benchmark_returns: the benchmark's return over the same spans.
        interval: the bar interval (annualises Sharpe ratios).
        error_times: when an error or crash was recorded (any order).
    """

    start: datetime
    times: tuple[datetime, ...]
    returns: np.ndarray
    benchmark_returns: np.ndarray
    interval: Interval
    error_times: tuple[datetime, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", ensure_utc(self.start))
        object.__setattr__(self, "times", tuple(ensure_utc(t) for t in self.times))
        object.__setattr__(self, "error_times", tuple(ensure_utc(t) for t in self.error_times))
        object.__setattr__(self, "returns", as_returns(self.returns))
        object.__setattr__(self, "benchmark_returns", as_returns(self.benchmark_returns, "benchmark_returns"))
        n = len(self.times)
        if self.returns.size != n or self.benchmark_returns.size != n:
            raise ValueError(f"a track record needs one return and one benchmark return per time: got {n} times, "
                             f"{self.returns.size} returns, {self.benchmark_returns.size} benchmark returns")
        previous = self.start
        for i, moment in enumerate(self.times):
            if moment <= previous:
                raise ValueError(f"times[{i}] = {moment.isoformat()} is not after {previous.isoformat()}; "
                                 "marks must be strictly increasing and after start")
            previous = moment

    @classmethod
    def from_equity(
        cls,
        times: Sequence[datetime],
        equity: Sequence[float] | np.ndarray,
        benchmark_index: Sequence[float] | np.ndarray,
        interval: Interval,
        error_times: Sequence[datetime] = (),
    ) -> TrackRecord:
        """Build a record from equity marks and the benchmark index at the same marks.

        Raises:
            ValueError: lengths differ, no mark, or a value that is not a finite positive number.
        """
        eq = np.asarray(equity, dtype=np.float64)
        index = np.asarray(benchmark_index, dtype=np.float64)
        if eq.ndim != 1 or eq.shape != index.shape or eq.size != len(times):
            raise ValueError(f"need as many equity values ({eq.size}) and index values ({index.size}) "
                             f"as times ({len(times)})")
        if eq.size == 0:
            raise ValueError("a track record needs at least one equity mark")
        for name, values in (("equity", eq), ("benchmark_index", index)):
            bad = np.flatnonzero(~np.isfinite(values) | (values <= 0))
            if bad.size:
                raise ValueError(f"{name}[{bad[0]}] is {values[bad[0]]}; marks must be finite and > 0")
        return cls(times[0], tuple(times[1:]), eq[1:] / eq[:-1] - 1.0, index[1:] / index[:-1] - 1.0,
                   interval, tuple(error_times))

    @property
    def end(self) -> datetime:
        """Time of the last mark (``start`` when there is no return yet)."""
        return self.times[-1] if self.times else self.start

    @property
    def span(self) -> timedelta:
        """Time covered from the first mark to the last."""
        return self.end - self.start

    def last(self, duration: timedelta) -> TrackRecord:
        """Return the part of the record in the ``duration`` before its end.

        Keeps the returns whose mark is after ``end - duration`` (a return that straddles the
        cut is kept whole, so the part may cover slightly more) and the errors after the cut.
        """
        if duration <= timedelta(0):
            raise ValueError(f"duration must be positive, got {duration}")
        cut = self.end - duration
        first = next((i for i, t in enumerate(self.times) if t > cut), len(self.times))
        start = self.start if first == 0 else self.times[first - 1]
        return TrackRecord(start, self.times[first:], self.returns[first:], self.benchmark_returns[first:],
                           self.interval, tuple(t for t in self.error_times if t > cut))

    def daily_returns(self) -> list[tuple[date, float]]:
        """Return each UTC day's compounded return, in order (days without a mark are absent)."""
        days: dict[date, list[float]] = {}
        for moment, r in zip(self.times, self.returns, strict=True):
            days.setdefault(moment.date(), []).append(float(r))
        out = []
        for day, values in days.items():
            compounded = total_return(values)
            assert compounded is not None  # a day in the dict has at least one return
            out.append((day, compounded))
        return out

    def day_is_complete(self, day: date) -> bool:
        """True when the record reaches the last bar of ``day`` (the bar that closes at midnight)."""
        next_midnight = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        return self.end + self.interval.timedelta >= next_midnight
