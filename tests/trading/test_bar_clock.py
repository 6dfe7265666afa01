"""Bar clocks: the latest closed bar in real time, and a replay of stored bars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cappuccino_core.clock import FixedClock
from cappuccino_core.data.intervals import Interval
from cappuccino_core.trading.clock import ReplayBarClock, WallBarClock, latest_closed_bar

T = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_the_latest_closed_bar_is_the_one_whose_close_has_passed() -> None:
    assert latest_closed_bar(T, Interval.H1) == T - timedelta(hours=1)  # 09:00-10:00 closed at 10:00 exactly
    assert latest_closed_bar(T - timedelta(seconds=1), Interval.H1) == T - timedelta(hours=2)
    assert latest_closed_bar(T + timedelta(minutes=59), Interval.H1) == T - timedelta(hours=1)
    assert latest_closed_bar(T + timedelta(minutes=7), Interval.M15) == T - timedelta(minutes=15)
    assert latest_closed_bar(T, Interval.D1) == datetime(2024, 4, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        latest_closed_bar(datetime(2024, 5, 1, 10), Interval.H1)


def test_the_wall_clock_gives_each_closed_bar_once_and_nothing_before_the_next_closes() -> None:
    clock = FixedClock(T + timedelta(minutes=5))
    bars = WallBarClock(Interval.H1, clock)
    assert bars.next_bar() == T - timedelta(hours=1)
    assert bars.next_bar() is None
    clock.set(T + timedelta(minutes=59, seconds=59))
    assert bars.next_bar() is None
    clock.set(T + timedelta(hours=3, minutes=1))  # a process asleep for hours acts on the present bar only
    assert bars.next_bar() == T + timedelta(hours=2)
    assert bars.latest() == T + timedelta(hours=2)


def test_the_replay_clock_walks_the_given_bars_in_order_then_stops() -> None:
    times = [T + timedelta(hours=h) for h in (0, 1, 2, 5)]
    replay = ReplayBarClock(times, Interval.H1)
    assert replay.next_bar() == times[0] and replay.remaining == 3
    assert list(replay) == times[1:]
    assert replay.next_bar() is None
    ns = [int(t.timestamp()) * 1_000_000_000 for t in times]
    assert list(ReplayBarClock.from_timestamps_ns(ns, Interval.H1)) == times


def test_the_replay_clock_refuses_unordered_or_off_grid_times() -> None:
    with pytest.raises(ValueError, match="must increase"):
        ReplayBarClock([T, T], Interval.H1)
    with pytest.raises(ValueError, match="not on the 1h grid"):
        ReplayBarClock([T + timedelta(minutes=30)], Interval.H1)
