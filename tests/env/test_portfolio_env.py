"""The portfolio environment: timing, accounting, reset and the Gymnasium adapter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cappuccino_core.accounting import ExecutionCosts, actions_for_target_weights, execute_actions
from cappuccino_core.risk.config import RiskConfig
from cappuccino_core.env.config import EnvConfig, RewardMode
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.env.portfolio_env import PortfolioEnv
from tests.conftest import make_panel


def _fixed_policy(obs_dim: int, actions: int, seed: int = 3):
    weights = torch.randn(obs_dim, actions, generator=torch.Generator().manual_seed(seed)) * 0.05
    return lambda obs: torch.tanh(obs @ weights)


def test_observation_and_action_at_bar_t_ignore_every_bar_after_t(random_walk_panel) -> None:
    panel = random_walk_panel
    cut = 300
    rng = np.random.default_rng(9)
    altered_close = panel.close.copy()
    altered_close[cut + 1 :] *= np.exp(rng.normal(0, 0.05, size=altered_close[cut + 1 :].shape))
    altered_open = panel.open.copy()
    altered_open[cut + 1 :] *= 1.1
    altered_features = panel.features.copy()
    altered_features[cut + 1 :] = rng.normal(size=altered_features[cut + 1 :].shape)
    altered = make_panel(altered_close, open_=altered_open, features=altered_features)

    config = EnvConfig(lookback=10, episode_bars=250, num_envs=2)
    normalizer = FeatureNormalizer.fit(panel.features[:200])
    starts = np.array([100, 150])
    envs = [PortfolioEnv(p, config, normalizer, starts=starts) for p in (panel, altered)]
    policy = _fixed_policy(envs[0].obs_dim, envs[0].action_dim)
    obs = [env.reset() for env in envs]
    while int(envs[0].rows.max()) <= cut:
        assert torch.equal(obs[0], obs[1]), f"observation differs at rows {envs[0].rows.tolist()}"
        actions = [policy(o) for o in obs]
        assert torch.equal(actions[0], actions[1])
        obs = [env.step(a).obs for env, a in zip(envs, actions)]
    # Once the decision row passes the cut the paths must diverge (the test could fail).
    assert not torch.equal(obs[0], obs[1])


def test_a_buy_then_a_sell_at_the_same_price_loses_exactly_the_two_fees() -> None:
    costs = ExecutionCosts(fee_rate=0.0025, slippage_bps=0.0, min_order_notional=1.0)
    cash = torch.tensor([1000.0], dtype=torch.float64)
    holdings = torch.zeros(1, 2, dtype=torch.float64)
    price = torch.tensor([[50.0, 20.0]], dtype=torch.float64)
    bought = execute_actions(cash, holdings, torch.tensor([[1.0, 0.0]]), price, costs)
    sold = execute_actions(bought.cash, bought.holdings, torch.tensor([[-1.0, 0.0]]), price, costs)
    total_fees = float(bought.fees[0] + sold.fees[0])
    assert float(sold.holdings.abs().sum()) == pytest.approx(0.0, abs=1e-12)
    assert 1000.0 - float(sold.cash[0]) == pytest.approx(total_fees, rel=1e-12)
    # Each fee is 0.25% of the filled notional.
    assert float(bought.fees[0]) == pytest.approx(0.0025 * float(bought.notional[0, 0]), rel=1e-12)
    assert float(sold.fees[0]) == pytest.approx(0.0025 * -float(sold.notional[0, 0]), rel=1e-12)


def test_sells_execute_before_buys_and_fund_them() -> None:
    costs = ExecutionCosts(fee_rate=0.0, slippage_bps=0.0, min_order_notional=0.0)
    cash = torch.tensor([0.0], dtype=torch.float64)
    holdings = torch.tensor([[10.0, 0.0]], dtype=torch.float64)
    price = torch.tensor([[10.0, 5.0]], dtype=torch.float64)
    fills = execute_actions(cash, holdings, torch.tensor([[-0.5, 1.0]]), price, costs)
    assert float(fills.holdings[0, 0]) == pytest.approx(5.0)
    assert float(fills.holdings[0, 1]) == pytest.approx(10.0)  # the 50 from the sale buys 10 units at 5
    assert float(fills.cash[0]) == pytest.approx(0.0, abs=1e-12)


def test_orders_below_the_minimum_notional_are_dropped_and_reported() -> None:
    costs = ExecutionCosts(fee_rate=0.0025, slippage_bps=0.0, min_order_notional=10.0)
    cash = torch.tensor([100.0], dtype=torch.float64)
    holdings = torch.zeros(1, 2, dtype=torch.float64)
    price = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    fills = execute_actions(cash, holdings, torch.tensor([[0.05, 0.5]]), price, costs)
    assert fills.dropped.tolist() == [[True, False]]
    assert float(fills.holdings[0, 0]) == 0.0
    assert float(fills.cash[0]) == pytest.approx(50.0)


def test_buys_never_spend_the_cash_reserve_or_go_negative() -> None:
    costs = ExecutionCosts(fee_rate=0.001, slippage_bps=10.0, min_order_notional=0.0, min_cash_reserve=0.2)
    gen = torch.Generator().manual_seed(0)
    cash = torch.rand(500, generator=gen, dtype=torch.float64) * 1000
    holdings = torch.rand(500, 4, generator=gen, dtype=torch.float64) * 3
    price = torch.rand(500, 4, generator=gen, dtype=torch.float64) * 100 + 1
    actions = torch.rand(500, 4, generator=gen) * 4 - 2  # outside [-1, 1] on purpose: clipped
    fills = execute_actions(cash, holdings, actions, price, costs)
    equity_after = fills.cash + (fills.holdings * price).sum(1)
    assert bool((fills.holdings >= 0).all())
    assert bool((fills.cash >= -1e-9).all())
    bought_any = (fills.units > 0).any(1)
    assert bool((fills.cash[bought_any] >= 0.2 * equity_after[bought_any] - 1e-6).all())


def test_target_weight_actions_reach_the_target_up_to_fees() -> None:
    costs = ExecutionCosts(fee_rate=0.0025, slippage_bps=0.0, min_order_notional=0.0)
    cash = torch.tensor([1000.0], dtype=torch.float64)
    holdings = torch.tensor([[2.0, 0.0, 5.0]], dtype=torch.float64)
    price = torch.tensor([[100.0, 40.0, 20.0]], dtype=torch.float64)
    target = torch.tensor([[0.1, 0.5, 0.3]], dtype=torch.float64)
    actions = actions_for_target_weights(cash, holdings, price, target, costs)
    fills = execute_actions(cash, holdings, actions, price, costs)
    value = fills.cash + (fills.holdings * price).sum(1)
    weights = fills.holdings * price / value
    assert torch.allclose(weights, target, atol=0.005)


def test_reset_clears_every_accumulator_so_identical_episodes_give_identical_rewards(random_walk_panel) -> None:
    config = EnvConfig(lookback=8, episode_bars=40, num_envs=4)
    env = PortfolioEnv(random_walk_panel, config, FeatureNormalizer.fit(random_walk_panel.features[:300]), seed=5)
    policy = _fixed_policy(env.obs_dim, env.action_dim)

    def episode(seed: int) -> torch.Tensor:
        obs = env.reset(seed=seed)
        rewards = []
        for _ in range(config.episode_bars):
            result = env.step(policy(obs))
            rewards.append(result.reward)
            obs = result.obs
        return torch.stack(rewards)

    first = episode(11)
    episode(12)  # a different episode in between leaves cash and holdings elsewhere
    assert torch.equal(first, episode(11))


def test_episodes_auto_reset_after_the_configured_length(random_walk_panel) -> None:
    config = EnvConfig(lookback=8, episode_bars=5, num_envs=3, start_invested=False)
    env = PortfolioEnv(random_walk_panel, config, FeatureNormalizer.fit(random_walk_panel.features), seed=0)
    env.reset()
    flags = [bool(env.step(torch.ones(3, 3)).truncated.all()) for _ in range(10)]
    assert flags == [False, False, False, False, True] * 2
    cash, holdings = env.book()
    assert torch.all(cash == config.initial_cash) and torch.all(holdings == 0)


def test_reward_is_the_scaled_log_return_of_the_book_in_excess_of_buy_and_hold(random_walk_panel) -> None:
    panel = random_walk_panel
    normalizer = FeatureNormalizer.fit(panel.features)
    base = dict(lookback=5, episode_bars=3, num_envs=1, reward_scale=10.0, fee_rate=0.0, slippage_bps=0.0,
                start_invested=False, risk=RiskConfig.off())
    start = np.array([50])
    cash_only = PortfolioEnv(panel, EnvConfig(**base, reward_mode=RewardMode.EXCESS_LOG_RETURN), normalizer, starts=start)
    cash_only.reset()
    reward = float(cash_only.step(torch.zeros(1, 3)).reward[0])
    index_return = float(np.mean(panel.close[51] / panel.close[50]))
    assert reward == pytest.approx(-10.0 * math.log(index_return), rel=1e-5)

    absolute = PortfolioEnv(panel, EnvConfig(**base, reward_mode=RewardMode.LOG_RETURN), normalizer, starts=start)
    absolute.reset()
    reward = float(absolute.step(torch.tensor([[1.0, 0.0, 0.0]])).reward[0])
    expected = math.log(panel.close[51, 0] / panel.open[51, 0])  # bought at the open of t+1, valued at its close
    assert reward == pytest.approx(10.0 * expected, rel=1e-5)


def test_same_seed_gives_the_same_episodes_and_another_seed_does_not(random_walk_panel) -> None:
    config = EnvConfig(lookback=8, episode_bars=20, num_envs=8)
    normalizer = FeatureNormalizer.fit(random_walk_panel.features)
    envs = [PortfolioEnv(random_walk_panel, config, normalizer, seed=s) for s in (1, 1, 2)]
    rows = [(env.reset(), env.rows)[1] for env in envs]
    assert torch.equal(rows[0], rows[1])
    assert not torch.equal(rows[0], rows[2])


def test_episodes_never_start_where_the_window_would_cross_a_segment_boundary() -> None:
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, size=(200, 2)), axis=0))
    segment = np.repeat([0, 1], [120, 80]).astype(np.int32)
    panel = make_panel(close, segment=segment)
    config = EnvConfig(lookback=10, episode_bars=30, num_envs=64)
    env = PortfolioEnv(panel, config, FeatureNormalizer.fit(panel.features), seed=0)
    env.reset()
    starts = env.rows
    assert bool(((starts >= 9) & (starts + 30 < 120) | (starts >= 129) & (starts + 30 < 200)).all())
    with pytest.raises(ValueError, match="one segment"):
        PortfolioEnv(panel, config, FeatureNormalizer.fit(panel.features), starts=np.array([100]))


def test_invalid_environment_settings_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="fee_rate"):
        EnvConfig(fee_rate=-0.1)
    with pytest.raises(ValueError, match="min_cash_reserve"):
        EnvConfig(min_cash_reserve=1.5)


def test_gymnasium_adapter_passes_check_env(random_walk_panel) -> None:
    pytest.importorskip("gymnasium")
    from gymnasium.utils.env_checker import check_env

    from cappuccino_core.env.gym_adapter import PortfolioGymEnv

    env = PortfolioGymEnv(random_walk_panel, EnvConfig(lookback=8, episode_bars=16), FeatureNormalizer.fit(random_walk_panel.features))
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    assert obs.shape == env.observation_space.shape
