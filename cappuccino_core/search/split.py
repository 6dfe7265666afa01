"""The time split of a study: search period | arena holdout | replay period, as UTC times.

Boundaries are times, not row counts, so every bar interval of the timeframe search cuts
history at the same instants, and the arena, the sandbox replay and every worker on every
machine read exactly the same periods. A bar belongs to a period when it *ends* inside it:
``period.start <= open`` and ``open + interval <= period.end``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from cappuccino_core.clock import ensure_utc, parse_utc
from cappuccino_core.features.panel import MarketPanel

DAY = timedelta(days=1)


@dataclass(frozen=True)
class HistorySplit:
    """``[search_start, search_end) | [search_end, holdout_end) | [holdout_end, replay_end)``."""

    search_start: datetime
    search_end: datetime
    holdout_end: datetime
    replay_end: datetime

    def __post_init__(self) -> None:
        times = [ensure_utc(t) for t in (self.search_start, self.search_end, self.holdout_end, self.replay_end)]
        if not (times[0] < times[1] < times[2] <= times[3]):
            raise ValueError(f"split boundaries must increase: {[t.isoformat() for t in times]}")

    @property
    def has_replay(self) -> bool:
        return self.replay_end > self.holdout_end

    def to_dict(self) -> dict[str, str]:
        return {k: ensure_utc(getattr(self, k)).isoformat() for k in ("search_start", "search_end", "holdout_end", "replay_end")}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> HistorySplit:
        return cls(**{k: parse_utc(data[k]) for k in ("search_start", "search_end", "holdout_end", "replay_end")})


def plan_split(first_bar: datetime, data_end: datetime, *, holdout_weeks: float, replay_weeks: float = 0.0,
               min_search_weeks: float = 4.0) -> HistorySplit:
    """Cut ``[first_bar, data_end)`` so the most recent weeks are the holdout (and the replay after it).

    Boundaries are floored to whole UTC days, so a 1d bar never straddles one.

    Raises:
        ValueError: negative lengths, or fewer than ``min_search_weeks`` left for the search.
    """
    if holdout_weeks <= 0 or replay_weeks < 0:
        raise ValueError(f"need holdout_weeks > 0 and replay_weeks >= 0, got {holdout_weeks}, {replay_weeks}")
    start, end = _ceil_day(ensure_utc(first_bar)), _floor_day(ensure_utc(data_end))
    replay_end = end
    holdout_end = _floor_day(replay_end - timedelta(weeks=replay_weeks))
    search_end = _floor_day(holdout_end - timedelta(weeks=holdout_weeks))
    if search_end - start < timedelta(weeks=min_search_weeks):
        raise ValueError(
            f"history {start.date()} .. {end.date()} is too short: a {holdout_weeks}-week holdout and "
            f"{replay_weeks}-week replay leave {(search_end - start).days} days to search, need {min_search_weeks} weeks"
        )
    return HistorySplit(start, search_end, holdout_end, replay_end)


def rows_between(panel: MarketPanel, start: datetime, end: datetime) -> MarketPanel:
    """Rows of ``panel`` whose bars lie wholly in ``[start, end)``."""
    opens = panel.timestamps
    bar_ns = panel.interval.seconds * 1_000_000_000
    lo, hi = _ns(start), _ns(end)
    mask = (opens >= lo) & (opens + bar_ns <= hi)
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        raise ValueError(f"the {panel.interval} panel has no bars in [{start.isoformat()}, {end.isoformat()})")
    return panel.rows(int(idx[0]), int(idx[-1]) + 1)


def search_panel(panel: MarketPanel, split: HistorySplit) -> MarketPanel:
    """The search period of ``panel`` (training and validation only ever see these rows)."""
    return rows_between(panel, split.search_start, split.search_end)


def holdout_panel(panel: MarketPanel, split: HistorySplit, lookback: int) -> MarketPanel:
    """The arena holdout, preceded by ``lookback - 1`` rows of history for the first observation.

    Those rows are history only: no window decides or trades on them.
    """
    held = rows_between(panel, split.search_end, split.holdout_end)
    first = int(np.searchsorted(panel.timestamps, held.timestamps[0]))
    return panel.rows(max(first - (lookback - 1), 0), first + held.num_bars)


def _floor_day(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _ceil_day(t: datetime) -> datetime:
    floored = _floor_day(t)
    return floored if floored == t else floored + DAY


def _ns(t: datetime) -> int:
    return int(ensure_utc(t).timestamp() * 1_000_000) * 1000
