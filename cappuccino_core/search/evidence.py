"""Validation evidence of an edge: what a trial must show before its network may enter the arena.

The test: the mean of the trial's per-bar validation excess returns (over the equal-weight
buy-and-hold index, every validation window of every fold, in time order) must have a
stationary-bootstrap confidence interval (``evaluation.bootstrap``, two-sided ``CONFIDENCE``)
whose lower bound is above zero. Blocks are at least a day of bars long, so a trend that a
policy rides for many bars is resampled as one piece rather than counted as many independent
wins. The best validation score alone is no evidence: among many trials on a market without
an edge, one always scores well.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cappuccino_core.data.intervals import Interval
from cappuccino_core.evaluation.bootstrap import bootstrap_mean_ci, default_block_length

CONFIDENCE = 0.95
"""Two-sided confidence of the interval (a one-sided test at 2.5 %)."""
N_RESAMPLES = 2000
BLOCK_HOURS = 24.0


@dataclass(frozen=True)
class ValidationEvidence:
    """The bootstrap interval of a trial's mean validation excess return, and whether it clears zero."""

    bars: int
    mean_excess: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float
    block_length: int
    passed: bool

    @property
    def reason(self) -> str:
        """One line: why the trial has, or has not, shown an edge."""
        if self.passed:
            return f"validation excess return {self.mean_excess:.3g}/bar, {self.confidence:.0%} interval low {self.ci_low:.3g} > 0"
        return (f"no validation evidence of an edge: the {self.confidence:.0%} bootstrap interval of the mean excess "
                f"return over {self.bars} bars has lower bound {self.ci_low} (needs > 0)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationEvidence:
        return cls(**data)


def validation_evidence(excess: np.ndarray, *, seed: int, interval: Interval | None = None) -> ValidationEvidence:
    """Test the per-bar validation excess returns of one trial (see the module docstring)."""
    values = np.asarray(excess, dtype=np.float64)
    day = 1 if interval is None else max(1, round(BLOCK_HOURS * 3600 / interval.seconds))
    block = max(default_block_length(values.size), day)
    ci = bootstrap_mean_ci(values, confidence=CONFIDENCE, n_resamples=N_RESAMPLES, block_length=block, seed=seed)
    passed = ci.low is not None and ci.low > 0.0
    return ValidationEvidence(int(values.size), ci.estimate, ci.low, ci.high, CONFIDENCE, ci.block_length, passed)
