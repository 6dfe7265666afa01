"""The risk layers inside the environment and the backtester: one implementation, reset per episode."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.env.portfolio_env import PortfolioEnv
from cappuccino_core.evaluation.backtest import backtest, backtest_windows
from cappuccino_core.risk.layers import RiskConfig, RiskRule
from tests.conftest import make_panel

STOP_ONLY = RiskConfig(stop_loss=0.10, max_position_fraction=None, portfolio_trailing_stop=None, profit_take_threshold=None)


def _crash_panel() -> tuple:
    """Asset 0 is flat for 20 bars, then falls 2% a bar; asset 1 stays flat."""
    close = np.full((60, 2), 100.0)
    close[20:, 0] = 100.0 * 0.98 ** np.arange(1, 41)
    panel = make_panel(close)
    return panel, FeatureNormalizer.fit(panel.features)


def _buy_then_hold(env: PortfolioEnv, steps: int) -> list:
    records = []
    env.step(torch.tensor([[0.5, 0.0]]).expand(env.num_envs, 2))
    records.append(env.last_record)
    for _ in range(steps - 1):
        env.step(torch.zeros(env.num_envs, 2))
        records.append(env.last_record)
    return records


def test_a_crash_triggers_the_stop_loss_exactly_at_the_threshold_and_the_position_is_sold() -> None:
    panel, normalizer = _crash_panel()
    config = EnvConfig(lookback=5, episode_bars=40, num_envs=1, fee_rate=0.0, slippage_bps=0.0, start_invested=False,
                       risk=RiskConfig.off())
    env = PortfolioEnv(panel, config.with_risk(STOP_ONLY), normalizer, starts=np.array([10]))
    env.reset()
    records = _buy_then_hold(env, 30)
    fired = [int(r.row[0]) - 1 for r in records if bool(r.risk.triggers[RiskRule.STOP_LOSS].any())]
    # Entry at 100; 0.98^5 = 0.904 > 0.9 keeps it, 0.98^6 = 0.886 <= 0.9 sells: decision row 25.
    assert fired == [25]
    assert float(records[25 - 10].actions[0, 0]) == -1.0
    assert float(records[25 - 10].fills.holdings[0, 0]) == 0.0
    assert int(env.risk_state.count(RiskRule.STOP_LOSS)[0]) == 1

    without = PortfolioEnv(panel, config, normalizer, starts=np.array([10]))  # the layers off
    without.reset()
    assert float(_buy_then_hold(without, 30)[-1].fills.holdings[0, 0]) > 0.0  # the test can fail


def test_reset_clears_the_risk_state_of_every_episode_and_auto_reset_only_the_ended_ones() -> None:
    panel, normalizer = _crash_panel()
    config = EnvConfig(lookback=5, episode_bars=30, num_envs=1, fee_rate=0.0, slippage_bps=0.0,
                       start_invested=False).with_risk(STOP_ONLY)
    env = PortfolioEnv(panel, config, normalizer, starts=np.array([10]))
    env.reset()
    _buy_then_hold(env, 30)
    assert int(env.risk_state.count(RiskRule.STOP_LOSS)[0]) == 1
    env.reset()
    assert int(env.risk_state.count(RiskRule.STOP_LOSS)[0]) == 0 and float(env.risk_state.entry_price.abs().sum()) == 0
    assert float(_buy_then_hold(env, 30)[-1].fills.holdings[0, 0]) == 0.0  # and the next episode stops out again

    training = PortfolioEnv(panel, replace(config, episode_bars=3, num_envs=4), normalizer, seed=0)
    training.reset()
    training.step(torch.tensor([[1.0, 1.0]]).expand(4, 2))
    entries = training.risk_state.entry_price.clone()
    assert bool((entries > 0).all())
    training.step(torch.zeros(4, 2))
    training.step(torch.zeros(4, 2))  # every episode hits its length here and restarts
    assert float(training.risk_state.entry_price.abs().sum()) == 0.0


def test_dampening_happens_once_in_the_risk_layers_whichever_way_it_is_configured() -> None:
    panel, normalizer = _crash_panel()
    base = dict(lookback=5, episode_bars=5, num_envs=1, fee_rate=0.0, slippage_bps=0.0, start_invested=False)
    spent = []
    for config in (EnvConfig(**base, action_dampening=0.5, risk=RiskConfig.off()),
                   EnvConfig(**base, risk=RiskConfig(action_dampening=0.5)).with_risk(RiskConfig.off()),
                   EnvConfig(**base, risk=replace(RiskConfig.off(), action_dampening=0.5))):
        env = PortfolioEnv(panel, config, normalizer, starts=np.array([10]))
        env.reset()
        env.step(torch.tensor([[1.0, 0.0]]))
        spent.append(config.initial_cash - float(env.last_record.fills.cash[0]))
        assert config.action_dampening == 0.5 and config.effective_risk.action_dampening == 0.5
        assert config.risk.action_dampening == 1.0  # stored once, at the env level
    assert spent == pytest.approx([5_000.0] * 3)
    with pytest.raises(ValueError, match="give the dampening once"):
        EnvConfig(action_dampening=0.5, risk=RiskConfig(action_dampening=0.7))


def test_the_risk_config_travels_with_the_env_config_and_old_cards_load_without_it() -> None:
    config = EnvConfig(lookback=7, action_dampening=0.8).with_risk(RiskConfig(trailing_stop=0.05))
    data = config.to_dict()
    assert data["risk"]["trailing_stop"] == 0.05 and data["risk"]["action_dampening"] == 1.0
    assert EnvConfig.from_dict(data) == config
    old_card = {k: v for k, v in data.items() if k != "risk"}
    loaded = EnvConfig.from_dict(old_card)
    assert loaded.risk == RiskConfig.off() and loaded.effective_risk.action_dampening == 0.8
    assert EnvConfig().risk == RiskConfig()  # training, validation and the arena trade under the traders' layers


def test_the_backtester_trades_through_the_risk_layers_and_counts_their_triggers() -> None:
    panel, normalizer = _crash_panel()
    config = EnvConfig(lookback=5, fee_rate=0.0, slippage_bps=0.0).with_risk(STOP_ONLY)

    class BuyFirst:
        name = "buy-first"

        def act(self, obs, context):
            return torch.tensor([[0.5, 0.0]]).expand(len(context.rows), 2) * (context.steps == 0)

    report = backtest(BuyFirst(), panel, normalizer, config, start_row=10, bars=40)
    assert report.risk_counts["stop_loss"] == 1 and report.risk_counts["position_cap"] == 0
    stop_step = 25 - 10
    assert report.actions[stop_step, 0] == 0.0 and report.executed_actions[stop_step, 0] == -1.0
    assert np.array_equal(np.delete(report.actions, stop_step, 0), np.delete(report.executed_actions, stop_step, 0))


def test_batched_windows_under_the_owners_risk_layers_equal_the_windows_run_alone(random_walk_panel) -> None:
    config = EnvConfig(lookback=10).with_risk(RiskConfig())
    normalizer = FeatureNormalizer.fit(random_walk_panel.features)
    weights = torch.randn(1 + 3 + 10 * 3 * 11, 3, generator=torch.Generator().manual_seed(0)) * 0.05

    class Linear:
        name = "linear"

        def act(self, obs, context):
            return torch.tanh(obs @ weights)

    starts = np.array([20, 150, 333])
    batched = backtest_windows(Linear(), random_walk_panel, normalizer, config, starts, horizon=100)
    assert sum(sum(r.risk_counts.values()) for r in batched) > 0
    for start, report in zip(starts, batched):
        alone = backtest(Linear(), random_walk_panel, normalizer, config, start_row=int(start), bars=100)
        assert np.allclose(report.equity, alone.equity, rtol=1e-6)
        assert report.risk_counts == alone.risk_counts
