"""Stationary-bootstrap confidence intervals for a mean: coverage, dependence, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from cappuccino_core.evaluation.bootstrap import (
    bootstrap_mean_ci,
    default_block_length,
    stationary_bootstrap_means,
)

pytestmark = pytest.mark.filterwarnings("error")


def _ar1(n: int, phi: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, 0.01, n)
    x = np.empty(n)
    x[0] = noise[0]
    for t in range(1, n):
        x[t] = phi * x[t - 1] + noise[t]
    return x


def test_ci_of_a_clearly_positive_mean_excludes_zero() -> None:
    x = np.random.default_rng(0).normal(0.01, 0.01, 500)
    ci = bootstrap_mean_ci(x, seed=1)
    assert ci.low is not None and ci.high is not None
    assert 0.0 < ci.low <= ci.estimate <= ci.high
    assert ci.estimate == pytest.approx(x.mean())


def test_ci_of_a_zero_mean_covers_zero_about_as_often_as_its_confidence() -> None:
    covered = 0
    for rep in range(200):
        x = np.random.default_rng(10_000 + rep).normal(0.0, 0.01, 250)
        ci = bootstrap_mean_ci(x, n_resamples=500, seed=rep)
        covered += ci.low <= 0.0 <= ci.high
    assert 0.90 <= covered / 200 <= 0.985


def test_blocks_widen_the_ci_of_positively_autocorrelated_values() -> None:
    x = _ar1(2000, 0.8, seed=3)
    iid = bootstrap_mean_ci(x, block_length=1, seed=4)
    blocks = bootstrap_mean_ci(x, block_length=50, seed=4)
    # for AR(1) with phi 0.8 the long-run std of the mean is 3x the iid one
    assert (blocks.high - blocks.low) > 2.0 * (iid.high - iid.low)


def test_default_block_length_grows_as_the_cube_root_of_n() -> None:
    assert [default_block_length(n) for n in (1, 8, 9, 27, 1000, 8760)] == [1, 2, 3, 3, 10, 21]
    assert bootstrap_mean_ci(np.arange(1000.0), seed=0).block_length == 10


def test_blocks_longer_than_the_series_resample_rotations_with_the_same_mean() -> None:
    x = np.random.default_rng(5).normal(0.0, 1.0, 100)
    means = stationary_bootstrap_means(x, n_resamples=200, block_length=10**12, seed=6)
    np.testing.assert_allclose(means, x.mean(), atol=1e-12)


def test_the_same_seed_gives_the_same_interval_and_another_seed_another() -> None:
    x = np.random.default_rng(7).normal(0.0, 0.01, 300)
    a, b, c = (bootstrap_mean_ci(x, seed=s) for s in (1, 1, 2))
    assert a == b
    assert a.low != c.low


def test_higher_confidence_gives_a_wider_interval() -> None:
    x = np.random.default_rng(8).normal(0.0, 0.01, 300)
    narrow = bootstrap_mean_ci(x, confidence=0.8, seed=1)
    wide = bootstrap_mean_ci(x, confidence=0.99, seed=1)
    assert wide.low < narrow.low and wide.high > narrow.high


def test_fewer_than_two_values_give_undefined_bounds() -> None:
    one = bootstrap_mean_ci([0.02], seed=0)
    assert (one.low, one.high, one.estimate, one.n) == (None, None, 0.02, 1)
    empty = bootstrap_mean_ci([], seed=0)
    assert (empty.low, empty.high, empty.estimate, empty.n) == (None, None, None, 0)


def test_values_with_nan_are_refused_naming_the_index() -> None:
    with pytest.raises(ValueError, match=r"values\[1\] is nan"):
        bootstrap_mean_ci([0.1, float("nan")], seed=0)


def test_bad_confidence_or_block_length_is_refused() -> None:
    with pytest.raises(ValueError):
        bootstrap_mean_ci([0.1, 0.2], confidence=1.0, seed=0)
    with pytest.raises(ValueError):
        bootstrap_mean_ci([0.1, 0.2], block_length=0, seed=0)
