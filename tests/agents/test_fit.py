"""A fitted agent checkpoints, reloads and reproduces its validation score; mismatches are refused."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cappuccino_core.agents.checkpoint import ModelMismatchError
from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.agents.fit import ValidationSet, evaluate_policy, fit_agent, load_trained_policy, save_fit
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.synthetic import SyntheticMarketConfig, generate_bars
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.features.panel_builder import build_panel


@pytest.fixture(scope="module")
def panel():
    market = SyntheticMarketConfig(seed=5, symbols=("BTC/USD", "ETH/USD", "LTC/USD"), plant_strength=1.0)
    return build_panel(generate_bars(market, market.origin, market.origin + timedelta(days=60)), interval=Interval.H1)


def test_a_checkpoint_reloads_into_a_policy_that_reproduces_its_validation_score(panel, tmp_path) -> None:
    cut = 1000
    env_config = EnvConfig(lookback=10, episode_bars=64)
    validation = ValidationSet(panel.rows(cut - 9, panel.num_bars), horizon=100)
    budget = PPOConfig(total_steps=8192, num_envs=64, rollout_steps=32, minibatch_size=512, update_epochs=2, eval_every_updates=2)
    scores: list[float] = []
    fit = fit_agent(
        panel.rows(0, cut), env_config=env_config, ppo_config=budget, seed=3,
        created_at=datetime(2026, 1, 1, tzinfo=UTC), validation=validation, callback=lambda step, score: scores.append(score),
        study="unit", trial=7,
    )
    assert len(scores) == 2 and scores[-1] == pytest.approx(fit.validation_score)
    card = save_fit(fit, tmp_path / "model")
    assert card.weights_sha256 and card.study == "unit" and card.trial == 7
    assert card.data_hash == panel.data_hash and card.symbols == panel.symbols

    policy, normalizer, loaded_config, _ = load_trained_policy(tmp_path / "model", panel)
    score, _ = evaluate_policy(policy, validation, normalizer, loaded_config)
    assert score == pytest.approx(fit.validation_score, rel=1e-9)
    assert np.array_equal(normalizer.mean, fit.normalizer.mean)


def test_loading_a_model_against_other_symbols_or_features_is_refused(panel, tmp_path) -> None:
    env_config = EnvConfig(lookback=10, episode_bars=32)
    budget = PPOConfig(total_steps=2048, num_envs=32, rollout_steps=32, minibatch_size=256, update_epochs=1)
    fit = fit_agent(panel.rows(0, 800), env_config=env_config, ppo_config=budget, seed=0, created_at=datetime(2026, 1, 1, tzinfo=UTC))
    save_fit(fit, tmp_path / "model")

    reordered = dataclasses.replace(panel, symbols=("ETH/USD", "BTC/USD", "LTC/USD"))
    with pytest.raises(ModelMismatchError, match="symbol"):
        load_trained_policy(tmp_path / "model", reordered)
    other_spec = dataclasses.replace(panel, feature_spec=dataclasses.replace(panel.feature_spec, version="0"))
    with pytest.raises(ModelMismatchError, match="feature"):
        load_trained_policy(tmp_path / "model", other_spec)
