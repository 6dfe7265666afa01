"""``apply_risk``: the policy's actions through every risk rule, as batched tensor code.

See ``cappuccino_core.risk`` for the rules, their order and the definition of a cycle.
Each rule is a few vectorised operations over ``[N]`` and ``[N, A]`` tensors; a rule that is
off costs nothing, and no Python loop runs over books or assets. There is deliberately no
"did anything fire?" shortcut: with hundreds of books some book fires on almost every bar,
and the test would cost more than it saves.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from cappuccino_core.risk.config import RiskConfig
from cappuccino_core.risk.conviction import conviction_scores, update_return_stats
from cappuccino_core.risk.events import DecisionMeasures, RiskDecision
from cappuccino_core.risk.levels import Levels, check_decision_inputs, levels
from cappuccino_core.risk.state import ASSET_RULES, BOOK_RULES, RiskRule, RiskState


def apply_risk(
    actions: torch.Tensor,
    state: RiskState,
    *,
    cash: torch.Tensor,
    holdings: torch.Tensor,
    prices: torch.Tensor,
    config: RiskConfig,
    validate: bool = True,
) -> RiskDecision:
    """Turn the policy's actions into the actions to execute, rule by rule, at the decision prices.

    Order: dampening and the conviction filter on the policy's own actions; then portfolio
    protection (trailing stop, move-to-cash, profit-taking); then position rules (stop-loss,
    trailing stop, trim, cooldown block, buy cap). Forced sells are never dampened or filtered.

    Args:
        actions: ``[N, A]`` the policy's actions in ``[-1, 1]`` (clipped here), ``accounting`` mapping.
        state: the risk state after the previous bar's ``update_after_fills``.
        cash: ``[N]`` cash before trading.
        holdings: ``[N, A]`` units held before trading.
        prices: ``[N, A]`` decision prices (the close of the decision bar).
        config: the rules and thresholds.
        validate: check that prices are positive and finite and actions finite (one sync);
            shapes are always checked. The env may pass ``False`` for prices from a checked panel.

    Returns:
        The actions to execute, the state to pass to ``update_after_fills``, and the trigger masks.
    """
    check_decision_inputs(actions, state, cash, holdings, prices, values=validate)
    k = levels(config, cash.dtype, cash.device)
    act = actions.to(cash.dtype).clamp(-1.0, 1.0)
    if config.action_dampening != 1.0:
        act = act * k.dampening
    value = holdings * prices
    equity = cash + value.sum(dim=-1)
    held = value >= k.dust if config.dust_notional > 0 else holdings > k.zero
    peak = torch.maximum(state.equity_peak, equity)
    book_peak = state.book_peak
    if config.move_to_cash_threshold is not None or config.conviction_threshold is not None:
        book_peak = torch.maximum(book_peak, equity)
    triggers: dict[RiskRule, torch.Tensor] = {}

    # 1-2. The policy's own orders: dampened above; the conviction filter drops weak buys.
    stats = (state.last_price, state.return_fast, state.variance_fast, state.variance_slow)
    score = None
    if config.conviction_threshold is not None:
        stats = update_return_stats(prices, *stats, config)
        score = conviction_scores(
            act, cash=cash, equity=equity, book_peak=book_peak, return_fast=stats[1],
            variance_fast=stats[2], variance_slow=stats[3], config=config,
        )
        weak = triggers[RiskRule.CONVICTION] = (act > k.zero) & (score < config.conviction_threshold)
        act = torch.where(weak, k.zero, act)

    # 3-5. Portfolio protection; ``active`` = positions the position rules still look at.
    closing = _closing_books(state, equity=equity, peak=peak, book_peak=book_peak, config=config, k=k,
                             triggers=triggers)
    active, open_books = held, None
    if closing is not None:
        act = torch.where(closing.unsqueeze(1), k.neg_one, act)
        open_books = ~closing
        active = held & open_books.unsqueeze(1)
    taking = None
    if config.profit_take_threshold is not None:
        armed = state.in_cycle & ~state.profit_taken
        if open_books is not None:  # a book being closed does not also take profit
            armed = armed & open_books
        taking = triggers[RiskRule.PROFIT_TAKE] = armed & (equity >= state.cycle_start_equity * k.profit_take)
        act = torch.where(taking.unsqueeze(1) & held, torch.minimum(act, k.neg_profit_fraction), act)

    # 6-10. Position rules.
    high_water = state.high_water
    if config.trailing_stop is not None:
        high_water = torch.where(high_water > k.zero, torch.maximum(high_water, prices), high_water)
    act = _stops(act, state, active=active, prices=prices, high_water=high_water, config=config, k=k,
                 triggers=triggers)
    spend = None
    if config.max_position_fraction is not None:
        cap_value = (equity * k.cap).unsqueeze(1)  # [N, 1] the largest position value allowed
        act = _trim(act, active=active, value=value, cap_value=cap_value, k=k, triggers=triggers)
    if config.move_to_cash_threshold is not None:
        blocked = (state.cooldown > 0).unsqueeze(1) & (act > k.zero)
        act = torch.where(blocked, k.zero, act)
        triggers[RiskRule.COOLDOWN] = blocked.any(dim=-1)
    if config.max_position_fraction is not None:
        act, spend = _cap_buys(act, cash=cash, value=value, cap_value=cap_value, triggers=triggers)

    moved = triggers.get(RiskRule.MOVE_TO_CASH)
    new_state = RiskState(
        entry_price=state.entry_price,
        high_water=high_water,
        equity=equity,
        equity_peak=peak,
        book_peak=book_peak if moved is None else torch.where(moved, equity, book_peak),
        cycle_start_equity=state.cycle_start_equity,
        in_cycle=state.in_cycle if open_books is None else state.in_cycle & open_books,
        profit_taken=_profit_taken(state.profit_taken, taking, open_books),
        cooldown=state.cooldown if moved is None else torch.where(moved, k.cooldown, state.cooldown),
        last_price=stats[0],
        return_fast=stats[1],
        variance_fast=stats[2],
        variance_slow=stats[3],
        **_counted(state, triggers),
    )
    measures = DecisionMeasures(
        equity=equity, equity_peak=peak, book_peak=book_peak, cycle_start_equity=state.cycle_start_equity,
        cooldown=state.cooldown, prices=prices, entry_price=state.entry_price, high_water=high_water,
        value=value, spend=spend, score=score,
    )
    return RiskDecision(actions=act, state=new_state, triggers=triggers, config=config, measures=measures)


def _closing_books(
    state: RiskState,
    *,
    equity: torch.Tensor,
    peak: torch.Tensor,
    book_peak: torch.Tensor,
    config: RiskConfig,
    k: Levels,
    triggers: dict[RiskRule, torch.Tensor],
) -> torch.Tensor | None:
    """Return ``[N]`` books to sell out of: portfolio trailing stop or move-to-cash (``None`` if both off)."""
    closing: torch.Tensor | None = None
    if config.portfolio_trailing_stop is not None:
        closing = triggers[RiskRule.PORTFOLIO_TRAILING_STOP] = state.in_cycle & (equity <= peak * k.portfolio_stop)
    if config.move_to_cash_threshold is not None:
        moving = triggers[RiskRule.MOVE_TO_CASH] = equity <= book_peak * k.move_to_cash
        closing = moving if closing is None else closing | moving
    return closing


def _stops(
    act: torch.Tensor,
    state: RiskState,
    *,
    active: torch.Tensor,
    prices: torch.Tensor,
    high_water: torch.Tensor,
    config: RiskConfig,
    k: Levels,
    triggers: dict[RiskRule, torch.Tensor],
) -> torch.Tensor:
    """Stop-loss and trailing stop: sell the whole position (``-1``) at or below its level."""
    stopped: torch.Tensor | None = None
    if config.stop_loss is not None:
        stopped = triggers[RiskRule.STOP_LOSS] = active & (prices <= state.entry_price * k.stop_loss)
    if config.trailing_stop is not None:
        trailing = triggers[RiskRule.TRAILING_STOP] = active & (prices <= high_water * k.trailing_stop)
        stopped = trailing if stopped is None else stopped | trailing
    return act if stopped is None else torch.where(stopped, k.neg_one, act)


def _trim(
    act: torch.Tensor,
    *,
    active: torch.Tensor,
    value: torch.Tensor,
    cap_value: torch.Tensor,
    k: Levels,
    triggers: dict[RiskRule, torch.Tensor],
) -> torch.Tensor:
    """Sell positions above the cap down to it: ``a = min(a, cap_value / value - 1)``."""
    trim_action = cap_value / value - 1.0  # -inf..0 above the cap; positive (unused) below it
    trimmed = active & (value > cap_value * k.above_cap) & (act > trim_action)
    triggers[RiskRule.POSITION_TRIM] = trimmed
    return torch.where(trimmed, trim_action, act)


def _cap_buys(
    act: torch.Tensor,
    *,
    cash: torch.Tensor,
    value: torch.Tensor,
    cap_value: torch.Tensor,
    triggers: dict[RiskRule, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cap every buy so its position lands at most at ``cap_value``; return ``(actions, spend)``.

    Mirrors ``accounting.execute_actions``: buys share the cash left after this step's sells,
    ``a_i / max(1, sum(a+))`` each, so the proceeds of every sell decided above count. Measured
    at the decision prices before costs; fees, slippage and the cash reserve only lower the
    landed weight. A capped row's buys are re-expressed as plain fractions of that cash, so
    capping one buy does not enlarge another; rows without a capped buy keep their actions.
    """
    buys = act.relu()
    sells = buys - act
    cash_after_sells = (cash + (sells * value).sum(dim=-1)).unsqueeze(1)
    spend = buys * (cash_after_sells / buys.sum(dim=-1, keepdim=True).clamp_min(1.0))
    room = (cap_value - value).relu()
    capped = triggers[RiskRule.POSITION_CAP] = spend > room
    # 0 / 0 in a row without cash cannot leak: such a row has no capped buy and keeps ``act``.
    fractions = torch.minimum(spend, room) / cash_after_sells - sells
    return torch.where(capped.any(dim=-1, keepdim=True), fractions, act), spend


def _profit_taken(
    profit_taken: torch.Tensor, taking: torch.Tensor | None, open_books: torch.Tensor | None
) -> torch.Tensor:
    """Profit-taking is spent for the cycle once it fires; closing the book ends the cycle."""
    if taking is not None:
        profit_taken = profit_taken | taking
    return profit_taken if open_books is None else profit_taken & open_books


def _counted(state: RiskState, triggers: dict[RiskRule, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add this decision's trigger masks to the per-book counters."""
    counts = {"book_counts": state.book_counts, "asset_counts": state.asset_counts}
    for name, rules in (("book_counts", BOOK_RULES), ("asset_counts", ASSET_RULES)):
        enabled = tuple(rule for rule in rules if rule in triggers)
        if enabled:
            index = _rule_index(tuple(rules.index(rule) for rule in enabled), state.book_counts.device)
            stacked = torch.stack([triggers[rule] for rule in enabled], dim=1).to(torch.int64)
            counts[name] = counts[name].index_add(1, index, stacked)
    return counts


@lru_cache(maxsize=64)
def _rule_index(positions: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor(positions, dtype=torch.int64, device=device)
