"""Live limits: pure checks of a live model's track record, run on every bar.

Each check gives a level (``verdict.Level``); any ``critical`` demotes the model to paper,
``emergency`` also stops trading. Checks and defaults (``None`` switches a limit off):

* ``drawdown`` — maximum drawdown since going live (``metrics.max_drawdown``): warning at 5 %,
  critical at 10 % (a drawdown that reached the limit and recovered still broke it).
* ``rolling_sharpe`` — annualised Sharpe ratio of the last 7 days (``metrics.sharpe``):
  warning below 0.5, critical below 0. Only judged once the record covers the whole window;
  undefined (a flat week) is ok.
* ``daily_loss`` — the worst UTC day's loss (the current day included): warning at 3 %,
  critical at 5 %.
* ``losing_days`` — completed losing days in a row up to now: warning one short of the limit,
  critical at 3.
* ``errors`` — errors or crashes in the last 24 h up to ``as_of``: warning at 1, critical at 3.
* ``total_loss`` — loss since going live: emergency at 15 % (the catastrophic loss).

Limits trigger at the threshold (``>=`` a loss limit, ``<`` a Sharpe floor), compared as
``thresholds.holds`` says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from cappuccino_core.clock import ensure_utc
from cappuccino_core.evaluation.metrics import max_drawdown, sharpe, total_return
from cappuccino_core.lifecycle.thresholds import Comparison
from cappuccino_core.lifecycle.track_record import TrackRecord
from cappuccino_core.lifecycle.verdict import Check, Level, MonitorVerdict, grade, verdict


@dataclass(frozen=True)
class MonitorConfig:
    """Live limits (fractions are positive: ``0.10`` is a 10 % loss); ``None`` switches one off."""

    max_drawdown: float | None = 0.10  # critical at a drawdown since going live of at least this
    drawdown_warning: float | None = 0.05  # warning at a drawdown of at least this
    rolling_sharpe_days: float = 7.0  # window of the rolling Sharpe ratio, in days
    min_rolling_sharpe: float | None = 0.0  # critical when the rolling Sharpe is below this
    rolling_sharpe_warning: float | None = 0.5  # warning when the rolling Sharpe is below this
    daily_loss_limit: float | None = 0.05  # critical when one UTC day loses at least this
    daily_loss_warning: float | None = 0.03  # warning when one UTC day loses at least this
    max_losing_days: int | None = 3  # critical at this many completed losing days in a row (warning one short)
    max_errors: int | None = 3  # critical at this many errors within error_window_hours
    error_window_hours: float = 24.0  # how far back errors are counted from as_of
    catastrophic_loss: float | None = 0.15  # emergency when the loss since going live is at least this

    def __post_init__(self) -> None:
        for name in ("max_drawdown", "drawdown_warning", "daily_loss_limit", "daily_loss_warning",
                     "catastrophic_loss"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1] or None, got {value!r}")
        for name in ("min_rolling_sharpe", "rolling_sharpe_warning"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be finite or None, got {value!r}")
        for name in ("max_losing_days", "max_errors"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an int >= 1 or None, got {value!r}")
        for name in ("rolling_sharpe_days", "error_window_hours"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")


def evaluate_limits(record: TrackRecord, *, as_of: datetime, config: MonitorConfig | None = None) -> MonitorVerdict:
    """Check a live model's record (since it went live) against the live limits.

    Args:
        record: returns since the model went live (benchmark unused here), errors included.
        as_of: now (errors are counted in the window before it).
        config: the limits (default as in the module docstring).
    """
    config = config or MonitorConfig()
    as_of = ensure_utc(as_of)
    checks = (
        _drawdown(record, config), _rolling_sharpe(record, config), _daily_loss(record, config),
        _losing_days(record, config), _errors(record, config, as_of), _total_loss(record, config),
    )
    return verdict(checks, as_of)


def _drawdown(record: TrackRecord, config: MonitorConfig) -> Check:
    value = max_drawdown(record.returns)
    level, limit = grade(value, Comparison.AT_LEAST,
                         [(Level.CRITICAL, config.max_drawdown), (Level.WARNING, config.drawdown_warning)])
    detail = "no return yet" if value is None else f"max drawdown since live {value:.4%}"
    return Check("drawdown", value, limit, level, detail + _limit_text(limit))


def _rolling_sharpe(record: TrackRecord, config: MonitorConfig) -> Check:
    window = timedelta(days=config.rolling_sharpe_days)
    if record.span < window:
        return Check("rolling_sharpe", None, None, Level.OK,
                     f"record covers {record.span}, less than the {config.rolling_sharpe_days:g}-day window")
    value = sharpe(record.last(window).returns, record.interval)
    level, limit = grade(value, Comparison.BELOW,
                         [(Level.CRITICAL, config.min_rolling_sharpe), (Level.WARNING, config.rolling_sharpe_warning)])
    detail = ("Sharpe undefined (flat window)" if value is None
              else f"{config.rolling_sharpe_days:g}-day Sharpe {value:.4g}")
    return Check("rolling_sharpe", value, limit, level, detail + ("" if limit is None else f" (below {limit:g})"))


def _daily_loss(record: TrackRecord, config: MonitorConfig) -> Check:
    days = record.daily_returns()
    if not days:
        return Check("daily_loss", None, None, Level.OK, "no day yet")
    worst_day, worst = min(days, key=lambda d: d[1])
    value = -worst
    level, limit = grade(value, Comparison.AT_LEAST,
                         [(Level.CRITICAL, config.daily_loss_limit), (Level.WARNING, config.daily_loss_warning)])
    return Check("daily_loss", value, limit, level, f"worst day {worst_day.isoformat()} returned {worst:.4%}"
                 + _limit_text(limit))


def _losing_days(record: TrackRecord, config: MonitorConfig) -> Check:
    streak = 0
    for day, r in reversed(record.daily_returns()):
        if not record.day_is_complete(day):
            continue
        if r >= 0.0:
            break
        streak += 1
    n = config.max_losing_days
    thresholds = [] if n is None else [(Level.CRITICAL, float(n)), (Level.WARNING, float(n - 1) if n > 1 else None)]
    level, limit = grade(float(streak), Comparison.AT_LEAST, thresholds)
    detail = f"{streak} completed losing day(s) in a row" + ("" if n is None else f" (limit {n})")
    return Check("losing_days", float(streak), limit, level, detail)


def _errors(record: TrackRecord, config: MonitorConfig, as_of: datetime) -> Check:
    since = as_of - timedelta(hours=config.error_window_hours)
    count = sum(1 for t in record.error_times if since < t <= as_of)
    n = config.max_errors
    thresholds = [] if n is None else [(Level.CRITICAL, float(n)), (Level.WARNING, 1.0)]
    level, limit = grade(float(count), Comparison.AT_LEAST, thresholds)
    detail = f"{count} error(s) in the last {config.error_window_hours:g} h" + ("" if n is None else f" (limit {n})")
    return Check("errors", float(count), limit, level, detail)


def _total_loss(record: TrackRecord, config: MonitorConfig) -> Check:
    total = total_return(record.returns)
    value = None if total is None else -total
    level, limit = grade(value, Comparison.AT_LEAST, [(Level.EMERGENCY, config.catastrophic_loss)])
    detail = "no return yet" if total is None else f"return since live {total:.4%}"
    return Check("total_loss", value, limit, level, detail + _limit_text(limit))


def _limit_text(limit: float | None) -> str:
    return "" if limit is None else f" (threshold {limit:.2%})"
