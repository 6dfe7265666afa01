"""Baseline strategies that stand beside every result, trading through the same backtester.

Each baseline turns target weights into actions with ``accounting.actions_for_target_weights``,
so it pays exactly the fees and slippage a learned policy pays. All read prices up to the
decision bar only. Rebalance periods are in days and converted with the panel's interval.

* ``EqualWeightBuyAndHold`` — buys ``1/A`` of every asset on the first step, then holds (the
  alpha reference, with fees).
* ``Momentum`` — holds the top ``k`` assets by trailing return, equal weight, rebalanced weekly.
* ``MeanReversion`` — holds the ``k`` assets that fell most over the trailing day, rebalanced daily.
* ``SixtyForty`` — 60% in BTC and ETH (30% each), 40% cash, rebalanced weekly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cappuccino_core.data.symbols import base_asset
from cappuccino_core.accounting import ExecutionCosts, actions_for_target_weights
from cappuccino_core.evaluation.backtest import PolicyContext


def _bars(days: float, context: PolicyContext) -> int:
    return max(1, round(days * 86400 / context.panel.interval.seconds))


def _to_actions(context: PolicyContext, target: torch.Tensor, costs: ExecutionCosts) -> torch.Tensor:
    return actions_for_target_weights(context.cash, context.holdings, context.close, target, costs).to(torch.float32)


def _trailing_return(context: PolicyContext, bars: int) -> torch.Tensor:
    close = torch.from_numpy(context.panel.close)
    past = (context.rows - bars).clamp(min=0)
    return close[context.rows] / close[past] - 1.0


def _top_k(scores: torch.Tensor, k: int, reserve: float) -> torch.Tensor:
    k = min(k, scores.shape[1])
    picked = torch.zeros_like(scores)
    picked.scatter_(1, scores.topk(k, dim=1).indices, 1.0)
    return picked * (1.0 - reserve) / k


@dataclass(frozen=True)
class EqualWeightBuyAndHold:
    """Buy ``1/A`` of every asset on the first step and hold."""

    costs: ExecutionCosts = ExecutionCosts()
    name: str = "buy_and_hold"

    def act(self, obs: torch.Tensor, context: PolicyContext) -> torch.Tensor:
        """Buy equal weights on step 0, do nothing afterwards."""
        n, a = context.holdings.shape
        if context.steps > 0:
            return torch.zeros(n, a)
        target = torch.full((n, a), (1.0 - self.costs.min_cash_reserve) / a, dtype=torch.float64)
        return _to_actions(context, target, self.costs)


@dataclass(frozen=True)
class Momentum:
    """Hold the top ``top_k`` assets by trailing return, equal weight, rebalanced every ``rebalance_days``."""

    costs: ExecutionCosts = ExecutionCosts()
    top_k: int = 3
    lookback_days: float = 7.0
    rebalance_days: float = 7.0
    name: str = "momentum"

    def act(self, obs: torch.Tensor, context: PolicyContext) -> torch.Tensor:
        """Rebalance into the winners on schedule, hold in between."""
        n, a = context.holdings.shape
        if context.steps % _bars(self.rebalance_days, context):
            return torch.zeros(n, a)
        scores = _trailing_return(context, _bars(self.lookback_days, context))
        return _to_actions(context, _top_k(scores, self.top_k, self.costs.min_cash_reserve), self.costs)


@dataclass(frozen=True)
class MeanReversion:
    """Hold the ``bottom_k`` assets by trailing return (the biggest losers), rebalanced every ``rebalance_days``."""

    costs: ExecutionCosts = ExecutionCosts()
    bottom_k: int = 3
    lookback_days: float = 1.0
    rebalance_days: float = 1.0
    name: str = "mean_reversion"

    def act(self, obs: torch.Tensor, context: PolicyContext) -> torch.Tensor:
        """Rebalance into the losers on schedule, hold in between."""
        n, a = context.holdings.shape
        if context.steps % _bars(self.rebalance_days, context):
            return torch.zeros(n, a)
        scores = -_trailing_return(context, _bars(self.lookback_days, context))
        return _to_actions(context, _top_k(scores, self.bottom_k, self.costs.min_cash_reserve), self.costs)


@dataclass(frozen=True)
class SixtyForty:
    """30% BTC, 30% ETH, 40% cash, rebalanced every ``rebalance_days``."""

    costs: ExecutionCosts = ExecutionCosts()
    rebalance_days: float = 7.0
    name: str = "sixty_forty"

    def act(self, obs: torch.Tensor, context: PolicyContext) -> torch.Tensor:
        """Rebalance to 30/30/40 on schedule, hold in between."""
        n, a = context.holdings.shape
        if context.steps % _bars(self.rebalance_days, context):
            return torch.zeros(n, a)
        bases = [base_asset(s) for s in context.panel.symbols]
        missing = [b for b in ("BTC", "ETH") if b not in bases]
        if missing:
            raise ValueError(f"the 60/40 baseline needs BTC and ETH; the panel has no {', '.join(missing)}")
        target = torch.zeros(n, a, dtype=torch.float64)
        target[:, bases.index("BTC")] = 0.3
        target[:, bases.index("ETH")] = 0.3
        return _to_actions(context, target, self.costs)


def default_baselines(costs: ExecutionCosts, symbols: tuple[str, ...]) -> list:
    """Return the baselines that apply to ``symbols`` (60/40 only when BTC and ETH are traded)."""
    baselines: list = [EqualWeightBuyAndHold(costs), Momentum(costs), MeanReversion(costs)]
    if {"BTC", "ETH"} <= {base_asset(s) for s in symbols}:
        baselines.append(SixtyForty(costs))
    return baselines
