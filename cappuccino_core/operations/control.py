"""The owner's hands on the switch: ``cappuccino kill`` and ``cappuccino resume``.

``kill_trading`` halts every trader (the durable flag in the project database, checked
before each step), then cancels open orders and, unless told not to, closes every position
on every account Cappuccino trades:

* ``live`` — the Alpaca live account, whenever live keys are set (enabled or not);
* ``production`` — the paper account (Alpaca paper with keys, else the production model's
  SimBroker account);
* ``sandbox:<trader id>`` — each sandbox run not ended yet.

SimBroker closing orders fill at the next bar the trading flows give the account (they keep
feeding bars while halted; the traders skip). An emergency alert records the kill, a
warning alert the resume.
"""

from __future__ import annotations

from datetime import datetime

from cappuccino_core.accounting import ExecutionCosts
from cappuccino_core.lifecycle.alerts import AlertLevel
from cappuccino_core.lifecycle.kill_switch import HaltState, KillIncomplete, KillReport, kill
from cappuccino_core.operations.production import production_trader_id
from cappuccino_core.operations.site import LifecycleSite
from cappuccino_core.lifecycle.stages import Role
from cappuccino_core.redaction import scrub
from cappuccino_core.trading.broker import Broker
from cappuccino_core.trading.sim_broker import SimBroker


def trading_accounts(site: LifecycleSite) -> dict[str, Broker]:
    """Return every account Cappuccino trades, by a name for the report (see the module docstring)."""
    accounts: dict[str, Broker] = {}
    if site.settings.has_live_keys:
        accounts["live"] = site.live_account()
    production = site.store.holder(Role.PRODUCTION)
    if production is not None:
        # The costs only matter when a bar fills orders; the trading flow's own broker does that.
        accounts["production"] = site.paper_broker(production_trader_id(production), ExecutionCosts())
    for run in site.sandbox().runs():
        if run.ended_at is None:
            accounts[f"sandbox:{run.trader_id}"] = SimBroker(site.engine, run.trader_id, costs=ExecutionCosts(),
                                                             initial_cash=run.initial_cash, clock=site.clock)
    return accounts


def kill_trading(site: LifecycleSite, *, who: str, reason: str, flatten: bool = True,
                 at: datetime | None = None) -> KillReport:
    """Halt every trader, cancel open orders and (if ``flatten``) close every position (secrets masked in who and why).

    Raises:
        KillIncomplete: trading is halted but some account failed (the report says which).
    """
    at = at or site.now()
    who, reason = _scrubbed(site, who), _scrubbed(site, reason)
    accounts = trading_accounts(site)
    try:
        report = kill(site.switch, accounts, reason=reason, who=who, at=at, flatten=flatten)
    except KillIncomplete as exc:
        site.alert(AlertLevel.EMERGENCY, "kill", f"trading halted by {who} ({reason}) but the kill is incomplete: "
                   + "; ".join(exc.report.failures()) + f"; {exc.report.summary()}", at=at)
        raise
    done = ", ".join(f"{b.broker}: {len(b.canceled)} canceled, {len(b.closing_orders)} closing"
                     for b in report.brokers) or "no account"
    site.alert(AlertLevel.EMERGENCY, "kill", f"trading halted by {who} ({reason}); {done}; {report.summary()}", at=at)
    return report


def resume_trading(site: LifecycleSite, *, who: str, reason: str = "resumed", at: datetime | None = None) -> HaltState:
    """Lift the halt: traders step again from the next bar."""
    at = at or site.now()
    who, reason = _scrubbed(site, who), _scrubbed(site, reason)
    state = site.switch.resume(who=who, at=at, reason=reason)
    site.alert(AlertLevel.WARNING, "resume", f"trading resumed by {who}: {reason}", at=at)
    return state


def _scrubbed(site: LifecycleSite, text: str) -> str:
    """``text`` with every configured secret masked (a reason is stored and shown)."""
    return scrub(text, site.settings.secret_values())
