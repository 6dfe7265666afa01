"""Live limits: each one warns, breaks (critical) or stops trading (emergency) on a constructed record."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cappuccino_core.data.intervals import Interval
from cappuccino_core.lifecycle.limits import MonitorConfig, evaluate_limits
from cappuccino_core.lifecycle.track_record import TrackRecord
from cappuccino_core.lifecycle.verdict import Level, MonitorVerdict

T0 = datetime(2024, 6, 1, tzinfo=UTC)  # a midnight: returns[i] is marked at the bar opening T0 + i hours
HOUR = timedelta(hours=1)


def steady(n: int) -> np.ndarray:
    """+0.2 %, -0.1 %, ...: every day profitable, drawdown 0.1 %."""
    return np.where(np.arange(n) % 2 == 0, 0.002, -0.001)


def per_bar(day_return: float) -> float:
    """The hourly return that compounds to ``day_return`` over 24 bars."""
    return (1.0 + day_return) ** (1 / 24) - 1.0


def record(returns: np.ndarray, errors: tuple[datetime, ...] = ()) -> TrackRecord:
    """Marks at the bars T0, T0 + 1 h, ... (from the bar before T0): day d holds returns[24 d: 24 (d + 1)]."""
    times = tuple(T0 + i * HOUR for i in range(len(returns)))
    return TrackRecord(T0 - HOUR, times, returns, np.zeros(len(returns)), Interval.H1, errors)


def check(returns: np.ndarray, errors: tuple[datetime, ...] = (), **limits: object) -> MonitorVerdict:
    track = record(returns, errors)
    return evaluate_limits(track, as_of=track.end, config=MonitorConfig(**limits))


def levels(verdict: MonitorVerdict) -> dict[str, Level]:
    return {c.name: c.level for c in verdict.checks if c.level is not Level.OK}


def test_a_calm_profitable_record_is_ok() -> None:
    verdict = check(steady(72))
    assert verdict.level is Level.OK and not verdict.demote and verdict.breached == ()
    assert [c.name for c in verdict.checks] == ["drawdown", "rolling_sharpe", "daily_loss", "losing_days",
                                                "errors", "total_loss"]


def test_a_drawdown_at_the_limit_breaks_it_and_half_of_it_warns() -> None:
    def fall(depth: float) -> np.ndarray:
        returns = steady(48)
        returns[5], returns[6] = -depth, 1 / (1 - depth) - 1  # bar 4 is a peak; recovered the next hour
        return returns

    breached = check(fall(0.10))
    assert levels(breached) == {"drawdown": Level.CRITICAL}
    assert breached.demote and breached.breached == ("drawdown",) and not breached.stop_trading
    assert levels(check(fall(0.0999))) == {"drawdown": Level.WARNING}
    assert levels(check(fall(0.049))) == {}


def test_a_day_losing_the_daily_limit_breaks_it() -> None:
    day_two_loses_5 = np.concatenate([steady(24), np.full(24, per_bar(-0.05)), steady(6)])
    verdict = check(day_two_loses_5)
    assert verdict.check("daily_loss").value == pytest.approx(0.05, rel=1e-12)
    assert levels(verdict) == {"daily_loss": Level.CRITICAL, "drawdown": Level.WARNING}
    assert verdict.breached == ("daily_loss",)
    day_two_loses_4 = np.concatenate([steady(24), np.full(24, per_bar(-0.04)), steady(6)])
    assert levels(check(day_two_loses_4)) == {"daily_loss": Level.WARNING}


def test_the_current_unfinished_day_counts_for_the_daily_loss() -> None:
    verdict = check(np.concatenate([steady(24), np.full(5, per_bar(-0.055) * 24 / 5)]))
    assert verdict.check("daily_loss").level is Level.CRITICAL


def test_three_completed_losing_days_in_a_row_break_the_limit() -> None:
    losing_day = np.full(24, per_bar(-0.01))
    three = np.concatenate([steady(24), losing_day, losing_day, losing_day])
    assert levels(check(three)) == {"losing_days": Level.CRITICAL}
    two_and_a_partial = np.concatenate([steady(24), losing_day, losing_day, losing_day[:12]])
    verdict = check(two_and_a_partial)
    assert levels(verdict) == {"losing_days": Level.WARNING}
    assert verdict.check("losing_days").value == 2.0
    recovered = np.concatenate([losing_day, losing_day, steady(24), losing_day])
    assert levels(check(recovered)) == {}


def with_sharpe(target: float, n: int, swing: float = 0.002) -> np.ndarray:
    """Alternating mean +- swing with the annualised Sharpe ratio ``target``."""
    mean = target * swing * math.sqrt(n / (n - 1)) / math.sqrt(Interval.H1.bars_per_year)
    return mean + np.where(np.arange(n) % 2 == 0, swing, -swing)


def test_the_rolling_sharpe_of_the_last_week_breaks_below_zero_and_warns_below_half() -> None:
    week = 7 * 24
    good_start = steady(24)
    # Losing weeks lose every day too: switch the losing-days limit off to watch the Sharpe alone.
    negative = check(np.concatenate([good_start, with_sharpe(-0.5, week)]), max_losing_days=None)
    assert levels(negative) == {"rolling_sharpe": Level.CRITICAL}
    assert negative.check("rolling_sharpe").value == pytest.approx(-0.5, rel=1e-6)
    assert levels(check(np.concatenate([good_start, with_sharpe(0.3, week)]), max_losing_days=None)) == {
        "rolling_sharpe": Level.WARNING}
    assert levels(check(np.concatenate([good_start, with_sharpe(0.8, week)]))) == {}


def test_the_rolling_sharpe_waits_for_a_full_window() -> None:
    verdict = check(with_sharpe(-3.0, 6 * 24), max_losing_days=None)
    assert verdict.check("rolling_sharpe").level is Level.OK
    assert "less than the 7-day window" in verdict.check("rolling_sharpe").detail


def test_repeated_errors_in_the_last_day_break_the_limit() -> None:
    returns = steady(48)
    end = T0 + 47 * HOUR
    three_recent = (end - 1 * HOUR, end - 2 * HOUR, end - 3 * HOUR)
    assert levels(check(returns, three_recent)) == {"errors": Level.CRITICAL}
    assert levels(check(returns, three_recent[:2])) == {"errors": Level.WARNING}
    one_too_old = (end - 1 * HOUR, end - 2 * HOUR, end - 25 * HOUR)
    assert levels(check(returns, one_too_old)) == {"errors": Level.WARNING}


def test_a_catastrophic_loss_is_an_emergency_that_stops_trading() -> None:
    crash = np.concatenate([steady(24), [-0.18], steady(6)])
    verdict = check(crash)
    assert verdict.level is Level.EMERGENCY and verdict.stop_trading and verdict.demote
    assert levels(verdict)["total_loss"] is Level.EMERGENCY
    assert set(verdict.breached) == {"total_loss", "drawdown", "daily_loss"}


def test_a_limit_set_to_none_is_off() -> None:
    crash = np.concatenate([steady(24), [-0.18], steady(6)])
    verdict = check(crash, max_drawdown=None, drawdown_warning=None, daily_loss_limit=None, daily_loss_warning=None,
                    catastrophic_loss=None)
    assert verdict.level is Level.OK


def test_the_verdict_is_json_ready_and_names_the_reasons() -> None:
    verdict = check(np.concatenate([steady(24), [-0.18], steady(6)]))
    as_dict = verdict.to_dict()
    assert as_dict["level"] == "emergency" and set(as_dict["breached"]) == set(verdict.breached)
    assert verdict.reasons()[0].startswith("emergency: return since live")


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_drawdown"):
        MonitorConfig(max_drawdown=0.0)
    with pytest.raises(ValueError, match="max_losing_days"):
        MonitorConfig(max_losing_days=0)
