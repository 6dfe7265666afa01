"""The backtester runs the training environment and reports through the one metrics module."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cappuccino_core.accounting import ExecutionCosts
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.risk.config import RiskConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.evaluation import metrics
from cappuccino_core.evaluation.backtest import backtest, backtest_windows
from cappuccino_core.evaluation.baselines import (
    EqualWeightBuyAndHold,
    MeanReversion,
    Momentum,
    SixtyForty,
    default_baselines,
)
from tests.conftest import make_panel


class LinearPolicy:
    name = "linear"

    def __init__(self, obs_dim: int, actions: int) -> None:
        self.weights = torch.randn(obs_dim, actions, generator=torch.Generator().manual_seed(0)) * 0.05

    def act(self, obs, context):
        return torch.tanh(obs @ self.weights)


def _costs(config: EnvConfig) -> ExecutionCosts:
    return ExecutionCosts(config.fee_rate, config.slippage_bps, config.min_order_notional, config.min_cash_reserve)


def test_backtest_is_deterministic_and_its_numbers_come_from_the_metrics_module(random_walk_panel) -> None:
    config = EnvConfig(lookback=10)
    normalizer = FeatureNormalizer.fit(random_walk_panel.features)
    policy = LinearPolicy(1 + 3 + 10 * 3 * 11, 3)
    first = backtest(policy, random_walk_panel, normalizer, config)
    second = backtest(policy, random_walk_panel, normalizer, config)
    assert np.array_equal(first.equity, second.equity)
    assert np.array_equal(first.actions, second.actions)
    assert first.metrics.sharpe == metrics.sharpe(first.returns, random_walk_panel.interval)
    assert first.metrics.max_drawdown == metrics.max_drawdown(first.returns)
    assert np.allclose(np.cumprod(1 + first.returns), first.equity[1:])
    assert first.metrics.alpha == pytest.approx(first.equity[-1] - first.benchmark[-1])
    assert first.metrics.trade_count is not None and first.fill_qty.size > 0


def test_buy_and_hold_without_costs_reproduces_the_benchmark_index_exactly(random_walk_panel) -> None:
    config = EnvConfig(lookback=10, fee_rate=0.0, slippage_bps=0.0, min_order_notional=0.0, start_invested=False,
                       risk=RiskConfig.off())
    report = backtest(EqualWeightBuyAndHold(_costs(config)), random_walk_panel, FeatureNormalizer.identity(3, 11), config)
    assert np.allclose(report.equity, report.benchmark, rtol=1e-10)
    assert report.metrics.alpha == pytest.approx(0.0, abs=1e-10)


def test_buy_and_hold_with_costs_trails_the_index_by_one_fee_and_slippage(random_walk_panel) -> None:
    config = EnvConfig(lookback=10, fee_rate=0.0025, slippage_bps=5.0, start_invested=False, risk=RiskConfig.off())
    report = backtest(EqualWeightBuyAndHold(_costs(config)), random_walk_panel, FeatureNormalizer.identity(3, 11), config)
    ratio = report.equity[-1] / report.benchmark[-1]
    assert ratio == pytest.approx((1 - 0.0025 / 1.0025) / 1.0005, rel=1e-3)
    assert report.fill_qty.size == 3  # one buy per asset, nothing after


def test_batched_windows_equal_the_same_windows_run_one_by_one(random_walk_panel) -> None:
    config = EnvConfig(lookback=10)
    normalizer = FeatureNormalizer.fit(random_walk_panel.features)
    policy = LinearPolicy(1 + 3 + 10 * 3 * 11, 3)
    starts = np.array([20, 150, 333])
    batched = backtest_windows(policy, random_walk_panel, normalizer, config, starts, horizon=100)
    for start, report in zip(starts, batched):
        alone = backtest(policy, random_walk_panel, normalizer, config, start_row=int(start), bars=100)
        # float32 policy matmuls differ in the last bits between batch shapes
        assert np.allclose(report.equity, alone.equity, rtol=1e-6)
        assert report.start_row == start


def test_momentum_holds_the_three_strongest_assets() -> None:
    steps = 400
    drift = np.array([0.004, -0.002, 0.003, 0.001, 0.002])
    close = 100 * np.exp(np.outer(np.arange(steps), drift))
    panel = make_panel(close)
    config = EnvConfig(lookback=5, fee_rate=0.0, slippage_bps=0.0)
    report = backtest(Momentum(_costs(config)), panel, FeatureNormalizer.identity(5, 11), config, start_row=200, bars=50)
    held = report.weights[0] > 0.05
    assert held.tolist() == [True, False, True, False, True]


def test_mean_reversion_holds_the_biggest_recent_losers() -> None:
    drift = np.array([0.004, -0.002, 0.003, -0.001, 0.002])
    close = 100 * np.exp(np.outer(np.arange(300), drift))
    panel = make_panel(close)
    config = EnvConfig(lookback=5, fee_rate=0.0, slippage_bps=0.0)
    report = backtest(MeanReversion(_costs(config)), panel, FeatureNormalizer.identity(5, 11), config, start_row=100, bars=10)
    assert (report.weights[0] > 0.05).tolist() == [False, True, False, True, True]


def test_sixty_forty_needs_btc_and_eth(random_walk_panel) -> None:
    config = EnvConfig(lookback=10)
    with pytest.raises(ValueError, match="needs BTC and ETH"):
        backtest(SixtyForty(_costs(config)), random_walk_panel, FeatureNormalizer.identity(3, 11), config, bars=5)
    assert [b.name for b in default_baselines(_costs(config), random_walk_panel.symbols)] == [
        "buy_and_hold", "momentum", "mean_reversion",
    ]
