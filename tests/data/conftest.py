"""Fixtures for the market-data tests: a seeded bar generator and the shared OHLCV files."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cappuccino_core.data.intervals import Interval

REPO_ROOT = Path(__file__).resolve().parents[2]
JAN_1 = datetime(2024, 1, 1, tzinfo=UTC)

BarFactory = Callable[..., pl.DataFrame]


def make_bars(
    n: int, *, start: datetime = JAN_1, interval: Interval = Interval.H1, seed: int = 0, price: float = 100.0
) -> pl.DataFrame:
    """Return ``n`` valid canonical bars on the grid from ``start``: a seeded random walk."""
    rng = np.random.default_rng(seed)
    closes = price * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    opens = np.concatenate([[price], closes[:-1]])[:n]
    highs = np.maximum(opens, closes) * (1 + rng.uniform(0.0, 0.005, n))
    lows = np.minimum(opens, closes) * (1 - rng.uniform(0.0, 0.005, n))
    volumes = rng.uniform(1.0, 10.0, n)
    end = start + interval.timedelta * max(n - 1, 0)
    timestamps = pl.datetime_range(start, end, interval.timedelta, time_zone="UTC", eager=True).head(n)
    return pl.DataFrame(
        {
            "timestamp": timestamps.cast(pl.Datetime("us", "UTC")),
            "open": opens,
            "high": highs,
            "low": lows,
            "close": closes,
            "volume": volumes,
        }
    )


@pytest.fixture
def bars_factory() -> BarFactory:
    """Return ``make_bars``: seeded valid bars, ``make_bars(n, start=..., interval=..., seed=...)``."""
    return make_bars


@pytest.fixture(scope="session")
def shared_ohlcv_dir() -> Path:
    """Return the shared Binance OHLCV directory, or skip when it is not on this machine."""
    default = REPO_ROOT.parent / "shared" / "data" / "ohlcv"
    path = Path(os.environ.get("CAPPUCCINO_SHARED_DATA", default))
    if not path.is_dir():
        pytest.skip(f"shared OHLCV data not found at {path} (set CAPPUCCINO_SHARED_DATA)")
    return path
