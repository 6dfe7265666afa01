"""Rank correlation between two scorings of the same models (does validation predict the holdout?)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho with its sample size and an approximate 95 % interval (``None`` when undefined).

    The interval is Fisher's z-transform with the standard error ``1.06 / sqrt(n - 3)`` of
    Fieller, Hartley and Pearson (1957) for Spearman's rho; it needs at least 4 pairs.
    """

    rho: float | None
    n: int
    low: float | None
    high: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size)
    ranks[order] = np.arange(1, values.size + 1)
    for value in np.unique(values):
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float], confidence: float = 0.95) -> RankCorrelation:
    """Return Spearman's rank correlation of paired scores ``x`` and ``y``.

    Raises:
        ValueError: the sequences differ in length or hold a non-finite value.
    """
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two equally long sequences, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("scores must be finite to be ranked")
    n = int(a.size)
    if n < 2:
        return RankCorrelation(None, n, None, None)
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return RankCorrelation(None, n, None, None)
    rho = float(np.corrcoef(ra, rb)[0, 1])
    if n < 4 or abs(rho) >= 1.0:
        return RankCorrelation(rho, n, None, None)
    z, se = math.atanh(rho), 1.06 / math.sqrt(n - 3)
    q = NormalDist().inv_cdf(0.5 + confidence / 2)
    return RankCorrelation(rho, n, math.tanh(z - q * se), math.tanh(z + q * se))
