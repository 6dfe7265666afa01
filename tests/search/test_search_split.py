"""The time split: search | arena holdout | replay, as UTC times shared by every interval."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from cappuccino_core.data.intervals import Interval
from cappuccino_core.features.market import panel_from_store
from cappuccino_core.search.market import plan_store_split
from cappuccino_core.search.split import HistorySplit, holdout_panel, plan_split, rows_between, search_panel
from tests.search.conftest import SYMBOLS


def test_the_holdout_is_the_most_recent_weeks_and_boundaries_fall_on_whole_days() -> None:
    split = plan_split(datetime(2024, 1, 1, 5, tzinfo=UTC), datetime(2024, 6, 1, 13, tzinfo=UTC), holdout_weeks=4, replay_weeks=1)
    assert split.search_start == datetime(2024, 1, 2, tzinfo=UTC)
    assert split.replay_end == datetime(2024, 6, 1, tzinfo=UTC)
    assert split.holdout_end == datetime(2024, 5, 25, tzinfo=UTC)
    assert split.search_end == datetime(2024, 4, 27, tzinfo=UTC)
    assert HistorySplit.from_dict(split.to_dict()) == split


def test_too_short_a_history_is_refused_with_the_numbers() -> None:
    with pytest.raises(ValueError, match="too short"):
        plan_split(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC), holdout_weeks=4)


@pytest.mark.parametrize("interval", [Interval.H1, Interval.H4, Interval.D1])
def test_no_search_bar_reaches_into_the_holdout_at_any_interval(small_store, interval) -> None:
    split = plan_store_split(small_store, SYMBOLS, Interval.H1, holdout_weeks=2)
    panel = panel_from_store(small_store, SYMBOLS, interval=interval, base_interval=Interval.H1)
    search = search_panel(panel, split)
    held = holdout_panel(panel, split, lookback=5)
    bar_ns = interval.seconds * 10**9
    search_end_ns = int(split.search_end.timestamp()) * 10**9
    assert search.timestamps[-1] + bar_ns <= search_end_ns
    # The holdout's decision rows start at the boundary; only lookback - 1 history rows precede it.
    assert int(np.sum(held.timestamps < search_end_ns)) == 4
    assert held.timestamps[4] >= search_end_ns


def test_a_period_without_bars_is_an_error_naming_it(small_store) -> None:
    panel = panel_from_store(small_store, SYMBOLS, interval=Interval.H1, base_interval=Interval.H1)
    with pytest.raises(ValueError, match="no bars in"):
        rows_between(panel, datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 2, 1, tzinfo=UTC))
