"""Learning works: PPO finds a planted edge out of sample, and claims none where there is none.

These two tests are the proof that the environment, the learner and the metrics are right
together. Each fit is the default trial: 150k environment steps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.agents.fit import FitResult, ValidationSet, fit_agent
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.synthetic import SyntheticMarketConfig, generate_bars
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.evaluation.bootstrap import bootstrap_mean_ci
from cappuccino_core.evaluation.scoring import window_excess_returns
from cappuccino_core.features.panel_builder import build_panel

BUDGET = PPOConfig(eval_every_updates=10**6)  # the default trial budget: 150k steps, 256 episodes x 32 bars


def _fit_on_synthetic(seed: int, plant_strength: float) -> FitResult:
    market = SyntheticMarketConfig(seed=100 + seed, plant_strength=plant_strength)
    panel = build_panel(generate_bars(market, market.origin, market.origin + timedelta(days=365)), interval=Interval.H1)
    cut = int(panel.num_bars * 0.7)  # train on the first 70%, validate on the held-out 30% after it
    env_config = EnvConfig(lookback=20, episode_bars=128)
    held_out = ValidationSet(panel.rows(cut - env_config.lookback + 1, panel.num_bars), horizon=168)
    return fit_agent(
        panel.rows(0, cut), env_config=env_config, ppo_config=BUDGET, seed=seed,
        created_at=datetime(2026, 1, 1, tzinfo=UTC), validation=held_out,
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppo_beats_equal_weight_buy_and_hold_on_held_out_bars_of_the_planted_market(seed: int) -> None:
    fit = _fit_on_synthetic(seed, plant_strength=1.0)
    weekly_alpha = np.mean([r.metrics.alpha for r in fit.validation_reports])
    assert len(fit.validation_reports) >= 10
    assert weekly_alpha > 0.01, f"held-out alpha per week {weekly_alpha:+.4f}"
    assert fit.validation_score is not None and fit.validation_score > 2.0, f"excess Sharpe {fit.validation_score}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppo_claims_no_significant_alpha_on_a_market_without_an_edge(seed: int) -> None:
    fit = _fit_on_synthetic(seed, plant_strength=0.0)
    excess = window_excess_returns(fit.validation_reports)
    interval = bootstrap_mean_ci(excess, confidence=0.95, n_resamples=2000, seed=seed)
    assert interval.low is not None and interval.low <= 0.0, (
        f"no-edge market, yet the held-out excess return is significantly positive: {interval}"
    )
