"""Drift against the backtest: tracking error and shortfall raise warning, critical and emergency levels."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from cappuccino_core.data.intervals import Interval
from cappuccino_core.evaluation.metrics import total_return
from cappuccino_core.lifecycle.drift import DriftConfig, compare_with_backtest
from cappuccino_core.lifecycle.verdict import Level

AS_OF = datetime(2024, 6, 3, tzinfo=UTC)
N = 48
BACKTEST = np.where(np.arange(N) % 2 == 0, 0.003, -0.002)


def compare(realised: np.ndarray, **config: float | None):
    return compare_with_backtest(realised, BACKTEST, Interval.H1, as_of=AS_OF, config=DriftConfig(**config))


def with_tracking_error(target: float) -> np.ndarray:
    """The backtest plus a +-noise whose annualised volatility is ``target``; no net shortfall to speak of."""
    noise = target / math.sqrt(N / (N - 1)) / math.sqrt(Interval.H1.bars_per_year)
    return BACKTEST + np.where(np.arange(N) % 2 == 0, noise, -noise)


def with_shortfall(target: float) -> np.ndarray:
    """The backtest minus a constant per-bar cost (zero tracking error) losing about ``target`` in total."""
    realised = BACKTEST - target / N
    return realised


def test_results_that_match_the_backtest_are_ok() -> None:
    verdict = compare(BACKTEST.copy())
    assert verdict.level is Level.OK
    assert verdict.check("tracking_error").value == 0.0
    assert verdict.check("shortfall").value == 0.0


def test_tracking_error_levels_follow_their_thresholds() -> None:
    assert compare(with_tracking_error(0.1)).check("tracking_error").level is Level.OK
    assert compare(with_tracking_error(0.3)).check("tracking_error").level is Level.WARNING
    at_critical = compare(with_tracking_error(0.5))
    assert at_critical.check("tracking_error").value == pytest.approx(0.5, rel=1e-9)
    assert at_critical.check("tracking_error").level is Level.CRITICAL and at_critical.demote
    emergency = compare(with_tracking_error(1.2))
    assert emergency.level is Level.EMERGENCY and emergency.stop_trading


def test_shortfall_is_the_backtests_total_return_minus_the_realised_one() -> None:
    realised = with_shortfall(0.02)
    verdict = compare(realised)
    expected = total_return(BACKTEST) - total_return(realised)
    assert verdict.check("shortfall").value == pytest.approx(expected, rel=1e-12)
    assert verdict.check("tracking_error").level is Level.OK
    assert verdict.check("shortfall").level is Level.WARNING
    assert compare(with_shortfall(0.035)).check("shortfall").level is Level.CRITICAL
    assert compare(with_shortfall(0.06)).level is Level.EMERGENCY


def test_doing_better_than_the_backtest_is_not_a_shortfall() -> None:
    verdict = compare(BACKTEST + 0.001)
    assert verdict.check("shortfall").value < 0
    assert verdict.check("shortfall").level is Level.OK


def test_series_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same bars"):
        compare(BACKTEST[:-1])


def test_thresholds_must_increase() -> None:
    with pytest.raises(ValueError, match="increase"):
        DriftConfig(shortfall_warning=0.05, shortfall_critical=0.03)
