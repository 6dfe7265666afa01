"""Bootstrap confidence intervals for the mean of serially dependent per-bar values.

The arena promotes a challenger only if the lower bound of the confidence interval of its
per-bar excess return (alpha) is above zero; this module is that interval.

Per-bar returns of a trading agent are not independent (positions persist, volatility
clusters), and resampling single bars would understate the uncertainty. We use the
**stationary bootstrap** of Politis & Romano (1994): each resample is glued from blocks that
start at uniformly random bars and have geometric lengths with mean ``block_length``, wrapping
around the end of the series (circular). The resampled series is stationary, and blocks keep
the dependence within them. The interval is the percentile interval of the resampled means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Draw at most this many resampled values at once (bounds memory for long series).
_CHUNK_VALUES = 2_000_000


@dataclass(frozen=True)
class ConfidenceInterval:
    """A two-sided bootstrap confidence interval for a mean.

    Attributes:
        low: lower bound; ``None`` if undefined (fewer than 2 values).
        high: upper bound; ``None`` if undefined.
        estimate: the sample mean; ``None`` for an empty input.
        confidence: the nominal coverage, e.g. 0.95.
        n: number of values.
        block_length: mean block length used (1 is the ordinary iid bootstrap).
        n_resamples: number of bootstrap resamples.
    """

    low: float | None
    high: float | None
    estimate: float | None
    confidence: float
    n: int
    block_length: int
    n_resamples: int


def default_block_length(n: int) -> int:
    """Return the rule-of-thumb mean block length ``ceil(n ** (1/3))`` (the optimal rate in n)."""
    return max(1, math.ceil(n ** (1.0 / 3.0) - 1e-9))  # 27 ** (1/3) is 3.0000000000000004


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    block_length: int | None = None,
    seed: int,
) -> ConfidenceInterval:
    """Estimate a percentile confidence interval for the mean by the stationary bootstrap.

    Args:
        values: per-bar values in time order (e.g. excess returns ``r - b``).
        confidence: nominal two-sided coverage, in ``(0, 1)``.
        n_resamples: number of bootstrap resamples.
        block_length: mean block length; ``None`` uses ``default_block_length(n)``; ``1`` gives
            the ordinary iid bootstrap (only for values without serial dependence).
        seed: seed of the random generator; the same seed gives the same interval.

    Returns:
        The interval. With fewer than 2 values the bounds are ``None`` (a resample of one value
        would claim certainty it does not have).

    Raises:
        ValueError: values not 1-D or not finite (naming the index), or bad parameters.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"values[{bad[0]}] is {x[bad[0]]}; values must be finite")
    if not 0.0 < confidence < 1.0 or n_resamples < 1 or (block_length is not None and block_length < 1):
        raise ValueError(
            f"need 0 < confidence < 1, n_resamples >= 1, block_length >= 1; got {confidence}, "
            f"{n_resamples}, {block_length}"
        )
    n = int(x.size)
    length = default_block_length(n) if block_length is None else block_length
    estimate = float(np.mean(x)) if n else None
    if n < 2:
        return ConfidenceInterval(None, None, estimate, confidence, n, length, n_resamples)
    means = stationary_bootstrap_means(x, n_resamples=n_resamples, block_length=length, seed=seed)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return ConfidenceInterval(float(low), float(high), estimate, confidence, n, length, n_resamples)


def stationary_bootstrap_means(
    values: np.ndarray, *, n_resamples: int, block_length: int, seed: int
) -> np.ndarray:
    """Return the means of ``n_resamples`` stationary-bootstrap resamples of ``values``.

    Each resample has ``n`` values. Position 0 starts a block; every later position starts a new
    block with probability ``1 / block_length`` (geometric block lengths), else continues the
    current block at the next bar, wrapping from the last bar to the first.
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    rng = np.random.default_rng(seed)
    positions = np.arange(n)
    chunk = max(1, _CHUNK_VALUES // n)
    means = np.empty(n_resamples)
    for lo in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - lo)
        starts = rng.integers(0, n, size=(size, n))
        new_block = rng.random((size, n)) < 1.0 / block_length
        new_block[:, 0] = True
        # For each position, where its block began (running maximum of block-start positions).
        block_begin = np.maximum.accumulate(np.where(new_block, positions, 0), axis=1)
        first = np.take_along_axis(starts, block_begin, axis=1)
        idx = (first + positions - block_begin) % n
        means[lo : lo + size] = x[idx].mean(axis=1)
    return means
