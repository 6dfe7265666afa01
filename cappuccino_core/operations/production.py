"""The production and live traders: the production model on paper, the live model on real money, bar by bar.

* **Production** (paper): the model holding the production role trades the site's paper
  account (``LifecycleSite.paper_broker``: Alpaca paper with keys, else its own SimBroker
  account) as trader ``prod-<hash of the model id>``. A SimBroker account is given each bar
  (fills at the open, marks at the close) before the step, exactly as the sandbox does.
* **Live**: the model holding the live role trades the live Alpaca account as trader
  ``live-<hash>``, only while ``live_readiness`` allows it, and only its ramp capital
  (``live_account``): the completed days since it went live set the ramp step.

Both trade under the owner's default risk layers (``RiskConfig()``), like the sandbox, and
check the kill switch before each step (a halted bar is journaled ``skipped_halted``). A
model that holds both roles trades both accounts side by side (that is what the live versus
paper comparison needs).

Both are stepped on the base clock and trade bars of their model's interval, by the sandbox's
rule (``bars_provider.closed_bar``): on a base bar that closes no bar of the model's interval
the step reports ``no_new_bar`` and touches nothing (no journal row, no allocation).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cappuccino_core.clock import ensure_utc
from cappuccino_core.data.intervals import Interval
from cappuccino_core.db import session_factory
from cappuccino_core.lifecycle.alerts import AlertLevel
from cappuccino_core.operations.live_account import (
    Allocation,
    ReservedBroker,
    allocate,
    allocations,
    injections,
    went_live_at,
)
from cappuccino_core.operations.notify import alert_once
from cappuccino_core.lifecycle.ramp import RampConfig, RampState, ramp_state
from cappuccino_core.operations.track_records import journal_record
from cappuccino_core.operations.site import LifecycleSite, live_readiness
from cappuccino_core.lifecycle.stages import Role
from cappuccino_core.lifecycle.track_record import TrackRecord
from cappuccino_core.trading.bars_provider import closed_bar, next_close
from cappuccino_core.risk.config import RiskConfig

if TYPE_CHECKING:  # the traders (torch) are imported by the steps: the status board only reads records
    from cappuccino_core.trading.sim_broker import SimBroker
    from cappuccino_core.trading.trader import StepOutcome, Trader


logger = logging.getLogger(__name__)

NO_NEW_BAR = "no_new_bar"


@dataclass(frozen=True)
class TraderStep:
    """What one step of the production or the live trader did.

    Attributes:
        role: ``production`` or ``live``.
        model_id: the model that holds the role.
        status: the journal's step status (``traded``, ``skipped_duplicate``, …), ``no_new_bar``
            (no bar of the model's interval closed with the clock's bar) or ``not_allowed`` (live
            trading is no longer configured).
        bar_time: the bar traded, or the clock's bar when there was none (ISO 8601, UTC).
        message: why nothing was traded (``no_new_bar``, ``not_allowed``).
        trader_id, account: who traded, on which account (a step that reached the trader).
        orders: orders the step sent.
        equity: the account's equity at the bar (None without a journal row).
        errors: the step's errors.
        allocation: the live step's ramp capital (live only).
    """

    role: str
    model_id: str
    status: str
    bar_time: str | None = None
    message: str | None = None
    trader_id: str | None = None
    account: str | None = None
    orders: int = 0
    equity: float | None = None
    errors: tuple[str, ...] = ()
    allocation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The step as the flow's report records it (only the fields this kind of step has)."""
        out: dict[str, Any] = {"role": self.role, "model_id": self.model_id, "status": self.status}
        if self.bar_time is not None:
            out["bar_time"] = self.bar_time
        if self.message is not None:
            out["message"] = self.message
        if self.trader_id is not None:
            out |= {"trader_id": self.trader_id, "account": self.account, "orders": self.orders,
                    "equity": self.equity, "errors": list(self.errors)}
        if self.allocation is not None:
            out["allocation"] = self.allocation
        return out
"""The status of a step on a base bar that closes no bar of the model's interval."""


def trader_id_for(prefix: str, model_id: str) -> str:
    """Return a stable trader id for a model in a role (``prod-…`` or ``live-…``, at most 64 characters)."""
    return f"{prefix}-" + hashlib.sha256(model_id.encode()).hexdigest()[:16]


def production_trader_id(model_id: str) -> str:
    """The trader id of ``model_id`` as the production model."""
    return trader_id_for("prod", model_id)


def live_trader_id(model_id: str) -> str:
    """The trader id of ``model_id`` as the live model."""
    return trader_id_for("live", model_id)


def production_trader(site: LifecycleSite, model_id: str) -> Trader:
    """Return the production model's trader on the paper account."""
    from cappuccino_core.trading.trader import Trader

    model = site.load_model(model_id).with_risk(RiskConfig())
    model = replace(model, env_config=replace(model.env_config, initial_cash=site.settings.production_cash))
    trader_id = production_trader_id(model_id)
    broker = site.paper_broker(trader_id, model.costs)
    return Trader(trader_id, model, broker, site.bars.at(model.interval), site.journal, halted=site.switch.is_halted,
                    in_flight=site.switch.step_in_flight, clock=site.clock)


