"""The edge test: a king with a full win streak is promoted only if it really beats buy and hold.

Winning matches only shows a king is better than the challengers it met; it may still have no
edge over the market. When the streak reaches ``promotion_streak`` the king trades the arena's
**confirmation windows** (the latest holdout windows, which no match ever uses, so the king was
not selected on them) and passes only if both hold:

1. **Alpha with confidence.** Its per-bar returns in excess of the equal-weight buy-and-hold
   index, concatenated over the confirmation windows, have a positive mean, and the lower bound
   of the stationary-bootstrap confidence interval of that mean
   (``bootstrap.bootstrap_mean_ci``, two-sided ``alpha_confidence``, so a one-sided test at
   ``(1 - alpha_confidence) / 2``) is above zero.
2. **Beats the baselines.** Its match score on those windows is higher than the score of every
   ``baselines.default_baselines`` strategy on the same windows (same fees and slippage; an
   undefined baseline score counts as beaten, an undefined king score as not beating).
   Skipped when ``require_beat_baselines`` is off.

A king that fails is **eliminated** (reason ``no_edge``) and the next entrant is crowned, like
after a promotion. Each king is therefore tested at most once, on windows it was not selected
on: on a market without an edge a test passes with probability at most about the one-sided
level (2.5 % at 95 % confidence) times the chance of also beating every baseline, and an
unbeatable but edgeless king (a buy-and-hold clone) cannot block the arena or be re-tested
until luck promotes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cappuccino_core.arena.config import ArenaConfig
from cappuccino_core.arena.match import WindowResult, beats, match_score
from cappuccino_core.data.intervals import Interval
from cappuccino_core.evaluation.bootstrap import bootstrap_mean_ci
from cappuccino_core.evaluation.scoring import window_excess_returns


@dataclass(frozen=True)
class BaselineScore:
    """A baseline's match score on the confirmation windows (``None`` if undefined)."""

    name: str
    score: float | None


@dataclass(frozen=True)
class EdgeTestResult:
    """The outcome of the edge test of one king.

    Attributes:
        passed: both conditions held (the king is promoted).
        reasons: why it failed, one line per failed condition (empty when passed).
        window_starts: confirmation windows (decision-bar open times, ns UTC).
        bars: number of per-bar excess returns tested.
        mean_excess: mean per-bar excess return over buy and hold (the point estimate).
        ci_low, ci_high: bootstrap interval of the mean (``None`` with fewer than 2 bars).
        confidence: two-sided confidence of the interval.
        block_length: mean bootstrap block length used.
        n_resamples: bootstrap resamples.
        seed: bootstrap seed (``derive_seed(arena seed, match number, SEED_BOOTSTRAP)``).
        king_score: the king's match score on the confirmation windows.
        baseline_scores: each baseline's score on the same windows.
        require_beat_baselines: whether condition 2 was required.
    """

    passed: bool
    reasons: tuple[str, ...]
    window_starts: tuple[int, ...]
    bars: int
    mean_excess: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float
    block_length: int
    n_resamples: int
    seed: int
    king_score: float | None
    baseline_scores: tuple[BaselineScore, ...]
    require_beat_baselines: bool

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["reasons"] = list(self.reasons)
        out["window_starts"] = list(self.window_starts)
        out["baseline_scores"] = [{"name": b.name, "score": b.score} for b in self.baseline_scores]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EdgeTestResult:
        """Rebuild from ``to_dict`` output."""
        values = dict(data)
        values["reasons"] = tuple(data["reasons"])
        values["window_starts"] = tuple(int(s) for s in data["window_starts"])
        values["baseline_scores"] = tuple(BaselineScore(b["name"], b["score"]) for b in data["baseline_scores"])
        return cls(**values)


def edge_test(
    king: Sequence[WindowResult],
    baselines: Mapping[str, Sequence[WindowResult]],
    *,
    interval: Interval,
    config: ArenaConfig,
    seed: int,
) -> EdgeTestResult:
    """Test whether the king beats buy and hold with confidence and beats every baseline.

    Args:
        king: the king's results on the confirmation windows.
        baselines: each baseline's results on the same windows, keyed by baseline name.
        interval: bar interval of the panel (annualises the scores).
        config: confidence, resamples, block length and whether baselines must be beaten.
        seed: seed of the bootstrap.

    Raises:
        ValueError: no windows, or a baseline traded other windows than the king.
    """
    ordered = sorted(king, key=lambda r: r.start_ns)
    starts = tuple(r.start_ns for r in ordered)
    if not starts:
        raise ValueError("the edge test needs at least one confirmation window")
    for name, results in baselines.items():
        if tuple(sorted(r.start_ns for r in results)) != starts:
            raise ValueError(f"baseline {name} traded other windows than the king")
    excess = window_excess_returns(ordered)  # type: ignore[arg-type]  # WindowResult has returns and benchmark_returns
    ci = bootstrap_mean_ci(
        excess,
        confidence=config.alpha_confidence,
        n_resamples=config.n_bootstrap,
        block_length=config.bootstrap_block_length,
        seed=seed,
    )
    reasons: list[str] = []
    if ci.estimate is None or ci.estimate <= 0.0:
        reasons.append(f"mean excess return over buy and hold is {ci.estimate}, not positive")
    if ci.low is None or ci.low <= 0.0:
        reasons.append(f"the {config.alpha_confidence:.0%} bootstrap interval's lower bound {ci.low} is not above zero")
    king_score = match_score(ordered, interval)
    baseline_scores = tuple(BaselineScore(name, match_score(results, interval)) for name, results in baselines.items())
    if config.require_beat_baselines:
        for baseline in baseline_scores:
            if not beats(king_score, baseline.score, 0.0):
                reasons.append(f"score {king_score} does not beat baseline {baseline.name} ({baseline.score})")
    return EdgeTestResult(
        passed=not reasons,
        reasons=tuple(reasons),
        window_starts=starts,
        bars=int(excess.size),
        mean_excess=ci.estimate,
        ci_low=ci.low,
        ci_high=ci.high,
        confidence=config.alpha_confidence,
        block_length=ci.block_length,
        n_resamples=ci.n_resamples,
        seed=seed,
        king_score=king_score,
        baseline_scores=baseline_scores,
        require_beat_baselines=config.require_beat_baselines,
    )
