"""The track record: returns from equity marks, windows by time, days by UTC date."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from cappuccino_core.data.intervals import Interval
from cappuccino_core.lifecycle.track_record import TrackRecord

T0 = datetime(2024, 6, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_returns_and_benchmark_returns_come_from_consecutive_marks() -> None:
    times = [T0, T0 + HOUR, T0 + 3 * HOUR]  # the bar at T0 + 2 h was skipped: one return spans it
    record = TrackRecord.from_equity(times, [100.0, 110.0, 99.0], [1.0, 1.05, 1.05], Interval.H1,
                                     error_times=[T0 + 2 * HOUR])
    np.testing.assert_allclose(record.returns, [0.10, -0.10])
    np.testing.assert_allclose(record.benchmark_returns, [0.05, 0.0])
    assert (record.start, record.times, record.span) == (T0, tuple(times[1:]), 3 * HOUR)
    assert record.error_times == (T0 + 2 * HOUR,)


def test_bad_marks_are_refused_naming_the_problem() -> None:
    with pytest.raises(ValueError, match=r"equity\[1\] is 0.0"):
        TrackRecord.from_equity([T0, T0 + HOUR], [100.0, 0.0], [1.0, 1.0], Interval.H1)
    with pytest.raises(ValueError, match=r"benchmark_index\[0\] is nan"):
        TrackRecord.from_equity([T0, T0 + HOUR], [100.0, 101.0], [float("nan"), 1.0], Interval.H1)
    with pytest.raises(ValueError, match="strictly increasing"):
        TrackRecord.from_equity([T0, T0], [100.0, 101.0], [1.0, 1.0], Interval.H1)
    with pytest.raises(ValueError, match="naive datetime"):
        TrackRecord.from_equity([datetime(2024, 1, 1), datetime(2024, 1, 2)], [1.0, 1.0], [1.0, 1.0], Interval.H1)
    with pytest.raises(ValueError, match="one return and one benchmark return per time"):
        TrackRecord(T0, (T0 + HOUR,), np.zeros(2), np.zeros(2), Interval.H1)


def test_the_last_window_keeps_a_straddling_return_whole_and_the_errors_after_the_cut() -> None:
    times = [T0, T0 + HOUR, T0 + 5 * HOUR, T0 + 6 * HOUR]
    record = TrackRecord.from_equity(times, [1.0, 1.1, 1.2, 1.3], [1.0] * 4, Interval.H1,
                                     error_times=[T0 + 2 * HOUR, T0 + 4 * HOUR + 30 * timedelta(minutes=1)])
    window = record.last(2 * HOUR)  # cut at T0 + 4 h falls inside the return from T0 + 1 h to T0 + 5 h
    assert window.start == T0 + HOUR and window.times == (T0 + 5 * HOUR, T0 + 6 * HOUR)
    assert window.error_times == (T0 + 4 * HOUR + 30 * timedelta(minutes=1),)


def test_days_compound_the_returns_marked_on_them_and_the_last_one_is_complete_only_at_midnight() -> None:
    times = [T0 - HOUR] + [T0 + i * HOUR for i in range(30)]  # day 1 complete, day 2 has 6 bars
    equity = np.concatenate([[1.0], np.cumprod(np.full(30, 1.01))])
    record = TrackRecord.from_equity(times, equity, np.ones(31), Interval.H1)
    (day1, r1), (day2, r2) = record.daily_returns()
    assert (day1, day2) == (date(2024, 6, 1), date(2024, 6, 2))
    assert r1 == pytest.approx(1.01 ** 24 - 1) and r2 == pytest.approx(1.01 ** 6 - 1)
    assert record.day_is_complete(day1) and not record.day_is_complete(day2)