def step_production(site: LifecycleSite, bar_time: datetime) -> TraderStep | None:
    """Step the production model on the bar of its interval that closed with base bar ``bar_time``.

    Returns ``None`` when there is no production model, a ``no_new_bar`` report when no bar of
    its interval closed with this one.
    """
    model_id = site.store.holder(Role.PRODUCTION)
    if model_id is None:
        return None
    from cappuccino_core.trading.sim_broker import SimBroker

    trader = production_trader(site, model_id)
    bar = closed_bar(bar_time, site.bars.interval, trader.model.interval)
    if bar is None:
        return _no_new_bar(site, "production", model_id, bar_time, trader.model.interval)
    if isinstance(trader.broker, SimBroker):
        trader.broker.feed_bar(trader.bars, bar)
    return _outcome("production", model_id, site.paper_mode, trader.step(bar))


def live_record(site: LifecycleSite, model_id: str,
                interval: Interval | None = None) -> tuple[TrackRecord | None, datetime | None]:
    """Return the live model's record since it last went live (capital steps removed), and when that was.

    ``interval`` is the model's bar interval (it annualises the record; default: loaded with the model).

    The record starts at the first bar traded live since then (its first allocation's bar: the
    bar a trader acts on opened before the moment the model went live), so a model demoted and
    promoted again starts a new record and a new ramp.
    """
    since = went_live_at(site.store, model_id)
    if since is None:
        return None, None
    trader_id = live_trader_id(model_id)
    allocated = allocations(site.engine, trader_id, since)
    if not allocated:
        return None, since
    interval = interval or model_interval(site, model_id)
    return journal_record(site.journal.entries(trader_id), interval,
                          since=allocated[0].effective_bar, injections=injections(allocated)), since


def model_interval(site: LifecycleSite, model_id: str) -> Interval:
    """The bar interval ``model_id`` was trained on and trades: its sandbox run's, else its model card's.

    Every model reaches production through a sandbox run, which stored the interval: reading
    it keeps the status board free of model code.
    """
    from sqlalchemy import inspect, select

    from cappuccino_core.sandbox.runs import SandboxRunRow

    if inspect(site.engine).has_table(SandboxRunRow.__tablename__):
        with session_factory(site.engine)() as session:
            stored = session.scalars(select(SandboxRunRow.interval).where(SandboxRunRow.model_ref == model_id)
                                     .limit(1)).first()
        if stored is not None:
            return Interval(stored)
    return site.load_model(model_id).interval


def live_ramp(site: LifecycleSite, record: TrackRecord | None) -> RampState:
    """Return the ramp step reached by the live record's completed days.

    Raises:
        ValueError: ``live_capital`` is not set.
    """
    capital = site.settings.live_capital
    if capital is None:
        raise ValueError("live_capital is not set (CAPPUCCINO_LIVE_CAPITAL)")
    config = RampConfig(capital, site.settings.ramp_fractions, site.settings.ramp_profitable_days)
    days = [] if record is None else [r for day, r in record.daily_returns() if record.day_is_complete(day)]
    return ramp_state(days, config)


def step_live(site: LifecycleSite, bar_time: datetime) -> TraderStep | None:
    """Step the live model on ``bar_time`` with its ramp capital (``None`` when no model is live).

    When live trading is no longer allowed (disabled, keys or capital removed) the live model
    does not trade: a critical alert says why and the step reports ``not_allowed``.
    """
    model_id = site.store.holder(Role.LIVE)
    if model_id is None:
        return None
    readiness = live_readiness(site.settings)
    if not readiness.ready:
        message = f"live model {model_id} is not trading: {readiness.message}"
        alert_once(site, AlertLevel.CRITICAL, "live", message, at=site.now())
        return TraderStep("live", model_id, "not_allowed", message=message)
    model = site.load_model(model_id).with_risk(RiskConfig())
    bar = closed_bar(bar_time, site.bars.interval, model.interval)
    if bar is None:
        return _no_new_bar(site, "live", model_id, bar_time, model.interval)
    record, since = live_record(site, model_id, model.interval)
    assert since is not None  # a live model went live
    broker = site.live_broker()
    trader_id = live_trader_id(model_id)
    allocation: Allocation = allocate(site.engine, trader_id=trader_id, model_id=model_id, went_live=since,
                                      ramp=live_ramp(site, record), account=broker.account(),
                                      bar_time=bar, at=site.now())
    from cappuccino_core.trading.trader import Trader

    trader = Trader(trader_id, model, ReservedBroker(broker, allocation.reserve), site.bars.at(model.interval),
                    site.journal, halted=site.switch.is_halted,
                    in_flight=site.switch.step_in_flight, clock=site.clock)
    return replace(_outcome("live", model_id, "alpaca-live", trader.step(bar)), allocation=allocation.to_dict())


def _no_new_bar(site: LifecycleSite, role: str, model_id: str, clock_bar: datetime, interval: Interval) -> TraderStep:
    """The report of a step with nothing to do: no bar of the model's interval closed with ``clock_bar``."""
    closes = ensure_utc(clock_bar) + site.bars.interval.timedelta
    message = (f"{role} model {model_id} trades {interval.value} bars: none closed at {closes.isoformat()} "
               f"(the next closes at {next_close(clock_bar, site.bars.interval, interval).isoformat()})")
    logger.info(message)
    return TraderStep(role, model_id, NO_NEW_BAR, bar_time=ensure_utc(clock_bar).isoformat(), message=message)


def _outcome(role: str, model_id: str, account: str, outcome: StepOutcome) -> TraderStep:
    entry = outcome.entry
    return TraderStep(role, model_id, str(outcome.status), bar_time=outcome.bar_time.isoformat(),
                      trader_id=outcome.trader_id, account=account, orders=0 if entry is None else len(entry.orders),
                      equity=None if entry is None else entry.equity,
                      errors=() if entry is None else tuple(entry.errors))
