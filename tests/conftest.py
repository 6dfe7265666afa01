"""Shared fixtures: a hand-built market panel, temporary homes, and a guard against real endpoints."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cappuccino_core.data.intervals import Interval
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.features.spec import FeatureSpec

REPO = Path(__file__).resolve().parents[1]

# No test may reach a real Alpaca endpoint or send telemetry.
os.environ.pop("APCA_API_KEY_ID", None)
os.environ.pop("APCA_API_SECRET_KEY", None)
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def shared_data_dir() -> Path:
    """Where the real Binance bars live (``CAPPUCCINO_SHARED_DATA`` or ``../shared/data/ohlcv``)."""
    return Path(os.environ.get("CAPPUCCINO_SHARED_DATA", REPO.parent / "shared" / "data" / "ohlcv"))


def make_panel(
    close: np.ndarray,
    *,
    open_: np.ndarray | None = None,
    features: np.ndarray | None = None,
    segment: np.ndarray | None = None,
    interval: Interval = Interval.H1,
    seed: int = 0,
) -> MarketPanel:
    """Build a panel from a ``[T, A]`` close path (open defaults to the previous close)."""
    close = np.asarray(close, dtype=np.float64)
    steps, assets = close.shape
    if open_ is None:
        open_ = np.vstack([close[:1], close[:-1]])
    if features is None:
        features = np.random.default_rng(seed).normal(size=(steps, assets, 11)).astype(np.float32)
    if segment is None:
        segment = np.zeros(steps, dtype=np.int32)
    start = np.datetime64("2024-01-01T00:00", "ns").astype(np.int64)
    return MarketPanel(
        symbols=tuple(f"A{i}/USD" for i in range(assets)),
        interval=interval,
        timestamps=start + np.arange(steps, dtype=np.int64) * interval.seconds * 1_000_000_000,
        open=np.asarray(open_, dtype=np.float64),
        high=np.maximum(open_, close),
        low=np.minimum(open_, close),
        close=close,
        volume=np.ones_like(close),
        features=features,
        segment=segment,
        feature_spec=FeatureSpec(),
        data_hash="test",
    )


@pytest.fixture
def random_walk_panel() -> MarketPanel:
    """A 3-asset geometric random walk of 600 hourly bars."""
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, size=(600, 3)), axis=0))
    return make_panel(close)


POSTGRES_URL = os.environ.get("CAPPUCCINO_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def postgres_url_or_skip() -> str:
    """Return the test PostgreSQL URL; skip (or fail under CI) when the server is unreachable."""
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(POSTGRES_URL)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any connection failure means "not available"
        reason = f"PostgreSQL at {POSTGRES_URL} is unreachable ({type(exc).__name__}); set CAPPUCCINO_TEST_POSTGRES_URL"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI requires PostgreSQL: {reason}")
        pytest.skip(reason)
    return POSTGRES_URL


@pytest.fixture
def postgres_url() -> str:
    """The PostgreSQL URL for tests that need a real server (see ``postgres_url_or_skip``)."""
    return postgres_url_or_skip()
