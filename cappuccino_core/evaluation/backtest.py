"""The backtester: a policy trades fixed windows of a panel through the training environment.

It does not re-implement anything: it runs ``PortfolioEnv`` in evaluation mode (fixed starts,
no auto-reset), so fills, fees, timing, the risk layers (``EnvConfig.risk``) and the benchmark
are exactly the training ones. Several windows run as one batch. Deterministic: the same
policy, panel and windows give the same report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.env.portfolio_env import PortfolioEnv
from cappuccino_core.evaluation.metrics import PerformanceReport, compute_performance, round_trips_from_fills
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.risk.layers import RiskRule


@dataclass(frozen=True)
class PolicyContext:
    """What a policy may see besides its observation; everything is at the decision bar or before.

    Attributes:
        panel: the panel being traded (rule-based policies read ``close[:row + 1]`` only).
        rows: ``[N]`` decision rows.
        steps: ``[N]`` steps taken in the episode so far.
        cash: ``[N]`` cash.
        holdings: ``[N, A]`` units held.
        close: ``[N, A]`` close prices at the decision rows.
    """

    panel: MarketPanel
    rows: torch.Tensor
    steps: int
    cash: torch.Tensor
    holdings: torch.Tensor
    close: torch.Tensor


class Policy(Protocol):
    """Maps observations to actions in ``[-1, 1]^A``. Contract: deterministic, no look-ahead."""

    name: str

    def act(self, obs: torch.Tensor, context: PolicyContext) -> torch.Tensor:
        """Return actions ``[N, A]`` for observations ``[N, obs_dim]``."""
        ...


@dataclass(frozen=True, eq=False)
class EvalReport:
    """One window traded by one policy.

    Attributes:
        policy: the policy's name.
        metrics: every performance number (returns net of fees; alpha against the frictionless
            equal-weight buy-and-hold index of the window's assets from the window's first bar).
        timestamps: ``[H + 1]`` bar times (ns) of the equity curve: the decision bar, then each step's bar.
        equity: ``[H + 1]`` portfolio value relative to the start (1.0 at the start).
        benchmark: ``[H + 1]`` equal-weight buy-and-hold index (1.0 at the start).
        returns, benchmark_returns: ``[H]`` fractional per-step returns.
        actions: ``[H, A]`` actions the policy took (for parity checks).
        weights: ``[H, A]`` asset weights after each step.
        fill_step, fill_asset, fill_qty, fill_price, fill_fee: one entry per fill.
        executed_actions: ``[H, A]`` actions filled, after the risk layers (equal to
            ``actions`` when they are off).
        risk_counts: triggers of each risk rule over the window (rule name -> count).
    """

    policy: str
    metrics: PerformanceReport
    start_row: int
    timestamps: np.ndarray
    equity: np.ndarray
    benchmark: np.ndarray
    returns: np.ndarray
    benchmark_returns: np.ndarray
    actions: np.ndarray
    weights: np.ndarray
    fill_step: np.ndarray
    fill_asset: np.ndarray
    fill_qty: np.ndarray
    fill_price: np.ndarray
    fill_fee: np.ndarray
    executed_actions: np.ndarray | None = None
    risk_counts: dict[str, int] = field(default_factory=dict)


def backtest(
    policy: Policy,
    panel: MarketPanel,
    normalizer: FeatureNormalizer,
    config: EnvConfig,
    *,
    start_row: int | None = None,
    bars: int | None = None,
) -> EvalReport:
    """Trade one window: from ``start_row`` (default: the first row with a full lookback) for ``bars`` steps.

    Raises:
        ValueError: the window does not fit inside one segment of the panel.
    """
    start = config.lookback - 1 if start_row is None else start_row
    horizon = panel.num_bars - 1 - start if bars is None else bars
    return backtest_windows(policy, panel, normalizer, config, np.array([start]), horizon)[0]


def backtest_windows(
    policy: Policy,
    panel: MarketPanel,
    normalizer: FeatureNormalizer,
    config: EnvConfig,
    starts: np.ndarray,
    horizon: int,
) -> list[EvalReport]:
    """Trade several windows of ``horizon`` steps at once, one episode per start row."""
    if horizon < 1:
        raise ValueError(f"a backtest needs at least one step, got horizon={horizon}")
    run_config = EnvConfig.from_dict({**config.to_dict(), "episode_bars": horizon, "num_envs": len(starts)})
    env = PortfolioEnv(panel, run_config, normalizer, starts=np.asarray(starts))
    n, a = env.num_envs, env.action_dim
    obs = env.reset()
    value = np.empty((horizon + 1, n))
    bench = np.empty((horizon + 1, n))
    actions = np.empty((horizon, n, a))
    executed = np.empty((horizon, n, a))
    weights = np.empty((horizon, n, a))
    units = np.empty((horizon, n, a))
    notional = np.empty((horizon, n, a))
    pre_weights = np.empty((horizon, n, a))
    post_weights = np.empty((horizon, n, a))
    value[0] = config.initial_cash
    bench[0] = 1.0
    with torch.no_grad():
        for step in range(horizon):
            cash, holdings = env.book()
            context = PolicyContext(panel, env.rows, step, cash, holdings, env.close_prices())
            action = policy.act(obs, context).clamp(-1.0, 1.0)
            obs = env.step(action).obs
            record = env.last_record
            fill_prices = torch.from_numpy(panel.open[record.row.numpy()])
            pre_weights[step] = _weights(cash, holdings, fill_prices)
            post_weights[step] = _weights(record.fills.cash, record.fills.holdings, fill_prices)
            actions[step] = action.numpy()
            executed[step] = record.actions.numpy()
            value[step + 1] = record.value_after.numpy()
            bench[step + 1] = bench[step] * (1.0 + record.benchmark_return.numpy())
            weights[step] = record.weights_after.numpy()
            units[step] = record.fills.units.numpy()
            notional[step] = record.fills.notional.numpy()
    starts = np.asarray(starts)
    counts = {str(rule): env.risk_state.count(rule).tolist() for rule in RiskRule}
    return [
        _report(
            policy.name, panel, config, int(starts[i]), value[:, i], bench[:, i], actions[:, i],
            weights[:, i], pre_weights[:, i], post_weights[:, i], units[:, i], notional[:, i],
            executed[:, i], {rule: int(c[i]) for rule, c in counts.items()},
        )
        for i in range(n)
    ]


def _weights(cash: torch.Tensor, holdings: torch.Tensor, prices: torch.Tensor) -> np.ndarray:
    """Asset weights of a book valued at ``prices`` (turnover and exposure are measured at the fill)."""
    held = holdings * prices
    return (held / (cash + held.sum(dim=-1)).unsqueeze(-1)).numpy()


def _report(
    name: str,
    panel: MarketPanel,
    config: EnvConfig,
    start: int,
    value: np.ndarray,
    bench: np.ndarray,
    actions: np.ndarray,
    weights: np.ndarray,
    pre_weights: np.ndarray,
    post_weights: np.ndarray,
    units: np.ndarray,
    notional: np.ndarray,
    executed: np.ndarray,
    risk_counts: dict[str, int],
) -> EvalReport:
    horizon = actions.shape[0]
    returns = value[1:] / value[:-1] - 1.0
    bench_returns = bench[1:] / bench[:-1] - 1.0
    step_idx, asset_idx = np.nonzero(units)
    qty = units[step_idx, asset_idx]
    price = np.abs(notional[step_idx, asset_idx] / qty)
    fee = np.abs(notional[step_idx, asset_idx]) * config.fee_rate
    trips = round_trips_from_fills(qty, price, fee, asset=asset_idx.tolist()) if qty.size else []
    metrics = compute_performance(
        returns, bench_returns, panel.interval, weights=post_weights, weights_before_trade=pre_weights, round_trips=trips
    )
    return EvalReport(
        policy=name,
        metrics=metrics,
        start_row=start,
        timestamps=panel.timestamps[start : start + horizon + 1].copy(),
        equity=value / value[0],
        benchmark=bench,
        returns=returns,
        benchmark_returns=bench_returns,
        actions=actions,
        weights=weights,
        fill_step=step_idx,
        fill_asset=asset_idx,
        fill_qty=qty,
        fill_price=price,
        fill_fee=fee,
        executed_actions=executed,
        risk_counts=risk_counts,
    )
