"""A bar store holding a synthetic market, and tiny budgets so a study runs in seconds."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.store import BarStore
from cappuccino_core.data.synthetic import SyntheticMarketConfig, generate_bars

SYMBOLS = ("BTC/USD", "ETH/USD", "LTC/USD")

TINY_PPO = PPOConfig(total_steps=20 * 256, num_envs=16, rollout_steps=16, minibatch_size=128, update_epochs=1,
                     hidden_sizes=(16,), eval_every_updates=10)  # the floor of 20 updates, on a tiny network


def fill_store(root: Path, *, days: int, plant: float = 1.0, seed: int = 3, symbols=SYMBOLS) -> BarStore:
    """Write ``days`` of synthetic 1h bars for ``symbols`` into a new store at ``root``."""
    market = SyntheticMarketConfig(seed=seed, symbols=symbols, plant_strength=plant)
    store = BarStore(root)
    for symbol, bars in generate_bars(market, market.origin, market.origin + timedelta(days=days)).items():
        store.write(symbol, Interval.H1, bars, source="synthetic")
    return store


@pytest.fixture
def small_store(tmp_path) -> BarStore:
    """70 days of a 3-asset planted market."""
    return fill_store(tmp_path / "store", days=70)


def tiny(spec, **ppo_changes):
    """A spec with a tiny training budget (for machinery tests, not learning)."""
    return replace(spec, ppo=replace(TINY_PPO, **ppo_changes), env=replace(spec.env, num_envs=TINY_PPO.num_envs, episode_bars=32))
