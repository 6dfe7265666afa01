"""Risk layers: one implementation for the training env, the backtester and the live trader.

Everything is batched over ``N`` books (the env's episodes; the trader uses ``N = 1``) and
``A`` assets, in the action mapping of ``cappuccino_core.accounting`` (``a < 0`` sells
``-a`` of the holding, ``a > 0`` spends a share of the cash available after the sells).

Call protocol, once per bar (decision at the close of bar ``t``, fills at the open of ``t + 1``)::

    decision = apply_risk(policy_actions, state, cash=cash, holdings=holdings,
                          prices=close_t, config=risk_config)
    fills = execute_actions(cash, holdings, decision.actions, open_t1, costs)
    state = update_after_fills(decision.state, fills=fills, prices_after=close_t1,
                               cash=fills.cash, holdings=fills.holdings, config=risk_config)
    state = state.reset_rows(episodes_restarted)       # env only

``decision.triggers`` holds one boolean mask per enabled rule (cheap to count);
``decision.events()`` builds ``RiskEvent`` objects only when asked (the trader's journal).

Rules, in the order ``apply_risk`` applies them (each can only lower an action, i.e. sell
more or buy less, except the dampening and the conviction filter, which act on the policy's
own actions before any rule forces a sell; forced sells are never dampened or filtered):

1. Dampening: the policy's actions (clipped to ``[-1, 1]``) times ``action_dampening``.
2. Conviction filter (off by default): policy buys scoring below ``conviction_threshold`` are
   dropped and counted (``risk.conviction`` defines the score). Sells are never filtered.
3. Portfolio trailing stop: in a cycle, ``equity <= cycle peak * (1 - portfolio_trailing_stop)``
   sells everything (``-1`` on every asset, no buys) and ends the cycle.
4. Move-to-cash (off by default): ``equity <= book peak * (1 - move_to_cash_threshold)`` sells
   everything and blocks buys for ``cooldown_bars`` decisions counting this one; the book peak
   restarts from the current equity. The book peak is the highest equity since the book was
   reset or last moved to cash, so it spans cycles (repeated small stop-outs add up to it).
5. Profit-taking: in a cycle where it has not fired yet and no rule above closed the book,
   ``equity >= cycle start equity * (1 + profit_take_threshold)`` sells at least
   ``profit_take_fraction`` of every position (``a = min(a, -fraction)``), once per cycle;
   buys of assets the book does not hold are left to the rules below.
6. Stop-loss: ``price <= entry * (1 - stop_loss)`` sells that position (``-1``); entry is the
   volume-weighted average fill price (slippage in, fees out).
7. Trailing stop (off by default): ``price <= high-water mark * (1 - trailing_stop)`` sells
   that position; the mark is the highest fill or mark price since the position opened.
8. Trim: a position above ``max_position_fraction`` of equity is sold down to it.
9. Cooldown: while move-to-cash's cooldown runs, buys are set to 0 (counted when any was asked).
10. Buy cap: each buy is reduced so its position lands at ``max_position_fraction`` of equity,
    using the cash the sells above free (so proceeds of forced sells cannot overfill a position).
Position rules skip books that step 3 or 4 is closing. Positions worth less than
``dust_notional`` count as flat for every rule.

Thresholds trigger exactly at the threshold: stops and move-to-cash at ``<=``, profit-taking
at ``>=`` (with a relative tolerance of 1e-12 for rounding); trim and cap act only strictly
above the cap (a position exactly at it is left alone). All prices and equities are measured
at the decision prices: the book is valued at the close it decides on.

Cycle: a cycle starts at the fills that take a flat book (no position worth ``dust_notional``)
to invested; its start equity is the equity just before those fills (cash plus any dust). It
ends when fills leave the book flat, whoever sold (the policy, a stop, move-to-cash), and
immediately when the portfolio trailing stop or move-to-cash fires. Profit-taking is armed
once per cycle; the cycle's equity peak starts at its start equity.

Cooldown arithmetic: move-to-cash firing at decision ``t`` with ``cooldown_bars = C`` blocks
buys at decisions ``t .. t + C - 1``; the first buy can be decided at ``t + C`` (C bars later).
``cooldown_bars_for(24, "1h") == 24``; ``C = 0`` and ``C = 1`` both block only decision ``t``.
The clock ticks in ``update_after_fills``, i.e. once per executed bar.
"""

from __future__ import annotations

from cappuccino_core.risk.config import THRESHOLD_TOLERANCE, RiskConfig, cooldown_bars_for
from cappuccino_core.risk.events import APPLICATION_ORDER, RiskDecision, RiskEvent
from cappuccino_core.risk.rules import apply_risk
from cappuccino_core.risk.update import update_after_fills
from cappuccino_core.risk.state import ASSET_RULES, BOOK_RULES, RiskRule, RiskState

__all__ = [
    "APPLICATION_ORDER",
    "ASSET_RULES",
    "BOOK_RULES",
    "THRESHOLD_TOLERANCE",
    "RiskConfig",
    "RiskDecision",
    "RiskEvent",
    "RiskRule",
    "RiskState",
    "apply_risk",
    "cooldown_bars_for",
    "update_after_fills",
]
