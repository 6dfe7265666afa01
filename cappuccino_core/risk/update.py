"""After the fills: book entry prices, high-water marks, equity peaks, cycles and the cooldown clock."""

from __future__ import annotations

import torch

from cappuccino_core.accounting import Fills
from cappuccino_core.risk.config import RiskConfig
from cappuccino_core.risk.levels import check_prices, check_shape, levels
from cappuccino_core.risk.state import RiskState


def update_after_fills(
    state: RiskState,
    *,
    fills: Fills,
    prices_after: torch.Tensor,
    cash: torch.Tensor,
    holdings: torch.Tensor,
    config: RiskConfig,
    validate: bool = True,
) -> RiskState:
    """Book one bar's fills into the risk state and tick the cooldown clock.

    Entry prices become the volume-weighted average fill price on buys, stay on sells and
    clear when a position closes. A cycle starts when the book goes from flat to invested
    (start equity = equity just before these fills) and ends when the book is flat.

    Args:
        state: ``RiskDecision.state`` of the decision these fills executed.
        fills: the fills (``accounting.execute_actions``, or a broker's report in that shape).
        prices_after: ``[N, A]`` mark prices after the fills (the env: the close of the fill bar).
        cash: ``[N]`` cash after the fills.
        holdings: ``[N, A]`` units after the fills.
        config: the rules and thresholds.
        validate: check that ``prices_after`` is positive and finite (one sync).
    """
    n, a = state.num_books, state.num_assets
    check_shape("cash", cash, (n,))
    check_shape("holdings", holdings, (n, a))
    check_shape("prices_after", prices_after, (n, a))
    check_shape("fills.units", fills.units, (n, a))
    if validate:
        check_prices("prices_after", prices_after)
    k = levels(config, cash.dtype, cash.device)
    units = fills.units
    is_open = holdings > k.zero
    # Average cost: a buy adds its filled notional (fees excluded) to the units already held.
    units_before = holdings - units
    averaged = (state.entry_price * units_before + fills.notional) / holdings
    entry = torch.where(units > k.zero, averaged, state.entry_price)
    entry = torch.where(is_open, entry, k.zero)
    high_water = state.high_water
    if config.trailing_stop is not None:
        marked = torch.maximum(high_water, torch.maximum(entry, prices_after))
        high_water = torch.where(is_open, marked, k.zero)

    value = holdings * prices_after
    equity = cash + value.sum(dim=-1)
    invested = (value >= k.dust).any(dim=-1) if config.dust_notional > 0 else is_open.any(dim=-1)
    starts = invested & ~state.in_cycle
    cycle_start, peak = state.cycle_start_equity, state.equity_peak
    if bool(starts.any()):
        # Equity just before the opening fills: the cash they used plus anything already held.
        before = cash + fills.notional.sum(dim=-1) + fills.fees + (units_before * prices_after).sum(dim=-1)
        cycle_start = torch.where(starts, before, cycle_start)
        peak = torch.where(starts, before, peak)
    book_peak = state.book_peak
    if config.move_to_cash_threshold is not None or config.conviction_threshold is not None:
        book_peak = torch.maximum(book_peak, equity)
    cooldown = state.cooldown
    if config.move_to_cash_threshold is not None:
        cooldown = (cooldown - 1).clamp_min(0)
    return RiskState(
        entry_price=entry,
        high_water=high_water,
        equity=equity,
        equity_peak=torch.maximum(peak, equity),
        book_peak=book_peak,
        cycle_start_equity=cycle_start,
        in_cycle=invested,
        profit_taken=state.profit_taken & invested,
        cooldown=cooldown,
        last_price=state.last_price,
        return_fast=state.return_fast,
        variance_fast=state.variance_fast,
        variance_slow=state.variance_slow,
        book_counts=state.book_counts,
        asset_counts=state.asset_counts,
    )
