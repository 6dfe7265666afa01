"""Bar providers hand a trader only closed bars, with the features training computed from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.store import BarStore
from cappuccino_core.data.synthetic import SyntheticMarketConfig, generate_bars
from cappuccino_core.features.panel_builder import build_panel
from cappuccino_core.trading.bars_provider import MissingBarsError, PanelBarProvider, StoreBarProvider

SYMBOLS = ("BTC/USD", "ETH/USD")
ORIGIN = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def stored(tmp_path):
    bars = generate_bars(SyntheticMarketConfig(seed=5, symbols=SYMBOLS, origin=ORIGIN), ORIGIN, ORIGIN + timedelta(days=6))
    store = BarStore(tmp_path / "store")
    for symbol, table in bars.items():
        store.write(symbol, Interval.H1, table, source="synthetic")
    return store, build_panel(bars, interval=Interval.H1)


def test_the_store_provider_rebuilds_the_training_features_up_to_the_bar_and_no_further(stored) -> None:
    store, full = stored
    provider = StoreBarProvider(store, SYMBOLS, Interval.H1)
    at = ORIGIN + timedelta(days=4, hours=7)
    panel = provider.panel_until(at)
    rows = int(np.searchsorted(full.timestamps, panel.timestamps[-1])) + 1
    assert datetime.fromtimestamp(int(panel.timestamps[-1]) // 10**9, tz=UTC) == at
    assert np.array_equal(panel.features, full.features[:rows])  # same first bar, same features, bit for bit
    assert np.array_equal(panel.close, full.close[:rows])
    assert provider.panel_until(at) is panel  # one build per bar for every trader sharing the provider

    short = StoreBarProvider(store, SYMBOLS, Interval.H1, history_bars=60).panel_until(at)
    assert short.timestamps[-1] == panel.timestamps[-1] and short.num_bars < panel.num_bars


def test_providers_refuse_to_invent_bars(stored) -> None:
    store, full = stored
    with pytest.raises(MissingBarsError, match="no 1h bars"):
        StoreBarProvider(store, SYMBOLS, Interval.H1).panel_until(ORIGIN - timedelta(days=1))
    with pytest.raises(MissingBarsError, match="LTC/USD"):
        StoreBarProvider(store, ("BTC/USD", "LTC/USD"), Interval.H1).panel_until(ORIGIN + timedelta(days=3))
    replay = PanelBarProvider(full)
    first = datetime.fromtimestamp(int(full.timestamps[0]) // 10**9, tz=UTC)
    assert replay.panel_until(first + timedelta(minutes=30)).num_bars == 1
    with pytest.raises(MissingBarsError, match="no bar at or before"):
        replay.panel_until(first - timedelta(hours=1))
