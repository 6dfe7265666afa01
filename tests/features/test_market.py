"""Panels come from the store, at the base interval or resampled from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cappuccino_core.data.intervals import Interval, SEARCH_INTERVALS
from cappuccino_core.data.store import BarStore
from cappuccino_core.data.synthetic import SyntheticMarketConfig, generate_bars
from cappuccino_core.features.market import panel_from_store, supported_intervals


@pytest.fixture
def store(tmp_path) -> BarStore:
    market = SyntheticMarketConfig(seed=1, symbols=("BTC/USD", "ETH/USD"))
    store = BarStore(tmp_path / "store")
    for symbol, bars in generate_bars(market, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)).items():
        store.write(symbol, Interval.H1, bars, source="synthetic")
    return store


def test_a_panel_at_the_base_interval_has_one_row_per_stored_bar_after_warm_up(store) -> None:
    panel = panel_from_store(store, ("BTC/USD", "ETH/USD"), interval=Interval.H1, base_interval=Interval.H1)
    assert panel.symbols == ("BTC/USD", "ETH/USD")
    assert panel.num_bars == 60 * 24 - 33  # 60 days of hourly bars minus the indicator warm-up
    assert panel.close[-1, 0] == store.read("BTC/USD", Interval.H1)["close"][-1]


def test_a_longer_interval_is_resampled_from_the_stored_bars(store) -> None:
    panel = panel_from_store(store, ("BTC/USD", "ETH/USD"), interval=Interval.H4, base_interval=Interval.H1)
    assert panel.interval == Interval.H4
    assert panel.num_bars == 60 * 6 - 33
    hourly = store.read("BTC/USD", Interval.H1)
    assert panel.close[-1, 0] == hourly["close"][-1]  # the last 4h bucket closes with the last hour
    assert int(panel.timestamps[1] - panel.timestamps[0]) == 4 * 3600 * 10**9


def test_intervals_shorter_than_the_stored_one_are_not_supported(store) -> None:
    assert supported_intervals(Interval.H1, SEARCH_INTERVALS) == (Interval.H1, Interval.H4, Interval.D1)
    with pytest.raises(ValueError, match="cannot be built"):
        panel_from_store(store, ("BTC/USD",), interval=Interval.M15, base_interval=Interval.H1)


def test_a_window_of_the_store_can_be_loaded(store) -> None:
    end = datetime(2024, 2, 1, tzinfo=UTC)
    panel = panel_from_store(store, ("BTC/USD",), interval=Interval.H1, base_interval=Interval.H1, end=end)
    last = datetime.fromtimestamp(panel.timestamps[-1] / 1e9, UTC)
    assert last == end - timedelta(hours=1)
