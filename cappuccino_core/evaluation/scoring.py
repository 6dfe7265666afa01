"""The one risk-adjusted score of a policy over evaluation windows (validation, arena, promotion)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cappuccino_core.data.intervals import Interval
from cappuccino_core.evaluation.backtest import EvalReport
from cappuccino_core.evaluation.metrics import excess_returns, sharpe


def window_excess_returns(reports: Sequence[EvalReport]) -> np.ndarray:
    """Per-bar returns in excess of the equal-weight buy-and-hold index, concatenated over windows."""
    if not reports:
        raise ValueError("no evaluation windows to score")
    return np.concatenate([excess_returns(r.returns, r.benchmark_returns) for r in reports])


def excess_sharpe(reports: Sequence[EvalReport], interval: Interval) -> float | None:
    """Annualised Sharpe of the per-bar excess returns over all windows; ``None`` when undefined.

    Windows of one policy are concatenated, so every bar counts once and a window that the
    policy sat out (excess return = minus the index) counts against it.
    """
    return sharpe(window_excess_returns(reports), interval)


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
