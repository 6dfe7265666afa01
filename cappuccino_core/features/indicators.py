"""Per-asset features: the 11 columns of ``FeatureSpec`` computed with TA-Lib, made scale-free.

Every feature at row ``t`` uses bars up to and including ``t`` only. The transforms (the
same text is recorded in ``FeatureSpec.transforms`` via ``FEATURE_TRANSFORMS``):

* ``open``, ``high``, ``low``, ``close``: ``log(x_t / close_{t-1})``: the bar's prices
  relative to the previous close (``close`` is the log return).
* ``volume``: ``log1p(volume_t)`` minus the mean of ``log1p(volume)`` over rows
  ``t-19 .. t`` (20 rows, including ``t``): relative activity, free of the asset's units.
* ``macd``, ``macd_signal``, ``macd_hist``: TA-Lib ``MACD(close, fast, slow, signal)``
  divided by ``close_t``: a fraction of the price.
* ``rsi``: TA-Lib ``RSI(close, rsi_period)``, raw (0..100).
* ``cci``: TA-Lib ``CCI(high, low, close, cci_period)``, raw (already scale-free).
* ``dx``: TA-Lib ``DX(high, low, close, dx_period)``, raw (0..100).

Warm-up rows, where any indicator is undefined (plus the first row, which has no previous
close), are **dropped**, never filled: the output starts at row ``warmup_rows(spec)`` of
the input. TA-Lib's EMA-style indicators (MACD, RSI, DX) depend on where the series starts,
so features are reproducible only from the same first bar. Rows are treated as consecutive
whatever the time between them: a gap in the bars is bridged, not filled.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import polars as pl
import talib
from talib import abstract

from cappuccino_core.data.bars import PRICE_COLUMNS, REQUIRED_COLUMNS
from cappuccino_core.data.errors import BarDataError
from cappuccino_core.features.spec import (
    FEATURE_NAMES,
    FEATURE_SPEC_VERSION,
    FEATURE_TRANSFORMS,
    VOLUME_WINDOW,
    FeatureSpec,
)

logger = logging.getLogger(__name__)




def resolve_spec(spec: FeatureSpec = FeatureSpec()) -> FeatureSpec:
    """Return ``spec`` with ``transforms`` filled in (``FEATURE_TRANSFORMS``) when it is empty.

    Raises:
        ValueError: ``spec`` asks for features this module does not compute (other names,
            order, version or transforms).
    """
    if spec.version != FEATURE_SPEC_VERSION:
        raise ValueError(f"feature spec version {spec.version!r}; this code computes version {FEATURE_SPEC_VERSION!r}")
    if tuple(spec.names) != FEATURE_NAMES:
        raise ValueError(f"feature names {spec.names} differ from the computed {FEATURE_NAMES}")
    if spec.transforms and dict(spec.transforms) != FEATURE_TRANSFORMS:
        raise ValueError("feature spec transforms differ from FEATURE_TRANSFORMS; cannot rebuild them")
    return dataclasses.replace(spec, transforms=dict(FEATURE_TRANSFORMS))


def warmup_rows(spec: FeatureSpec = FeatureSpec()) -> int:
    """Return how many leading input rows ``compute_features`` drops for ``spec``."""
    p = spec.params
    lookbacks = [
        1,  # the log ratios need the previous close
        VOLUME_WINDOW - 1,
        _lookback("MACD", fastperiod=p["macd_fast"], slowperiod=p["macd_slow"], signalperiod=p["macd_signal"]),
        _lookback("RSI", timeperiod=p["rsi_period"]),
        _lookback("CCI", timeperiod=p["cci_period"]),
        _lookback("DX", timeperiod=p["dx_period"]),
    ]
    return max(lookbacks)


def compute_features(bars: pl.DataFrame, spec: FeatureSpec = FeatureSpec(), *, where: str = "bars") -> pl.DataFrame:
    """Compute the scale-free features of one asset's bars.

    Args:
        bars: a bar table (``timestamp`` and OHLCV, sorted, unique), one asset.
        spec: which features and indicator periods (see ``resolve_spec``).
        where: names the bars in error messages (a symbol or file).

    Returns:
        ``timestamp`` plus ``spec.names`` columns (``Float64``), one row per input row
        after the warm-up (``warmup_rows(spec)`` rows dropped).

    Raises:
        BarDataError: missing columns, unsorted timestamps, non-positive or non-finite
            prices, negative volume, too few rows for the warm-up, or an undefined value
            after the warm-up (naming the row's timestamp).
    """
    spec = resolve_spec(spec)
    _check_bars(bars, where)
    skip = warmup_rows(spec)
    if bars.height <= skip:
        raise BarDataError(where, f"need more than {skip} bars for the feature warm-up, got {bars.height}")
    p = spec.params
    o, h, l, c, v = (bars.get_column(name).to_numpy().astype(np.float64) for name in REQUIRED_COLUMNS[1:])

    prev_close = np.concatenate([[np.nan], c[:-1]])
    log_volume = np.log1p(v)
    cumulative = np.concatenate([[0.0], np.cumsum(log_volume)])
    trailing = np.full_like(c, np.nan)
    trailing[VOLUME_WINDOW - 1 :] = (cumulative[VOLUME_WINDOW:] - cumulative[:-VOLUME_WINDOW]) / VOLUME_WINDOW
    macd, macd_signal, macd_hist = talib.MACD(c, p["macd_fast"], p["macd_slow"], p["macd_signal"])
    columns = {
        "open": np.log(o / prev_close),
        "high": np.log(h / prev_close),
        "low": np.log(l / prev_close),
        "close": np.log(c / prev_close),
        "volume": log_volume - trailing,
        "macd": macd / c,
        "macd_signal": macd_signal / c,
        "macd_hist": macd_hist / c,
        "rsi": talib.RSI(c, p["rsi_period"]),
        "cci": talib.CCI(h, l, c, p["cci_period"]),
        "dx": talib.DX(h, l, c, p["dx_period"]),
    }
    out = pl.DataFrame(
        {"timestamp": bars.get_column("timestamp")[skip:], **{n: columns[n][skip:] for n in spec.names}}
    )
    _check_defined(out, spec.names, where)
    return out


def _lookback(name: str, **params: int) -> int:
    """Return TA-Lib's lookback (leading undefined rows) of indicator ``name`` with ``params``."""
    function = abstract.Function(name)
    function.set_parameters(**params)
    return int(function.lookback)


def _check_bars(bars: pl.DataFrame, where: str) -> None:
    """Raise ``BarDataError`` unless ``bars`` can be turned into features."""
    missing = [col for col in REQUIRED_COLUMNS if col not in bars.columns]
    if missing:
        raise BarDataError(where, f"missing column(s) {missing}")
    not_increasing = (bars.get_column("timestamp").diff().dt.total_microseconds() <= 0).fill_null(False)
    if not_increasing.any():
        row = int(not_increasing.arg_true()[0])
        raise BarDataError(where, f"timestamps not strictly increasing at row {row} ({bars['timestamp'][row]})")
    for name in (*PRICE_COLUMNS, "volume"):
        values = bars.get_column(name).cast(pl.Float64).fill_null(np.nan).to_numpy()
        lowest = 0.0 if name == "volume" else np.finfo(np.float64).tiny
        bad = ~(np.isfinite(values) & (values >= lowest))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise BarDataError(
                where, f"{name} = {values[row]} at row {row} ({bars['timestamp'][row]}) cannot make features"
            )


def _check_defined(features: pl.DataFrame, names: tuple[str, ...], where: str) -> None:
    """Raise ``BarDataError`` naming the first row and column where a feature is not finite."""
    values = features.select(names).to_numpy()
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise BarDataError(
            where, f"feature {names[col]} undefined at {features['timestamp'][row]} after the warm-up"
        )
