"""Overfitting statistics for a search over many trials: PBO, PSR, expected max Sharpe, DSR.

References:
    Bailey, Borwein, López de Prado, Zhu (2014), "The Probability of Backtest Overfitting",
    Journal of Computational Finance 20(4) — CSCV and PBO.
    Bailey, López de Prado (2012), "The Sharpe Ratio Efficient Frontier", Journal of Risk
    15(2) — the Probabilistic Sharpe Ratio.
    Bailey, López de Prado (2014), "The Deflated Sharpe Ratio: Correcting for Selection Bias,
    Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5).

All Sharpe ratios here are **per bar** (``metrics.per_bar_sharpe``: mean / sample std, not
annualised), as the formulas require. Normal CDF and quantile come from the standard library
(``statistics.NormalDist``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from cappuccino_core.evaluation.metrics import as_returns, per_bar_sharpe

EULER_MASCHERONI = 0.5772156649015329
_NORMAL = NormalDist()
# Work on at most this many floats at a time when evaluating CSCV combinations.
_CHUNK_FLOATS = 4_000_000


# --------------------------------------------------------------------------- PBO by CSCV


@dataclass(frozen=True, eq=False)
class PBOResult:
    """Probability of backtest overfitting, estimated by CSCV.

    Attributes:
        pbo: fraction of in-sample/out-of-sample splits where the in-sample best trial ranks at
            or below the out-of-sample median (logit <= 0); ``None`` if undefined (see ``reason``).
        logits: ``log(w / (1 - w))`` per split, ``w`` the in-sample best trial's out-of-sample
            relative rank ``rank / (N + 1)``; empty when undefined.
        prob_oos_loss: fraction of splits where the in-sample best trial's out-of-sample Sharpe
            is negative; ``None`` if undefined.
        n_combinations: number of in-sample/out-of-sample splits, ``C(S, S/2)``.
        n_trials: number of trials (columns).
        n_splits: number of row blocks ``S``.
        reason: why ``pbo`` is undefined, else ``None``.
    """

    pbo: float | None
    logits: np.ndarray
    prob_oos_loss: float | None
    n_combinations: int
    n_trials: int
    n_splits: int
    reason: str | None = None


def probability_of_backtest_overfitting(perf_matrix: np.ndarray, n_splits: int = 16) -> PBOResult:
    """Estimate PBO by combinatorially symmetric cross-validation (Bailey et al. 2014).

    The rows (time) are cut into ``S = n_splits`` contiguous blocks (sizes differ by at most one
    row). For each of the ``C(S, S/2)`` ways to pick half the blocks as in-sample (the rest is
    out-of-sample): take the trial with the best in-sample per-bar Sharpe, find its relative
    rank ``w = rank / (N + 1)`` among the out-of-sample Sharpes (rank 1 = worst, ties averaged),
    and record the logit ``log(w / (1 - w))``. PBO is the fraction of logits ``<= 0``. Ties for
    the in-sample best go to the lowest column.

    Args:
        perf_matrix: per-bar (or per-slice) returns ``[T, N]``, one column per trial, time-ordered.
        n_splits: ``S``, even, ``>= 2``; each block needs at least 2 rows.

    Returns:
        The estimate. It is undefined (``pbo=None`` with a reason) for fewer than 2 trials, or
        when a trial's returns are constant on some half, so its Sharpe is undefined there
        (drop trials that never trade before calling).

    Raises:
        ValueError: not a 2-D finite matrix (naming the cell), or a bad ``n_splits``.
    """
    m = np.asarray(perf_matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"perf_matrix must be [T, N_trials], got shape {m.shape}")
    bad = np.argwhere(~np.isfinite(m))
    if bad.size:
        raise ValueError(f"perf_matrix[{bad[0][0]}, {bad[0][1]}] is {m[tuple(bad[0])]}; must be finite")
    n_rows, n_trials = m.shape
    if n_splits < 2 or n_splits % 2 or n_rows < 2 * n_splits:
        raise ValueError(
            f"n_splits must be even, >= 2 and leave >= 2 rows per block; got {n_splits} for {n_rows} rows"
        )
    n_comb = math.comb(n_splits, n_splits // 2)
    if n_trials < 2:
        reason = f"PBO needs at least 2 trials to rank, got {n_trials}"
        return PBOResult(None, np.empty(0), None, n_comb, n_trials, n_splits, reason)

    blocks = _block_stats(m, n_splits)
    in_sample = np.array(
        [[b in c for b in range(n_splits)] for c in itertools.combinations(range(n_splits), n_splits // 2)]
    )
    chunk = max(1, _CHUNK_FLOATS // (n_splits * n_trials))
    logits, oos_best, constant = [], [], np.zeros(n_trials, dtype=bool)
    for lo in range(0, n_comb, chunk):
        mask = in_sample[lo : lo + chunk]
        is_sr, is_const = _half_sharpe(blocks, mask)
        oos_sr, oos_const = _half_sharpe(blocks, ~mask)
        constant |= (is_const | oos_const).any(axis=0)
        best = np.argmax(is_sr, axis=1)
        chosen = oos_sr[np.arange(mask.shape[0]), best][:, None]
        rank = (oos_sr < chosen).sum(axis=1) + ((oos_sr == chosen).sum(axis=1) + 1) / 2.0
        w = rank / (n_trials + 1)
        logits.append(np.log(w / (1.0 - w)))
        oos_best.append(chosen[:, 0])
    if constant.any():
        trials = np.flatnonzero(constant).tolist()
        reason = f"trials {trials} have constant returns on some half, so their Sharpe is undefined"
        return PBOResult(None, np.empty(0), None, n_comb, n_trials, n_splits, reason)
    lam = np.concatenate(logits)
    pbo = float(np.mean(lam <= 0.0))
    loss = float(np.mean(np.concatenate(oos_best) < 0.0))
    return PBOResult(pbo, lam, loss, n_comb, n_trials, n_splits)


@dataclass(frozen=True, eq=False)
class _BlockStats:
    """Per-block sufficient statistics ``[S, N]``; sums are of column-centred values."""

    count: np.ndarray
    total: np.ndarray
    total_sq: np.ndarray
    low: np.ndarray
    high: np.ndarray
    column_mean: np.ndarray


def _block_stats(m: np.ndarray, n_splits: int) -> _BlockStats:
    # Centre each column first: the variance from sums of squares then loses no precision.
    column_mean = m.mean(axis=0)
    centred = m - column_mean
    parts = np.array_split(np.arange(m.shape[0]), n_splits)
    return _BlockStats(
        count=np.array([p.size for p in parts], dtype=np.float64),
        total=np.stack([centred[p].sum(axis=0) for p in parts]),
        total_sq=np.stack([(centred[p] ** 2).sum(axis=0) for p in parts]),
        low=np.stack([m[p].min(axis=0) for p in parts]),
        high=np.stack([m[p].max(axis=0) for p in parts]),
        column_mean=column_mean,
    )


def _half_sharpe(b: _BlockStats, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-bar Sharpe ``[C, N]`` of the rows in the blocks picked by ``mask [C, S]``, and which are constant."""
    pick = mask.astype(np.float64)
    n = (pick @ b.count)[:, None]
    mean_c = (pick @ b.total) / n
    var = ((pick @ b.total_sq) - n * mean_c**2) / (n - 1.0)
    # Exact constancy test from block minima/maxima (a variance near 0 could be rounding);
    # only columns with a constant block can be constant on a half.
    constant = np.zeros(var.shape, dtype=bool)
    cols = np.flatnonzero((b.low == b.high).any(axis=0))
    if cols.size:
        low = np.where(mask[:, :, None], b.low[None, :, cols], np.inf).min(axis=1)
        high = np.where(mask[:, :, None], b.high[None, :, cols], -np.inf).max(axis=1)
        constant[:, cols] = low == high
    std = np.sqrt(np.where(constant, 1.0, np.maximum(var, np.finfo(float).tiny)))
    return (mean_c + b.column_mean) / std, constant


