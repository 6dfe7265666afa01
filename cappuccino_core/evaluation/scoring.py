"""The one risk-adjusted score of a policy over evaluation windows (validation, arena, promotion).

Every place that scores a policy (a trial's validation folds, an arena match, the edge test,
the selection statistics) calls ``excess_sharpe`` on windows of the same length in hours
(``SCORE_WINDOW_HOURS``), each starting in the benchmark's own book (``EnvConfig.start_invested``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cappuccino_core.data.intervals import Interval
from cappuccino_core.evaluation.metrics import excess_returns, sharpe

if TYPE_CHECKING:  # the backtester (torch) is not needed to read scores and window lengths
    from cappuccino_core.evaluation.backtest import EvalReport

SCORE_WINDOW_HOURS = 168.0
"""Length of one scoring window (validation and arena alike): a week, whatever the bar interval."""

REPLICA_TOLERANCE = 1e-12
"""Per-bar excess returns this small are float noise (the same book valued two ways), not a bet: they count as 0."""


def window_bars(interval: Interval, hours: float = SCORE_WINDOW_HOURS, *, min_bars: int = 2) -> int:
    """Return the bars of one scoring window at ``interval`` (``hours`` rounded to whole bars, at least ``min_bars``)."""
    return max(int(round(hours * 3600 / interval.seconds)), min_bars)


def window_excess_returns(reports: Sequence[EvalReport]) -> np.ndarray:
    """Per-bar returns in excess of the equal-weight buy-and-hold index, concatenated over windows.

    Differences within ``REPLICA_TOLERANCE`` are set to exactly 0, so a policy that holds the
    benchmark's book shows no excess at all rather than rounding noise.
    """
    if not reports:
        raise ValueError("no evaluation windows to score")
    excess = np.concatenate([excess_returns(r.returns, r.benchmark_returns) for r in reports])
    excess[np.abs(excess) <= REPLICA_TOLERANCE] = 0.0
    return excess


def excess_sharpe(reports: Sequence[EvalReport], interval: Interval) -> float | None:
    """Annualised Sharpe of the per-bar excess returns over all windows; ``None`` when undefined.

    Windows of one policy are concatenated, so every bar counts once. A policy whose excess is
    zero on every bar is the benchmark itself and scores exactly 0 (no edge); otherwise the
    score is undefined (``None``) only with fewer than 2 bars or constant non-zero excess.
    """
    excess = window_excess_returns(reports)
    if excess.size and not excess.any():
        return 0.0
    return sharpe(excess, interval)


def non_overlapping_starts(valid_starts: np.ndarray, horizon: int, limit: int | None = None) -> np.ndarray:
    """Pick consecutive, non-overlapping window starts from ``valid_starts`` (earliest first)."""
    picked: list[int] = []
    next_free = -1
    for start in np.sort(valid_starts).tolist():
        if start >= next_free:
            picked.append(start)
            next_free = start + horizon
            if limit is not None and len(picked) >= limit:
                break
    return np.asarray(picked, dtype=np.int64)
