"""Synthetic price levels: plausible per asset, a constant factor only; unknown assets are refused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cappuccino_core.data.synthetic import SyntheticMarketConfig, simulate_market


def test_the_bar_at_the_level_anchor_closes_at_each_assets_level() -> None:
    config = SyntheticMarketConfig(seed=3, plant_strength=2.0)
    anchor = config.anchor_bar()
    path = simulate_market(config, anchor + 10)
    closes = dict(zip(config.symbols, path.close[anchor]))
    assert closes["BTC/USD"] == pytest.approx(60_000.0) and closes["ETH/USD"] == pytest.approx(3_000.0)
    assert closes["UNI/USD"] == pytest.approx(8.0)


def test_the_level_anchor_scales_prices_and_leaves_returns_and_dollar_volume_unchanged() -> None:
    anchored = SyntheticMarketConfig(seed=4, plant_strength=1.0)
    plain = replace(anchored, level_anchor=None)
    a, p = simulate_market(anchored, 2000), simulate_market(plain, 2000)
    factor = a.close / p.close
    assert np.allclose(factor, factor[0])  # one constant per asset
    assert not np.allclose(factor[0], 1.0)
    for field in ("open", "high", "low", "vwap"):
        assert np.allclose(getattr(a, field) / getattr(p, field), factor[0])
    assert np.allclose(a.volume * a.close, p.volume * p.close)
    assert np.array_equal(a.trade_count, p.trade_count) and np.array_equal(a.trend_state, p.trend_state)


def test_a_short_simulation_is_the_start_of_a_long_one_with_the_same_levels() -> None:
    config = SyntheticMarketConfig(seed=5)
    short, long = simulate_market(config, 100), simulate_market(config, config.anchor_bar() + 500)
    assert np.array_equal(short.close, long.close[:100])


@pytest.mark.parametrize("symbol", ["FOO/USD", "DOGE/USD"])
def test_an_asset_the_synthetic_market_does_not_model_is_refused_not_invented(symbol) -> None:
    with pytest.raises(ValueError, match=f"has no {symbol.split('/')[0]} "):
        SyntheticMarketConfig(symbols=("BTC/USD", symbol))
