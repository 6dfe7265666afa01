"""The synthetic market: deterministic, crypto-like, and exploitable exactly when a plant is set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from cappuccino_core.data.bars import BAR_SCHEMA
from cappuccino_core.data.errors import SourceError
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.resample import resample_bars
from cappuccino_core.data.source import BarSource
from cappuccino_core.data.synthetic import (
    DEFAULT_SYMBOLS,
    MARKET_REGIMES,
    MarketRegime,
    SyntheticBarSource,
    SyntheticMarketConfig,
    generate_bars,
    simulate_market,
)

TWO_YEARS_1H = 2 * 8760
FEE = 0.0025  # per side
TREND_LOOKBACK = 20  # what an agent sees in a 20-bar window of close log-ratio features
PLANT_SEEDS = (1, 2, 3, 4, 5)


def _closes(frames: dict[str, pl.DataFrame]) -> np.ndarray:
    return np.column_stack([f["close"].to_numpy() for f in frames.values()])


def test_same_seed_gives_identical_bars() -> None:
    config = SyntheticMarketConfig(seed=7)
    end = config.origin + timedelta(days=30)
    first = generate_bars(config, config.origin, end)
    second = generate_bars(SyntheticMarketConfig(seed=7), config.origin, end)
    assert list(first) == list(DEFAULT_SYMBOLS)
    for symbol in first:
        assert first[symbol].equals(second[symbol])


def test_different_seed_gives_different_bars() -> None:
    end = datetime(2022, 2, 1, tzinfo=UTC)
    a = generate_bars(SyntheticMarketConfig(seed=1), SyntheticMarketConfig().origin, end)
    b = generate_bars(SyntheticMarketConfig(seed=2), SyntheticMarketConfig().origin, end)
    assert not np.allclose(_closes(a), _closes(b))


def test_overlapping_fetches_agree_on_shared_timestamps() -> None:
    config = SyntheticMarketConfig(seed=3)
    origin = config.origin
    growing = SyntheticBarSource(config)  # short window first, then one that forces regeneration
    early = growing.fetch("ETH/USD", Interval.H1, origin + timedelta(hours=100), origin + timedelta(hours=300))
    late = growing.fetch("ETH/USD", Interval.H1, origin + timedelta(hours=200), origin + timedelta(hours=20_000))
    fresh = SyntheticBarSource(config).fetch(
        "ETH/USD", Interval.H1, origin + timedelta(hours=4000), origin + timedelta(hours=4200)
    )
    for window in (early, fresh):
        shared = window.join(late, on="timestamp", how="inner", suffix="_late")
        assert shared.height > 0
        for column in ("open", "high", "low", "close", "volume"):
            assert (shared[column] == shared[f"{column}_late"]).all()
    assert early.height == 200 and fresh.height == 200


def test_a_short_simulation_is_a_prefix_of_a_long_one() -> None:
    config = SyntheticMarketConfig(seed=11, plant_strength=1.0)
    short, long = simulate_market(config, 5000), simulate_market(config, 9000)
    for name in ("open", "high", "low", "close", "volume", "trend_state", "market_regime"):
        np.testing.assert_array_equal(getattr(short, name), getattr(long, name)[:5000])


def test_fetch_returns_complete_bars_in_the_half_open_window() -> None:
    source = SyntheticBarSource()
    assert isinstance(source, BarSource) and source.name == "synthetic"
    start = datetime(2022, 1, 3, 0, 30, tzinfo=UTC)
    end = datetime(2022, 1, 3, 10, 30, tzinfo=UTC)  # the 10:00 bar is not complete by then
    bars = source.fetch("btc-usd", Interval.H1, start, end)
    assert bars.schema == pl.Schema(BAR_SCHEMA)
    assert bars["timestamp"][0] == datetime(2022, 1, 3, 1, tzinfo=UTC)
    assert bars["timestamp"][-1] == datetime(2022, 1, 3, 9, tzinfo=UTC)
    assert bars.height == 9 and bars["timestamp"].is_sorted()


def test_window_before_origin_starts_at_origin() -> None:
    config = SyntheticMarketConfig()
    source = SyntheticBarSource(config)
    bars = source.fetch("LTC/USD", Interval.H1, config.origin - timedelta(days=3), config.origin + timedelta(hours=5))
    assert bars["timestamp"][0] == config.origin and bars.height == 5
    assert source.fetch("LTC/USD", Interval.H1, config.origin - timedelta(days=3), config.origin).height == 0


def test_fetch_at_a_multiple_of_the_base_interval_resamples() -> None:
    config = SyntheticMarketConfig(seed=5)
    source = SyntheticBarSource(config)
    start, end = config.origin + timedelta(hours=2), config.origin + timedelta(days=3, hours=1)
    four_hourly = source.fetch("UNI/USD", Interval.H4, start, end)
    hourly = source.fetch("UNI/USD", Interval.H1, config.origin, end)
    expected = resample_bars(hourly, source=Interval.H1, target=Interval.H4).filter(pl.col("timestamp") >= start)
    assert four_hourly.equals(expected)
    assert four_hourly["timestamp"][0] == config.origin + timedelta(hours=4)
    assert Interval.D1 in source.intervals("UNI/USD") and Interval.M15 not in source.intervals("UNI/USD")


def test_fetch_refuses_unknown_symbols_and_shorter_intervals() -> None:
    source = SyntheticBarSource()
    start, end = datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 1, 2, tzinfo=UTC)
    with pytest.raises(SourceError, match="DOGE/USD"):
        source.fetch("DOGE/USD", Interval.H1, start, end)
    with pytest.raises(SourceError, match="15m"):
        source.fetch("BTC/USD", Interval.M15, start, end)
    with pytest.raises(ValueError, match="UTC"):
        source.fetch("BTC/USD", Interval.H1, datetime(2022, 1, 1), end)


@pytest.mark.parametrize(
    "changes",
    [
        {"symbols": ("btc-usd",)},
        {"symbols": ("BTC/USD", "BTC/USD")},
        {"origin": datetime(2022, 1, 1, 0, 30, tzinfo=UTC)},
        {"origin": datetime(2022, 1, 1)},
        {"plant_strength": -0.1},
        {"garch_alpha": 0.2, "garch_beta": 0.85},
        {"student_dof": 2.0},
        {"annual_vols": (0.5,)},
    ],
)
def test_config_refuses_invalid_settings(changes: dict) -> None:
    with pytest.raises(ValueError, match="invalid SyntheticMarketConfig"):
        SyntheticMarketConfig(**changes)


@pytest.fixture(scope="module")
def two_years() -> dict[str, pl.DataFrame]:
    config = SyntheticMarketConfig(seed=0)
    return generate_bars(config, config.origin, config.origin + timedelta(hours=TWO_YEARS_1H))


def test_ohlc_bars_are_consistent(two_years: dict[str, pl.DataFrame]) -> None:
    for symbol, bars in two_years.items():
        o, h, l, c, v = (bars[x].to_numpy() for x in ("open", "high", "low", "close", "volume"))
        assert bars.height == TWO_YEARS_1H, symbol
        assert (h >= np.maximum(o, c)).all() and (l <= np.minimum(o, c)).all(), symbol
        assert (l > 0).all() and (v > 0).all(), symbol
        assert np.abs(np.log(o[1:] / c[:-1])).max() < 0.01, symbol  # open is near the previous close
        vwap = bars["vwap"].to_numpy()
        assert ((vwap >= l) & (vwap <= h)).all(), symbol
        assert (h > l).mean() > 0.99, symbol


def test_price_levels_are_crypto_like(two_years: dict[str, pl.DataFrame]) -> None:
    first = {s: b["open"][0] for s, b in two_years.items()}
    assert 10_000 <= first["BTC/USD"] <= 100_000
    assert all(level < first["BTC/USD"] / 5 for s, level in first.items() if s != "BTC/USD")


def test_returns_have_crypto_like_volatility_fat_tails_and_correlation(two_years: dict[str, pl.DataFrame]) -> None:
    returns = np.diff(np.log(_closes(two_years)), axis=0)
    annual_vol = returns.std(axis=0) * np.sqrt(Interval.H1.bars_per_year)
    assert ((annual_vol > 0.30) & (annual_vol < 1.50)).all(), annual_vol
    centred = returns - returns.mean(axis=0)
    excess_kurtosis = (centred**4).mean(axis=0) / centred.var(axis=0) ** 2 - 3.0
    assert (excess_kurtosis > 0.5).all(), excess_kurtosis
    corr = np.corrcoef(returns.T)
    mean_pairwise = corr[np.triu_indices_from(corr, k=1)].mean()
    assert mean_pairwise > 0.3, mean_pairwise


def test_volatility_clusters_and_volume_follows_absolute_returns(two_years: dict[str, pl.DataFrame]) -> None:
    returns = np.diff(np.log(_closes(two_years)), axis=0)
    volume = np.column_stack([b["volume"].to_numpy()[1:] for b in two_years.values()])
    for i in range(returns.shape[1]):
        absolute = np.abs(returns[:, i])
        assert np.corrcoef(absolute[:-1], absolute[1:])[0, 1] > 0.05  # GARCH clustering
        assert np.corrcoef(absolute, np.log(volume[:, i]))[0, 1] > 0.2


def test_all_market_regimes_and_trend_states_occur() -> None:
    path = simulate_market(SyntheticMarketConfig(seed=0, plant_strength=1.0), TWO_YEARS_1H)
    assert set(np.unique(path.market_regime)) == {0, 1, 2}
    assert set(np.unique(path.trend_state)) == {-1, 0, 1}
    assert MARKET_REGIMES[0] is MarketRegime.BULL
    bear = path.sigma[path.market_regime == 2].mean()
    bull = path.sigma[path.market_regime == 0].mean()
    assert bear > bull


def _trend_rule_log_wealth(close: np.ndarray, lookback: int, fee: float) -> float:
    """Log final wealth of equal sleeves, each in its asset while its trailing return is positive.

    The signal at bar t uses closes up to t; the position is held from close t to close t+1;
    every entry and exit (and the final liquidation) pays ``fee`` of the sleeve.
    """
    hold = np.zeros(close.shape, dtype=bool)
    hold[lookback:] = close[lookback:] > close[:-lookback]
    position = hold[:-1]
    growth = (position * np.log(close[1:] / close[:-1])).sum(axis=0)
    flat = np.zeros((1, close.shape[1]), dtype=np.int8)
    trades = np.abs(np.diff(np.vstack([flat, position.astype(np.int8), flat]), axis=0)).sum(axis=0)
    return float(np.log(np.mean(np.exp(growth + trades * np.log1p(-fee)))))


def _buy_and_hold_log_wealth(close: np.ndarray, fee: float) -> float:
    """Log final wealth of equal-weight buy-and-hold, paying ``fee`` to enter and to exit."""
    return float(np.log(np.mean((1 - fee) ** 2 * close[-1] / close[0])))


def _timing_z(close: np.ndarray, lookback: int) -> float:
    """t-statistic of the fee-free return of long-if-trailing-up, short-if-down (equal weights)."""
    sign = np.sign(close[lookback:-1] / close[:-lookback - 1] - 1.0)
    following = close[lookback + 1 :] / close[lookback:-1] - 1.0
    pnl = (sign * following).mean(axis=1)
    return float(pnl.mean() / pnl.std() * np.sqrt(pnl.size))


def _plant_experiment(strength: float) -> tuple[float, float]:
    """Return (mean trend-minus-buy-and-hold log wealth, combined timing z) over ``PLANT_SEEDS``."""
    edges, zs = [], []
    for seed in PLANT_SEEDS:
        close = simulate_market(SyntheticMarketConfig(seed=seed, plant_strength=strength), TWO_YEARS_1H).close
        edges.append(_trend_rule_log_wealth(close, TREND_LOOKBACK, FEE) - _buy_and_hold_log_wealth(close, FEE))
        zs.append(_timing_z(close, TREND_LOOKBACK))
    return float(np.mean(edges)), float(np.sum(zs) / np.sqrt(len(zs)))


def test_trend_rule_beats_buy_and_hold_after_fees_when_the_plant_is_on() -> None:
    edge, z = _plant_experiment(1.0)
    assert edge > 1.0, f"trend rule beat buy-and-hold by only {edge:.2f} log wealth over 2 years"
    assert z > 10.0, z


def test_trend_rule_has_no_edge_without_the_plant() -> None:
    edge, z = _plant_experiment(0.0)
    assert edge < 0.0, f"trend rule beat buy-and-hold by {edge:.2f} log wealth without a plant"
    assert abs(z) < 3.0, f"fee-free trend timing is significant without a plant (z={z:.2f})"


def test_returns_are_not_autocorrelated_without_the_plant() -> None:
    lag_one = []
    for seed in PLANT_SEEDS:
        returns = np.diff(np.log(simulate_market(SyntheticMarketConfig(seed=seed), TWO_YEARS_1H).close), axis=0)
        lag_one += [np.corrcoef(returns[:-1, i], returns[1:, i])[0, 1] for i in range(returns.shape[1])]
    assert abs(np.mean(lag_one)) < 0.02, np.mean(lag_one)


def test_fifteen_minute_market_keeps_its_annual_volatility() -> None:
    config = SyntheticMarketConfig(seed=4, interval=Interval.M15, symbols=("BTC/USD", "AAVE/USD"))
    path = simulate_market(config, 4 * TWO_YEARS_1H)
    annual = np.diff(np.log(path.close), axis=0).std(axis=0) * np.sqrt(Interval.M15.bars_per_year)
    assert ((annual > 0.3) & (annual < 1.5)).all(), annual
