"""One arena match: the windows both players trade, the score and the outcome (``results``: its record).

**Windows.** The match's holdout panel (``market``: which bars a match may use) is cut greedily
into non-overlapping evaluation windows of ``window_bars`` steps (a window starting at decision
row ``t`` earns the returns of bars ``t + 1 .. t + window_bars``; the next window starts at
``t + window_bars`` or later, inside one segment). With ``window_bars=None`` the windows are
the longest that still give a match its windows (``fit_window_bars``). The latest
``confirmation_fraction`` of them are kept for the edge test; match ``n`` draws
``windows_per_match`` of the others without replacement, with a seed derived from
``(arena seed, n)`` and recorded with the match. Non-overlapping windows matter: the per-bar
excess returns of a match (and of the edge test) then never count a bar twice, so the bootstrap
interval of the edge test is not made narrower by duplicated bars. A holdout too short for one
match plus one confirmation window is refused (``WindowsDoNotFit``), never played with fewer.

**Score.** Both players trade the same windows through the same backtester (same fees, slippage
and risk layers). A player's score is ``evaluation.scoring.excess_sharpe`` (the one definition,
shared with validation): the annualised Sharpe ratio of its per-bar returns in excess of the
frictionless equal-weight buy-and-hold index, concatenated over the match's windows in time
order. It rewards beating buy and hold per unit of tracking risk; fees and slippage are inside
the returns. An undefined score (``None``: fewer than 2 bars or zero tracking variance) ranks
below every defined score, and so does a **forfeit**: a player that cannot trade the match's
market at all (``market.CannotTrade``: trained on another bar interval or asset universe) has
no score, and the reason is recorded with the match.

**Outcome.** The challenger wins only with a score higher than the king's by more than
``tie_tolerance``; everything else keeps the king (a tie is a ``TIE``: the challenger is
eliminated and the king's streak does not change, since it did not win).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from cappuccino_core.data.intervals import Interval
from cappuccino_core.evaluation.scoring import excess_sharpe
from cappuccino_core.features.panel import MarketPanel

# Purposes of derived seeds (part of the recorded rules: changing them changes every match).
SEED_WINDOWS = 0
SEED_BOOTSTRAP = 1


@dataclass(frozen=True, eq=False)
class WindowResult:
    """One model traded over one evaluation window (what ``scoring`` needs of a backtest report).

    Attributes:
        model_id: the candidate (or ``baseline/<name>``) that traded.
        start_ns: open time (ns since the epoch, UTC) of the window's decision bar.
        returns: ``[window_bars]`` fractional per-bar returns of the player (net of fees and slippage).
        benchmark_returns: ``[window_bars]`` per-bar returns of the frictionless equal-weight
            buy-and-hold index over the same bars (the same for every player of a window).
        alpha: total return minus the index's total return over the window (``metrics.alpha``).
    """

    model_id: str
    start_ns: int
    returns: np.ndarray
    benchmark_returns: np.ndarray
    alpha: float | None


class WindowsDoNotFit(ValueError):
    """The holdout holds too few windows for one match plus one confirmation window (the message says why)."""


@dataclass(frozen=True, eq=False)
class HoldoutWindows:
    """The evaluation windows of a holdout panel, as decision rows of that panel.

    Attributes:
        match_rows: ``[M]`` start rows matches draw from, increasing.
        confirmation_rows: ``[C]`` start rows of the edge test (the latest windows), increasing.
        window_bars: steps per window.
    """

    match_rows: np.ndarray
    confirmation_rows: np.ndarray
    window_bars: int


def holdout_windows(
    panel: MarketPanel, *, lookback: int, window_bars: int, confirmation_fraction: float, windows_per_match: int
) -> HoldoutWindows:
    """Cut ``panel`` into non-overlapping windows and split off the latest ones for the edge test.

    Args:
        panel: the holdout panel; its first ``lookback - 1`` rows are observation history only.
        lookback: history rows every window needs before its decision row.
        window_bars: steps per window.
        confirmation_fraction: share of the windows (the latest) kept for the edge test.
        windows_per_match: windows a match draws from the others.

    Raises:
        WindowsDoNotFit: the panel holds too few windows for one match plus one confirmation window.
    """
    tiles = _tiles(panel, lookback, window_bars)
    n_confirm = max(1, round(len(tiles) * confirmation_fraction))
    if len(tiles) - n_confirm < windows_per_match:
        raise WindowsDoNotFit(
            f"the holdout panel ({panel.num_bars} rows of {panel.interval}) holds {len(tiles)} non-overlapping "
            f"windows of {window_bars} bars after a lookback of {lookback}; {n_confirm} go to the edge test, which "
            f"leaves {len(tiles) - n_confirm} for matches of {windows_per_match} windows"
        )
    rows = np.asarray(tiles, dtype=np.int64)
    return HoldoutWindows(rows[: len(tiles) - n_confirm], rows[len(tiles) - n_confirm :], window_bars)


def fit_window_bars(panel: MarketPanel, *, lookback: int, confirmation_fraction: float, windows_per_match: int) -> int:
    """Return the longest window (in bars, >= 2) with which ``holdout_windows`` fits ``panel``.

    Raises:
        WindowsDoNotFit: not even 2-bar windows fit.
    """
    longest = (panel.num_bars - lookback) // max(windows_per_match, 1)
    for bars in range(max(longest, 2), 1, -1):
        tiles = len(_tiles(panel, lookback, bars))
        if tiles - max(1, round(tiles * confirmation_fraction)) >= windows_per_match:
            return bars
    holdout_windows(panel, lookback=lookback, window_bars=2, confirmation_fraction=confirmation_fraction,
                    windows_per_match=windows_per_match)  # raises WindowsDoNotFit, saying how short the panel is
    raise AssertionError("unreachable: 2-bar windows fit after all")


def _tiles(panel: MarketPanel, lookback: int, window_bars: int) -> list[int]:
    """Greedy non-overlapping windows: the earliest valid start, then the earliest one after its last bar."""
    valid = panel.window_starts(lookback, window_bars)
    tiles: list[int] = []
    i = 0
    while i < valid.size:
        tiles.append(int(valid[i]))
        i = int(np.searchsorted(valid, valid[i] + window_bars, side="left"))
    return tiles


def derive_seed(arena_seed: int, match_number: int, purpose: int) -> int:
    """Return a 32-bit seed derived from ``(arena_seed, match_number, purpose)`` (SeedSequence hashing)."""
    state = np.random.SeedSequence([arena_seed, match_number, purpose]).generate_state(1, dtype=np.uint32)
    return int(state[0])


def draw_match_windows(match_rows: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Return ``count`` distinct start rows from ``match_rows``, drawn with ``seed``, increasing."""
    if count > match_rows.size:
        raise ValueError(f"cannot draw {count} windows from {match_rows.size}")
    picked = np.random.default_rng(seed).choice(match_rows.size, size=count, replace=False)
    return np.sort(match_rows[picked])