# --------------------------------------------------------------------------- PSR and DSR


def probabilistic_sharpe_ratio(
    sr: float, sr_benchmark: float, n: int, skew: float, kurtosis: float
) -> float | None:
    """Probability that the true Sharpe exceeds ``sr_benchmark`` (Bailey & López de Prado 2012).

    ``PSR = Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - skew * SR + (kurtosis - 1) / 4 * SR^2))``

    Args:
        sr: observed per-bar Sharpe ratio.
        sr_benchmark: benchmark per-bar Sharpe ``SR*``.
        n: number of bars the Sharpe was measured on.
        skew: skewness of the returns.
        kurtosis: Pearson kurtosis of the returns (3 for a normal distribution, not excess).

    Returns:
        The probability, or ``None`` when ``n < 2`` or the moments make the variance term
        non-positive (impossible for moments of real data).
    """
    if n < 2:
        return None
    var_term = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr**2
    if not var_term > 0.0:
        return None
    return _NORMAL.cdf((sr - sr_benchmark) * math.sqrt(n - 1) / math.sqrt(var_term))


def expected_max_sharpe(n_trials: int, variance_of_sharpes: float) -> float:
    """Expected maximum per-bar Sharpe of ``n_trials`` skill-less trials (Bailey & López de Prado 2014).

    ``SR0 = sqrt(V) * ((1 - g) * Phi^-1(1 - 1/N) + g * Phi^-1(1 - 1/(N e)))``, ``g`` the
    Euler–Mascheroni constant, ``V`` the variance of the trials' Sharpe ratios. A single trial
    is not a selection: its expected maximum is its expected value, 0.

    Raises:
        ValueError: ``n_trials < 1`` or a negative or non-finite variance.
    """
    if n_trials < 1 or not (math.isfinite(variance_of_sharpes) and variance_of_sharpes >= 0.0):
        raise ValueError(
            f"need n_trials >= 1 and a finite variance >= 0; got {n_trials}, {variance_of_sharpes}"
        )
    if n_trials == 1:
        return 0.0
    g = EULER_MASCHERONI
    z = (1.0 - g) * _NORMAL.inv_cdf(1.0 - 1.0 / n_trials) + g * _NORMAL.inv_cdf(
        1.0 - 1.0 / (n_trials * math.e)
    )
    return math.sqrt(variance_of_sharpes) * z


