"""PBO by CSCV, PSR, expected maximum Sharpe and DSR: hand cases, a reference loop, planted signals."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from cappuccino_core.evaluation.metrics import per_bar_sharpe
from cappuccino_core.evaluation.overfitting import (
    deflated_sharpe_ratio,
    deflated_sharpe_ratio_from_stats,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
)

pytestmark = pytest.mark.filterwarnings("error")


# ----------------------------------------------------------------------------- PBO


def test_pbo_is_one_when_the_in_sample_winner_always_loses_out_of_sample() -> None:
    # two blocks of two rows; trial 0 shines in block 0, trial 1 in block 1
    perf = np.array([[0.02, -0.01], [0.04, 0.01], [-0.02, 0.01], [0.0, 0.03]])
    result = probability_of_backtest_overfitting(perf, n_splits=2)
    assert result.n_combinations == 2
    np.testing.assert_allclose(result.logits, [math.log(0.5), math.log(0.5)])  # rank 1 of 2: w = 1/3
    assert result.pbo == 1.0
    assert result.prob_oos_loss == 0.5  # OOS Sharpes of the winners: -0.707 and 0.0


def _reference_logits(perf: np.ndarray, n_splits: int) -> list[float]:
    blocks = np.array_split(np.arange(perf.shape[0]), n_splits)
    n_trials = perf.shape[1]
    logits = []
    for chosen in itertools.combinations(range(n_splits), n_splits // 2):
        is_rows = np.concatenate([blocks[b] for b in chosen])
        oos_rows = np.concatenate([blocks[b] for b in range(n_splits) if b not in chosen])
        is_sr = [per_bar_sharpe(perf[is_rows, j]) for j in range(n_trials)]
        oos_sr = [per_bar_sharpe(perf[oos_rows, j]) for j in range(n_trials)]
        best = int(np.argmax(is_sr))
        rank = 1 + sum(s < oos_sr[best] for s in oos_sr)
        w = rank / (n_trials + 1)
        logits.append(math.log(w / (1 - w)))
    return logits


def test_pbo_logits_match_a_plain_loop_over_combinations() -> None:
    perf = np.random.default_rng(11).normal(0.0005, 0.01, (63, 7)) + 0.3  # offset tests centring
    result = probability_of_backtest_overfitting(perf, n_splits=6)
    np.testing.assert_allclose(result.logits, _reference_logits(perf, 6), rtol=1e-9)
    assert result.n_combinations == math.comb(6, 3) == result.logits.size


def test_pbo_is_near_zero_when_one_trial_is_better_in_every_block() -> None:
    perf = np.random.default_rng(0).normal(0.0, 0.01, (1600, 10))
    perf[:, 3] += 0.01
    result = probability_of_backtest_overfitting(perf)
    assert result.pbo is not None and result.pbo <= 0.01
    assert result.prob_oos_loss == 0.0
    assert result.n_combinations == math.comb(16, 8)


def test_pbo_of_pure_noise_trials_is_about_one_half() -> None:
    # One seed's PBO is a single noisy draw (its combinations share data); average a few.
    pbos = []
    for seed in range(12):
        perf = np.random.default_rng(seed).normal(0.0, 0.01, (800, 50))
        pbos.append(probability_of_backtest_overfitting(perf).pbo)
    assert 0.38 <= float(np.mean(pbos)) <= 0.62


def test_pbo_with_fewer_than_two_trials_is_undefined_with_a_reason() -> None:
    result = probability_of_backtest_overfitting(np.zeros((40, 1)) + 0.01, n_splits=4)
    assert result.pbo is None and result.prob_oos_loss is None
    assert "at least 2 trials" in (result.reason or "")
    assert result.logits.size == 0


def test_pbo_with_a_trial_that_never_trades_in_some_half_is_undefined_naming_the_trial() -> None:
    perf = np.random.default_rng(1).normal(0.0, 0.01, (64, 4))
    perf[:40, 2] = 0.0  # flat for the first 5 of 8 blocks: constant on the half made of those
    result = probability_of_backtest_overfitting(perf, n_splits=8)
    assert result.pbo is None
    assert "[2]" in (result.reason or "")


def test_pbo_refuses_odd_splits_too_few_rows_and_nan() -> None:
    perf = np.random.default_rng(2).normal(0.0, 0.01, (30, 3))
    with pytest.raises(ValueError, match="even"):
        probability_of_backtest_overfitting(perf, n_splits=5)
    with pytest.raises(ValueError, match="2 rows per block"):
        probability_of_backtest_overfitting(perf, n_splits=16)
    perf[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"perf_matrix\[4, 1\]"):
        probability_of_backtest_overfitting(perf, n_splits=2)


# ----------------------------------------------------------------------------- PSR and expected max Sharpe


def test_psr_is_one_half_when_the_sharpe_equals_the_benchmark() -> None:
    assert probabilistic_sharpe_ratio(0.1, 0.1, 500, -1.0, 6.0) == pytest.approx(0.5)


def test_psr_matches_the_formula_with_a_scipy_normal() -> None:
    norm = pytest.importorskip("scipy.stats").norm
    sr, bench, n, skew, kurt = 0.08, 0.02, 750, -0.7, 5.5
    z = (sr - bench) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert probabilistic_sharpe_ratio(sr, bench, n, skew, kurt) == pytest.approx(norm.cdf(z), rel=1e-9)


def test_psr_is_undefined_for_one_bar_or_impossible_moments() -> None:
    assert probabilistic_sharpe_ratio(0.1, 0.0, 1, 0.0, 3.0) is None
    assert probabilistic_sharpe_ratio(1.0, 0.0, 100, 5.0, 1.0) is None


def test_expected_max_sharpe_matches_the_formula_and_grows_with_trials() -> None:
    norm = pytest.importorskip("scipy.stats").norm
    g = 0.5772156649015329
    expected = math.sqrt(0.5) * ((1 - g) * norm.ppf(1 - 1 / 100) + g * norm.ppf(1 - 1 / (100 * math.e)))
    assert expected_max_sharpe(100, 0.5) == pytest.approx(expected, rel=1e-9)
    values = [expected_max_sharpe(n, 1.0) for n in (2, 10, 100, 1000)]
    assert values == sorted(values) and values[0] > 0
    assert expected_max_sharpe(1, 1.0) == 0.0
    assert expected_max_sharpe(50, 0.0) == 0.0


def test_expected_max_sharpe_refuses_zero_trials_and_negative_variance() -> None:
    with pytest.raises(ValueError):
        expected_max_sharpe(0, 1.0)
    with pytest.raises(ValueError):
        expected_max_sharpe(10, -0.1)


# ----------------------------------------------------------------------------- DSR


def test_dsr_reproduces_the_worked_example_of_bailey_and_lopez_de_prado() -> None:
    # Annual SR 2.5 over 5 years of daily bars, 100 trials with annual-SR variance 0.5,
    # skew -3, kurtosis 10 (DSR paper, 2014, numerical example): DSR about 0.90.
    result = deflated_sharpe_ratio_from_stats(
        2.5 / math.sqrt(250), n_bars=1250, skew=-3.0, kurtosis=10.0,
        n_trials=100, sharpe_variance_across_trials=0.5 / 250,
    )
    assert result.dsr == pytest.approx(0.9004, abs=1e-3)
    assert result.sr0 * math.sqrt(250) == pytest.approx(1.7893, abs=1e-3)


def test_dsr_decreases_as_more_trials_were_tried() -> None:
    returns = np.random.default_rng(5).normal(0.002, 0.01, 2000)
    dsrs = [
        deflated_sharpe_ratio(returns, n_trials=n, sharpe_variance_across_trials=0.001).dsr
        for n in (1, 10, 100, 1000, 10000)
    ]
    assert all(a > b for a, b in zip(dsrs, dsrs[1:]))


def test_dsr_of_one_trial_is_the_psr_against_zero_with_the_sample_moments() -> None:
    stats = pytest.importorskip("scipy.stats")
    returns = np.random.default_rng(6).standard_t(5, 1500) * 0.01 + 0.0005
    result = deflated_sharpe_ratio(returns, n_trials=1, sharpe_variance_across_trials=0.01)
    assert result.sr0 == 0.0
    assert result.observed_sharpe == pytest.approx(returns.mean() / returns.std(ddof=1))
    assert result.skew == pytest.approx(stats.skew(returns))
    assert result.kurtosis == pytest.approx(stats.kurtosis(returns, fisher=False))
    assert result.dsr == pytest.approx(
        probabilistic_sharpe_ratio(result.observed_sharpe, 0.0, 1500, result.skew, result.kurtosis)
    )


def test_dsr_of_flat_returns_is_undefined_with_a_reason() -> None:
    result = deflated_sharpe_ratio(np.zeros(100), n_trials=20, sharpe_variance_across_trials=0.01)
    assert result.dsr is None and result.observed_sharpe is None
    assert "undefined" in (result.reason or "")
    assert result.sr0 > 0
