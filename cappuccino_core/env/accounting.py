"""Order execution, fees and portfolio value: the one set of functions every place that trades uses.

The environment, the backtester and the simulated broker all call these, so a fill costs
the same everywhere. Functions are batched: leading dimension ``N`` (episodes or accounts),
then ``A`` assets. Quantities are asset units; cash and notionals are quote currency.

Action mapping (``[-1, 1]^A`` to orders, sells first):
    * ``a_i < 0`` sells the fraction ``-a_i`` of the holding of asset ``i``;
    * ``a_i > 0`` spends the fraction ``a_i / max(1, sum_j max(a_j, 0))`` of the cash
      available after the sells, where available cash keeps ``min_cash_reserve`` of equity;
    * an order below ``min_order_notional`` is dropped.
Fills: buys at ``price * (1 + slippage)``, sells at ``price * (1 - slippage)``; the fee is
``fee_rate`` of the filled notional, paid in cash.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ACTION_MAPPING = {
    "name": "fractional-sells-first-v1",
    "sell": "a<0 sells -a of the holding",
    "buy": "a>0 spends a/max(1,sum(a+)) of cash above the reserve",
    "execution": "next bar open with slippage",
}


@dataclass(frozen=True)
class ExecutionCosts:
    """Costs and limits applied to every fill."""

    fee_rate: float = 0.0025
    slippage_bps: float = 5.0
    min_order_notional: float = 1.0
    min_cash_reserve: float = 0.0

    @property
    def slippage(self) -> float:
        """Slippage as a fraction of price."""
        return self.slippage_bps / 10_000.0


@dataclass(frozen=True)
class Fills:
    """The outcome of one batched rebalance.

    Attributes:
        cash: ``[N]`` cash after the fills.
        holdings: ``[N, A]`` units after the fills.
        units: ``[N, A]`` signed units traded (positive bought, negative sold).
        notional: ``[N, A]`` signed filled notional in quote currency (fees excluded).
        fees: ``[N]`` fees paid.
        dropped: ``[N, A]`` bool, an order was requested but fell below the minimum notional.
    """

    cash: torch.Tensor
    holdings: torch.Tensor
    units: torch.Tensor
    notional: torch.Tensor
    fees: torch.Tensor
    dropped: torch.Tensor


def portfolio_value(cash: torch.Tensor, holdings: torch.Tensor, prices: torch.Tensor) -> torch.Tensor:
    """Return ``cash + sum(holdings * prices)`` per row."""
    return cash + (holdings * prices).sum(dim=-1)


def execute_actions(
    cash: torch.Tensor,
    holdings: torch.Tensor,
    actions: torch.Tensor,
    prices: torch.Tensor,
    costs: ExecutionCosts,
) -> Fills:
    """Turn actions into fills at ``prices`` (sells first, then buys) and return the new book.

    Args:
        cash: ``[N]`` cash before trading.
        holdings: ``[N, A]`` units held before trading (never negative).
        actions: ``[N, A]`` in ``[-1, 1]`` (clipped here).
        prices: ``[N, A]`` reference execution prices (the next bar's open).
        costs: fees, slippage and minimums.
    """
    actions = actions.to(cash.dtype).clamp(-1.0, 1.0)
    sell_price = prices * (1.0 - costs.slippage)
    buy_price = prices * (1.0 + costs.slippage)

    # Sells: a fraction of each holding.
    sell_units = (-actions).clamp(min=0.0) * holdings
    sell_notional = sell_units * sell_price
    sell_small = (sell_units > 0) & (sell_notional < costs.min_order_notional)
    sell_units = torch.where(sell_small, torch.zeros_like(sell_units), sell_units)
    sell_notional = sell_units * sell_price
    sell_fees = sell_notional * costs.fee_rate
    cash = cash + (sell_notional - sell_fees).sum(dim=-1)
    holdings = holdings - sell_units

    # Buys: shares of the cash above the reserve (reserve measured on equity at fill prices).
    equity = cash + (holdings * prices).sum(dim=-1)
    available = (cash - costs.min_cash_reserve * equity).clamp(min=0.0)
    wants = actions.clamp(min=0.0)
    share = wants / wants.sum(dim=-1, keepdim=True).clamp(min=1.0)
    spend = share * available.unsqueeze(-1)  # gross, fee included
    buy_small = (spend > 0) & (spend < costs.min_order_notional)
    spend = torch.where(buy_small, torch.zeros_like(spend), spend)
    buy_fees = spend * costs.fee_rate / (1.0 + costs.fee_rate)
    buy_notional = spend - buy_fees
    buy_units = buy_notional / buy_price
    cash = cash - spend.sum(dim=-1)
    holdings = holdings + buy_units

    return Fills(
        cash=cash,
        holdings=holdings,
        units=buy_units - sell_units,
        notional=buy_notional - sell_notional,
        fees=sell_fees.sum(dim=-1) + buy_fees.sum(dim=-1),
        dropped=sell_small | buy_small,
    )


def actions_for_target_weights(
    cash: torch.Tensor,
    holdings: torch.Tensor,
    prices: torch.Tensor,
    target_weights: torch.Tensor,
    costs: ExecutionCosts,
) -> torch.Tensor:
    """Return the actions that move a book towards ``target_weights`` (fractions of equity).

    Used by rule-based baselines so they trade through exactly the same mapping and costs
    as a learned policy. Fees make the result approximate (the book lands slightly below
    target), never above the cash available.
    """
    value = portfolio_value(cash, holdings, prices).unsqueeze(-1)
    current = holdings * prices / value.clamp(min=1e-12)
    target = target_weights.to(cash.dtype).clamp(min=0.0)
    sell = ((current - target).clamp(min=0.0) / current.clamp(min=1e-12)).clamp(max=1.0)
    sell = torch.where(current > 0, sell, torch.zeros_like(sell))
    cash_after = cash.unsqueeze(-1) + ((current * sell) * value).sum(dim=-1, keepdim=True)
    available = (cash_after - costs.min_cash_reserve * value).clamp(min=1e-12)
    buy = ((target - current).clamp(min=0.0) * value / available).clamp(max=1.0)
    return torch.where(sell > 0, -sell, buy)
