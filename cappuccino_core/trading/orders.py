"""Actions to broker orders and broker orders back to fills, with the env's one action mapping.

``plan_orders`` runs ``accounting.execute_actions`` at the decision prices and turns its fills
into market orders: a sell of ``-a_i`` of a holding becomes a sell of exactly those units; a
buy becomes a buy by notional of the gross spend (fee included), which is how a broker's
notional buy and ``accounting.fill_order`` spend cash. So the same actions trade the same
units in the env, the backtester, the ``SimBroker`` and Alpaca, up to the fill price.

One difference is the broker's, not ours: a broker does not lend against sells that have not
filled, so buys are cut to the cash the account holds when the env would also spend the
proceeds of this bar's sells (recorded as a note, visible in the parity report).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import torch

from cappuccino_core.clock import ensure_utc
from cappuccino_core.data.symbols import symbol_key
from cappuccino_core.accounting import ExecutionCosts, Fills, execute_actions
from cappuccino_core.trading.broker import Order, OrderSide

# Buys may spend at most this share of the cash, so float rounding never asks for a cent more.
_CASH_GUARD = 1.0 - 1e-9


@dataclass(frozen=True)
class PlannedOrder:
    """A market order to submit: exactly one of ``qty`` (sells) and ``notional`` (buys)."""

    symbol: str
    side: OrderSide
    qty: float | None
    notional: float | None
    client_order_id: str


def client_order_id(trader_id: str, bar_time: datetime, symbol: str) -> str:
    """Return the idempotency key of the order a trader places in ``symbol`` at ``bar_time``."""
    return f"{trader_id}-{ensure_utc(bar_time):%Y%m%dT%H%M}-{symbol_key(symbol)}"


def plan_orders(
    trader_id: str,
    bar_time: datetime,
    symbols: Sequence[str],
    *,
    cash: float,
    holdings: torch.Tensor,
    actions: torch.Tensor,
    prices: torch.Tensor,
    costs: ExecutionCosts,
) -> tuple[list[PlannedOrder], list[str]]:
    """Turn one book's actions into orders; return ``(orders, notes)``.

    Args:
        trader_id: the trader (part of each client order id).
        bar_time: the decision bar (part of each client order id).
        symbols: the symbols, in action order.
        cash: cash the account holds now.
        holdings: ``[1, A]`` units held.
        actions: ``[1, A]`` actions after the risk layers.
        prices: ``[1, A]`` decision prices (the close of ``bar_time``).
        costs: fees, slippage, minimums and the cash reserve of the action mapping.
    """
    cash_t = torch.tensor([cash], dtype=torch.float64)
    fills = execute_actions(cash_t, holdings.to(torch.float64), actions.to(torch.float64), prices.to(torch.float64), costs)
    units = fills.units[0].tolist()
    spend = [n * (1.0 + costs.fee_rate) if u > 0 else 0.0 for u, n in zip(units, fills.notional[0].tolist())]
    notes: list[str] = []
    budget = cash * _CASH_GUARD
    total = sum(spend)
    if total > budget:
        scale = budget / total
        if scale < 1.0 - 1e-6:
            notes.append(f"buys cut from {total:.2f} to {budget:.2f}: the proceeds of this bar's sells "
                         "are not cash until they fill")
        spend = [s * scale for s in spend]
    orders = []
    for symbol, unit, amount in zip(symbols, units, spend):
        cid = client_order_id(trader_id, bar_time, symbol)
        if unit < 0:
            orders.append(PlannedOrder(symbol, OrderSide.SELL, -unit, None, cid))
        elif unit > 0:
            if amount < costs.min_order_notional:
                notes.append(f"buy of {symbol} dropped: {amount:.4f} is below the minimum order {costs.min_order_notional}")
                continue
            orders.append(PlannedOrder(symbol, OrderSide.BUY, None, amount, cid))
    return orders, notes


def fills_from_orders(
    orders: Sequence[Order],
    symbols: Sequence[str],
    *,
    cash: float,
    holdings: torch.Tensor,
    costs: ExecutionCosts,
) -> tuple[Fills, list[str]]:
    """Express a broker's fills in ``accounting.Fills`` form (``N = 1``) for ``update_after_fills``.

    Units and notionals are signed (positive bought). A broker that does not report fees
    (Alpaca) gets ``fee_rate`` of the filled notional, and a note says so.

    Returns:
        ``(fills, notes)``.
    """
    column = {s: i for i, s in enumerate(symbols)}
    units = torch.zeros(1, len(symbols), dtype=torch.float64)
    notional = torch.zeros(1, len(symbols), dtype=torch.float64)
    fees = 0.0
    notes = []
    for order in orders:
        if order.filled_qty <= 0 or order.symbol not in column:
            continue
        sign = 1.0 if order.side == OrderSide.BUY else -1.0
        filled = order.filled_qty * float(order.filled_avg_price or 0.0)
        units[0, column[order.symbol]] += sign * order.filled_qty
        notional[0, column[order.symbol]] += sign * filled
        if order.fee is None:
            notes.append(f"order {order.client_order_id}: the broker reports no fee; {costs.fee_rate:.4%} assumed")
            fees += filled * costs.fee_rate
        else:
            fees += order.fee
    fills = Fills(
        cash=torch.tensor([cash], dtype=torch.float64), holdings=holdings.to(torch.float64), units=units,
        notional=notional, fees=torch.tensor([fees], dtype=torch.float64),
        dropped=torch.zeros(1, len(symbols), dtype=torch.bool),
    )
    return fills, notes