@dataclass(frozen=True)
class DSRResult:
    """Deflated Sharpe ratio of the selected (best) trial.

    Attributes:
        dsr: probability that the true Sharpe exceeds ``sr0``; ``None`` if undefined.
        observed_sharpe: per-bar Sharpe of the selected trial (``None`` if undefined).
        sr0: the deflated threshold, the expected maximum Sharpe of ``n_trials`` null trials.
        n_trials: number of trials the selection was made from.
        n_bars: number of bars of the selected trial's returns.
        skew: skewness of those returns (``None`` if undefined).
        kurtosis: Pearson kurtosis of those returns (``None`` if undefined).
        reason: why ``dsr`` is undefined, else ``None``.
    """

    dsr: float | None
    observed_sharpe: float | None
    sr0: float
    n_trials: int
    n_bars: int
    skew: float | None
    kurtosis: float | None
    reason: str | None = None


def deflated_sharpe_ratio(
    returns_of_best: Sequence[float] | np.ndarray,
    *,
    n_trials: int,
    sharpe_variance_across_trials: float,
) -> DSRResult:
    """Deflate the best trial's Sharpe for the number of trials tried (Bailey & López de Prado 2014).

    ``DSR = PSR(SR0)`` with ``SR0 = expected_max_sharpe(n_trials, V)``, measured on the selected
    trial's per-bar returns: its per-bar Sharpe, skewness ``m3 / m2^1.5`` and Pearson kurtosis
    ``m4 / m2^2`` (population central moments).

    Args:
        returns_of_best: per-bar returns of the selected trial.
        n_trials: how many trials the selection was made from (all of them, not only the good).
        sharpe_variance_across_trials: variance of the trials' **per-bar** Sharpe ratios.
    """
    r = as_returns(returns_of_best, "returns_of_best")
    sr0 = expected_max_sharpe(n_trials, sharpe_variance_across_trials)
    sr = per_bar_sharpe(r)
    if sr is None:
        reason = f"the Sharpe of {r.size} bars is undefined (fewer than 2 bars or constant returns)"
        return DSRResult(None, None, sr0, n_trials, int(r.size), None, None, reason)
    centred = r - r.mean()
    m2 = float(np.mean(centred**2))
    skew = float(np.mean(centred**3)) / m2**1.5
    kurtosis = float(np.mean(centred**4)) / m2**2
    return deflated_sharpe_ratio_from_stats(
        sr, n_bars=int(r.size), skew=skew, kurtosis=kurtosis,
        n_trials=n_trials, sharpe_variance_across_trials=sharpe_variance_across_trials,
    )


def deflated_sharpe_ratio_from_stats(
    observed_sharpe: float,
    *,
    n_bars: int,
    skew: float,
    kurtosis: float,
    n_trials: int,
    sharpe_variance_across_trials: float,
) -> DSRResult:
    """Compute the DSR from summary statistics (per-bar Sharpe, Pearson kurtosis); see ``deflated_sharpe_ratio``."""
    sr0 = expected_max_sharpe(n_trials, sharpe_variance_across_trials)
    dsr = probabilistic_sharpe_ratio(observed_sharpe, sr0, n_bars, skew, kurtosis)
    reason = None
    if dsr is None:
        reason = f"PSR undefined for n_bars={n_bars}, skew={skew}, kurtosis={kurtosis}"
    return DSRResult(dsr, observed_sharpe, sr0, n_trials, n_bars, skew, kurtosis, reason)
