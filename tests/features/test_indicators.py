"""Per-asset features: TA-Lib values, scale-free transforms, dropped warm-up, no look-ahead."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest
import talib

from cappuccino_core.data.errors import BarDataError
from cappuccino_core.data.synthetic import SyntheticMarketConfig, generate_bars
from cappuccino_core.features.indicators import (
    FEATURE_TRANSFORMS,
    VOLUME_WINDOW,
    compute_features,
    resolve_spec,
    warmup_rows,
)
from cappuccino_core.features.spec import FEATURE_NAMES, FeatureSpec


def synthetic_bars(hours: int, *, seed: int = 0, symbol: str = "ETH/USD") -> pl.DataFrame:
    config = SyntheticMarketConfig(seed=seed, symbols=(symbol,), plant_strength=0.5)
    return generate_bars(config, config.origin, config.origin + timedelta(hours=hours))[symbol]


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return synthetic_bars(600)


def test_output_has_timestamp_and_the_11_features_in_spec_order(bars: pl.DataFrame) -> None:
    out = compute_features(bars)
    assert out.columns == ["timestamp", *FEATURE_NAMES]
    assert all(out.schema[n] == pl.Float64 for n in FEATURE_NAMES)


def test_warmup_rows_are_dropped_not_filled(bars: pl.DataFrame) -> None:
    out = compute_features(bars)
    skip = warmup_rows()
    assert skip == 33  # MACD(12, 26, 9): 25 + 8 leading undefined rows
    assert out.height == bars.height - skip
    assert out["timestamp"].to_list() == bars["timestamp"][skip:].to_list()
    assert np.isfinite(out.select(FEATURE_NAMES).to_numpy()).all()


def test_features_match_talib_and_the_documented_transforms(bars: pl.DataFrame) -> None:
    out = compute_features(bars)
    skip = warmup_rows()
    o, h, l, c, v = (bars[x].to_numpy() for x in ("open", "high", "low", "close", "volume"))
    prev = c[skip - 1 : -1]
    np.testing.assert_allclose(out["open"], np.log(o[skip:] / prev), rtol=1e-12)
    np.testing.assert_allclose(out["high"], np.log(h[skip:] / prev), rtol=1e-12)
    np.testing.assert_allclose(out["low"], np.log(l[skip:] / prev), rtol=1e-12)
    np.testing.assert_allclose(out["close"], np.log(c[skip:] / prev), rtol=1e-12)
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    np.testing.assert_allclose(out["macd"], macd[skip:] / c[skip:], rtol=1e-12)
    np.testing.assert_allclose(out["macd_signal"], signal[skip:] / c[skip:], rtol=1e-12)
    np.testing.assert_allclose(out["macd_hist"], hist[skip:] / c[skip:], rtol=1e-12)
    np.testing.assert_allclose(out["rsi"], talib.RSI(c, 14)[skip:], rtol=1e-12)
    np.testing.assert_allclose(out["cci"], talib.CCI(h, l, c, 14)[skip:], rtol=1e-12)
    np.testing.assert_allclose(out["dx"], talib.DX(h, l, c, 14)[skip:], rtol=1e-12)


def test_volume_feature_is_log_volume_minus_its_trailing_mean(bars: pl.DataFrame) -> None:
    out = compute_features(bars)
    skip = warmup_rows()
    log_volume = np.log1p(bars["volume"].to_numpy())
    reference = [log_volume[t] - log_volume[t - VOLUME_WINDOW + 1 : t + 1].mean() for t in range(skip, bars.height)]
    np.testing.assert_allclose(out["volume"], reference, rtol=1e-9, atol=1e-12)


def test_features_do_not_depend_on_the_price_scale(bars: pl.DataFrame) -> None:
    scaled = bars.with_columns(pl.col("open", "high", "low", "close") * 1000.0)
    a = compute_features(bars).select(FEATURE_NAMES).to_numpy()
    b = compute_features(scaled).select(FEATURE_NAMES).to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


def test_features_at_bar_t_do_not_change_when_later_bars_change() -> None:
    bars = synthetic_bars(3000, seed=9)
    k = 1800
    rng = np.random.default_rng(0)
    factor = pl.Series(np.where(np.arange(bars.height) > k, rng.uniform(0.5, 2.0, bars.height), 1.0))
    altered = bars.with_columns(
        pl.col("open", "high", "low", "close") * factor, pl.col("volume") * factor * factor
    )
    truncated = compute_features(bars.head(k + 1))
    full = compute_features(altered)
    assert truncated["timestamp"].to_list() == full["timestamp"].head(truncated.height).to_list()
    head = full.head(truncated.height).select(FEATURE_NAMES).to_numpy()
    np.testing.assert_allclose(head, truncated.select(FEATURE_NAMES).to_numpy(), rtol=1e-9, atol=1e-12)
    later = full.filter(pl.col("timestamp") > bars["timestamp"][k]).select(FEATURE_NAMES).to_numpy()
    original = compute_features(bars).filter(pl.col("timestamp") > bars["timestamp"][k])
    assert not np.allclose(later, original.select(FEATURE_NAMES).to_numpy())  # the alteration did bite


def test_too_few_bars_for_the_warmup_are_refused(bars: pl.DataFrame) -> None:
    assert compute_features(bars.head(warmup_rows() + 1)).height == 1
    with pytest.raises(BarDataError, match="warm-up"):
        compute_features(bars.head(warmup_rows()), where="ETH/USD 1h")


def test_non_positive_prices_are_refused_naming_the_row(bars: pl.DataFrame) -> None:
    broken = bars.with_row_index().with_columns(
        pl.when(pl.col("index") == 50).then(0.0).otherwise(pl.col("low")).alias("low")
    ).drop("index")
    with pytest.raises(BarDataError, match="low = 0.0 at row 50"):
        compute_features(broken)


def test_missing_values_are_refused(bars: pl.DataFrame) -> None:
    broken = bars.with_row_index().with_columns(
        pl.when(pl.col("index") == 70).then(None).otherwise(pl.col("volume")).alias("volume")
    ).drop("index")
    with pytest.raises(BarDataError, match="volume = nan at row 70"):
        compute_features(broken)


def test_unsorted_timestamps_are_refused(bars: pl.DataFrame) -> None:
    with pytest.raises(BarDataError, match="strictly increasing"):
        compute_features(pl.concat([bars.slice(100, 100), bars.head(100)]))


def test_resolved_spec_records_the_transforms_and_refuses_other_features() -> None:
    spec = resolve_spec(FeatureSpec())
    assert spec.transforms == FEATURE_TRANSFORMS and set(spec.transforms) == set(FEATURE_NAMES)
    assert resolve_spec(spec).fingerprint() == spec.fingerprint()
    with pytest.raises(ValueError, match="names"):
        resolve_spec(FeatureSpec(names=FEATURE_NAMES[:-1]))
    with pytest.raises(ValueError, match="transforms"):
        resolve_spec(FeatureSpec(transforms={"open": "raw"}))


def test_longer_periods_lengthen_the_warmup(bars: pl.DataFrame) -> None:
    params = {**FeatureSpec().params, "macd_slow": 40}
    spec = FeatureSpec(params=params)
    assert warmup_rows(spec) == 39 + 8
    assert compute_features(bars, spec).height == bars.height - 47
