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


@dataclass(frozen=True)
class OrderFill:
    """One market order filled at a reference price (what a broker's ledger books).

    Attributes:
        units: asset units traded (positive for buys and sells alike).
        price: fill price: the reference price with slippage applied against the trader.
        notional: filled notional in quote currency (``units * price``), fees excluded.
        fee: fee paid in cash, ``fee_rate`` of ``notional``.
        cash_change: signed change in cash: ``-(notional + fee)`` for a buy, ``notional - fee``
            for a sell.
    """

    units: float
    price: float
    notional: float
    fee: float
    cash_change: float


def fill_order(
    side: str,
    price: float,
    costs: ExecutionCosts,
    *,
    quantity: float | None = None,
    notional: float | None = None,
) -> OrderFill:
    """Fill one market order at ``price`` with the same formulas as ``execute_actions``.

    Exactly one of ``quantity`` and ``notional`` is given. A buy by notional spends exactly
    ``notional`` of cash, fee included (``execute_actions``'s "spend"); a sell by notional
    sells ``notional`` worth at the fill price and receives it less the fee. Minimums are not
    applied here: the caller decides what to do with a small order.

    Args:
        side: ``"buy"`` or ``"sell"``.
        price: reference execution price (the next bar's open), positive.
        costs: fees and slippage.
        quantity: asset units to trade.
        notional: quote-currency amount (gross spend for a buy, gross proceeds for a sell).

    Raises:
        ValueError: an unknown side, a non-positive price, or not exactly one amount.
    """
    if side not in ("buy", "sell"):
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
    if not price > 0:
        raise ValueError(f"price must be positive, got {price!r}")
    if (quantity is None) == (notional is None):
        raise ValueError("give exactly one of quantity and notional")
    if side == "buy":
        fill_price = price * (1.0 + costs.slippage)
        if notional is not None:  # a gross spend, as in execute_actions: the fee comes out of it
            fee = notional * costs.fee_rate / (1.0 + costs.fee_rate)
            filled = notional - fee
            return OrderFill(filled / fill_price, fill_price, filled, fee, -notional)
        assert quantity is not None
        filled = quantity * fill_price
        fee = filled * costs.fee_rate
        return OrderFill(quantity, fill_price, filled, fee, -(filled + fee))
    fill_price = price * (1.0 - costs.slippage)
    units = quantity if quantity is not None else notional / fill_price  # type: ignore[operator]
    filled = units * fill_price
    fee = filled * costs.fee_rate
    return OrderFill(units, fill_price, filled, fee, filled - fee)