def match_score(results: Sequence[WindowResult], interval: Interval) -> float | None:
    """Return ``scoring.excess_sharpe`` of ``results`` in time order; ``None`` when undefined.

    Raises:
        ValueError: no results.
    """
    return excess_sharpe(sorted(results, key=lambda r: r.start_ns), interval)  # type: ignore[arg-type]  # duck-typed reports


def mean_alpha(results: Sequence[WindowResult]) -> float | None:
    """Return the mean per-window alpha; ``None`` if any window's alpha is undefined or there is none."""
    values = [r.alpha for r in results]
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))


def beats(score: float | None, other: float | None, tolerance: float) -> bool:
    """Return whether ``score`` is higher than ``other`` by more than ``tolerance`` (``None`` ranks lowest)."""
    if score is None:
        return False
    if other is None:
        return True
    return score > other + tolerance


class MatchOutcome(StrEnum):
    """How a match ended."""

    KING_WINS = "king_wins"
    CHALLENGER_WINS = "challenger_wins"
    TIE = "tie"  # keeps the king; the challenger is eliminated; the streak is unchanged


def decide_outcome(king_score: float | None, challenger_score: float | None, tolerance: float) -> MatchOutcome:
    """Return the outcome: the challenger must beat the king; a tie keeps the king."""
    if beats(challenger_score, king_score, tolerance):
        return MatchOutcome.CHALLENGER_WINS
    if beats(king_score, challenger_score, tolerance):
        return MatchOutcome.KING_WINS
    return MatchOutcome.TIE


def match_id(arena_id: str, match_number: int, king_id: str, challenger_id: str) -> str:
    """Return the idempotency key of a match: a digest of arena, number, king and challenger."""
    text = "\x1f".join((arena_id, str(match_number), king_id, challenger_id))
    return hashlib.sha256(text.encode()).hexdigest()[:40]
