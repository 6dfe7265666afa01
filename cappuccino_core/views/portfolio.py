"""The traders' portfolios as their journals last recorded them: sandbox runs, the production and the live model.

Every trader journals each bar it decides on (``trading.journal``): the account's equity and
cash at the decision, the close of each symbol, the units held and the orders it sent. This
view reads the last decided (``traded``) bar of each trader, so it shows the same account for
every broker (SimBroker or Alpaca) without asking the broker:

* positions: units, value at that close, weight of equity;
* P&L since entry: equity minus the equity it started with (a sandbox run's initial cash; for
  the production and live traders the equity at their first decided bar, since a paper account
  may be shared with an earlier production model);
* open orders: the orders of that bar whose status was still open when they were sent (they
  fill, or not, at the next bar's open; the next step journals how they ended);
* the last step: its bar, its status (a skipped or failed bar after the last decision is shown
  as such) and when it was recorded.

No model code runs here: the view imports neither torch nor MLflow.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from cappuccino_core.config import Settings
from cappuccino_core.trading.broker import OrderStatus
from cappuccino_core.trading.journal import JournalEntry, StepStatus, TradeJournal


class PortfolioStage(StrEnum):
    """Which traders to show."""

    SANDBOX = "sandbox"
    PRODUCTION = "production"
    LIVE = "live"


def portfolios(settings: Settings, stage: PortfolioStage | None = None) -> list[dict[str, Any]]:
    """Return each trader's portfolio of ``stage`` (every stage when ``None``): sandbox runs first, then production, live."""
    from cappuccino_core.db import Base, session_factory
    from cappuccino_core.operations.production import live_trader_id, production_trader_id
    from cappuccino_core.operations.site import LifecycleSite
    from cappuccino_core.lifecycle.stages import Role
    from cappuccino_core.sandbox.runs import SandboxRunRow, load_runs

    site = LifecycleSite.from_settings(settings)
    journal = site.journal
    out: list[dict[str, Any]] = []
    if stage in (None, PortfolioStage.SANDBOX):
        Base.metadata.create_all(site.engine, tables=[SandboxRunRow.__table__])
        for run in load_runs(session_factory(site.engine)):
            state = "ended" if run.ended_at is not None else "active"
            out.append(portfolio(journal, PortfolioStage.SANDBOX, run.trader_id, run.model_ref, state, run.initial_cash))
    for role, wanted, trader_id in ((Role.PRODUCTION, PortfolioStage.PRODUCTION, production_trader_id),
                                    (Role.LIVE, PortfolioStage.LIVE, live_trader_id)):
        if stage not in (None, wanted):
            continue
        model_id = site.store.holder(role)
        if model_id is not None:
            out.append(portfolio(journal, wanted, trader_id(model_id), model_id, "active", None))
    return out


def portfolio(journal: TradeJournal, stage: PortfolioStage, trader_id: str, model: str, state: str,
              entry_equity: float | None) -> dict[str, Any]:
    """One trader's portfolio at its last decided bar (see the module docstring); ``entry_equity`` None: its first one's."""
    entries = journal.entries(trader_id)
    decided = [e for e in entries if e.status is StepStatus.TRADED]
    last = entries[-1] if entries else None
    doc: dict[str, Any] = {
        "stage": str(stage), "trader_id": trader_id, "model": model, "state": state,
        "bars": len(entries), "decided_bars": len(decided),
        "last_step": None if last is None else {"bar": last.bar_time.isoformat(), "status": str(last.status),
                                                "recorded_at": last.recorded_at.isoformat(), "errors": list(last.errors)},
        "as_of": None, "equity": None, "cash": None, "entry_equity": entry_equity, "pnl": None, "pnl_fraction": None,
        "positions": [], "open_orders": [],
    }
    if not decided:
        return doc
    at = decided[-1]
    start = entry_equity if entry_equity is not None else decided[0].equity
    doc.update(as_of=at.bar_time.isoformat(), equity=at.equity, cash=at.cash, entry_equity=start,
               positions=_positions(at), open_orders=_open_orders(at))
    if at.equity is not None and start:
        doc.update(pnl=at.equity - start, pnl_fraction=at.equity / start - 1.0)
    return doc


def _positions(entry: JournalEntry) -> list[dict[str, Any]]:
    out = []
    for symbol, units in entry.positions.items():
        if units == 0:
            continue
        price = entry.prices.get(symbol)
        value = None if price is None else units * price
        weight = None if value is None or not entry.equity else value / entry.equity
        out.append({"symbol": symbol, "units": units, "price": price, "value": value, "weight": weight})
    return out


def _open_orders(entry: JournalEntry) -> list[dict[str, Any]]:
    keys = ("client_order_id", "symbol", "side", "qty", "notional", "status")
    return [{k: o.get(k) for k in keys} for o in entry.orders
            if o.get("status") in {str(s) for s in OrderStatus} and OrderStatus(o["status"]).is_open]
