"""Drift against the backtest: do live (or paper) results match what the backtest of the same bars predicts?

Given the realised per-bar returns and the backtest's returns of the same policy on the same
bars:

* ``tracking_error`` — annualised volatility of the per-bar difference
  (``metrics.annualised_volatility(metrics.excess_returns(live, backtest))``): how far the two
  paths wander apart, whatever the sign. Defaults: warning 0.25, critical 0.5, emergency 1.0.
* ``shortfall`` — how much less the account made than the backtest over the period,
  ``metrics.alpha(backtest, live)`` = total return of the backtest minus the realised total
  return (fees, slippage and latency the backtest did not see; negative when live did better).
  Defaults: warning 1 %, critical 3 %, emergency 5 %.

A series too short for a figure (tracking error needs 2 bars) is ``ok`` with the reason given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from cappuccino_core.clock import ensure_utc
from cappuccino_core.data.intervals import Interval
from cappuccino_core.evaluation.metrics import alpha, annualised_volatility, excess_returns
from cappuccino_core.lifecycle.thresholds import Comparison
from cappuccino_core.lifecycle.verdict import Check, Level, MonitorVerdict, grade, verdict


@dataclass(frozen=True)
class DriftConfig:
    """Levels of the tracking error (annualised) and the shortfall (a fraction of equity)."""

    tracking_error_warning: float | None = 0.25
    tracking_error_critical: float | None = 0.5
    tracking_error_emergency: float | None = 1.0
    shortfall_warning: float | None = 0.01
    shortfall_critical: float | None = 0.03
    shortfall_emergency: float | None = 0.05

    def __post_init__(self) -> None:
        for prefix in ("tracking_error", "shortfall"):
            levels = [getattr(self, f"{prefix}_{name}") for name in ("warning", "critical", "emergency")]
            for value in levels:
                if value is not None and not (math.isfinite(value) and value > 0):
                    raise ValueError(f"{prefix} thresholds must be positive numbers or None, got {value!r}")
            present = [v for v in levels if v is not None]
            if present != sorted(present):
                raise ValueError(f"{prefix} thresholds must increase from warning to emergency, got {levels}")


def compare_with_backtest(
    realised_returns: Sequence[float] | np.ndarray,
    backtest_returns: Sequence[float] | np.ndarray,
    interval: Interval,
    *,
    as_of: datetime,
    config: DriftConfig | None = None,
) -> MonitorVerdict:
    """Compare realised returns with the backtest's on the same bars.

    Raises:
        ValueError: the series cover different numbers of bars, or hold a NaN/inf or a return below -1.
    """
    config = config or DriftConfig()
    difference = excess_returns(realised_returns, backtest_returns)
    tracking = annualised_volatility(difference, interval)
    level, limit = grade(tracking, Comparison.AT_LEAST, [
        (Level.EMERGENCY, config.tracking_error_emergency), (Level.CRITICAL, config.tracking_error_critical),
        (Level.WARNING, config.tracking_error_warning)])
    detail = (f"tracking error undefined on {difference.size} bar(s)" if tracking is None
              else f"annualised tracking error {tracking:.4g} over {difference.size} bars")
    tracking_check = Check("tracking_error", tracking, limit, level,
                           detail + ("" if limit is None else f" (threshold {limit:g})"))
    shortfall = alpha(backtest_returns, realised_returns) if difference.size else None
    level, limit = grade(shortfall, Comparison.AT_LEAST, [
        (Level.EMERGENCY, config.shortfall_emergency), (Level.CRITICAL, config.shortfall_critical),
        (Level.WARNING, config.shortfall_warning)])
    detail = ("no bar to compare" if shortfall is None
              else f"backtest total return minus realised: {shortfall:+.4%}")
    shortfall_check = Check("shortfall", shortfall, limit, level,
                            detail + ("" if limit is None else f" (threshold {limit:.2%})"))
    return verdict((tracking_check, shortfall_check), ensure_utc(as_of))
