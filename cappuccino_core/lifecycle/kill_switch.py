"""The kill switch: a durable halt flag every trader checks, and ``kill`` to stop everything now.

The flag is a row of ``lifecycle_halt`` in the project database, so a halt survives restarts
and reaches every process: traders read it before each step and again before each order they
submit (an order of a step after the halt is not sent). A step under way is registered in
``lifecycle_step_in_flight`` (``KillSwitch.step_in_flight``). ``kill`` halts first, then
waits until no step is in flight (a step of a process that has died is cleared), so no
trader places an order after it returns; then it cancels open orders and, if asked, closes
every position on each broker. A broker that fails, or a step that did not stop in time, does
not stop the others; ``KillIncomplete`` is raised after all were tried, carrying the report.
Every halt and resume is kept in ``lifecycle_halt_event``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError

from cappuccino_core.clock import ensure_utc
from cappuccino_core.db import Base, session_factory
from cappuccino_core.lifecycle.tables import HALT_TABLES, HaltEventRow, HaltRow, StepInFlightRow
from cappuccino_core.trading.broker import Broker, Order

logger = logging.getLogger(__name__)

TRADING_SWITCH = "trading"
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)  # updated_at of a switch never used


@dataclass(frozen=True)
class HaltState:
    """Whether trading is halted, since when, by whom and why (``None`` fields while running)."""

    halted: bool
    reason: str | None
    who: str | None
    since: datetime | None


@dataclass(frozen=True)
class HaltEvent:
    """One halt or resume."""

    action: str
    who: str
    reason: str
    at: datetime


class KillSwitch:
    """The durable halt flag ``name`` in the project database."""

    def __init__(self, engine: Engine, name: str = TRADING_SWITCH) -> None:
        """Open the switch, creating its tables and row (not halted) if needed."""
        Base.metadata.create_all(engine, tables=HALT_TABLES)
        self.name = name
        self._sessions = session_factory(engine)
        self._ensure_row()

    def halt(self, *, reason: str, who: str, at: datetime) -> HaltState:
        """Halt trading (idempotent: a halt already in force keeps its first reason and time)."""
        _check_words(reason, who)
        at = ensure_utc(at)
        with self._sessions.begin() as session:
            session.execute(update(HaltRow).where(HaltRow.name == self.name, HaltRow.halted.is_(False))
                            .values(halted=True, reason=reason, who=who, since=at, updated_at=at))
            session.add(HaltEventRow(name=self.name, action="halt", who=who, reason=reason, at=at))
        logger.critical("trading halted by %s: %s", who, reason)
        return self.state()

    def resume(self, *, who: str, at: datetime, reason: str = "resumed") -> HaltState:
        """Lift the halt (idempotent)."""
        _check_words(reason, who)
        at = ensure_utc(at)
        with self._sessions.begin() as session:
            session.execute(update(HaltRow).where(HaltRow.name == self.name)
                            .values(halted=False, reason=None, who=None, since=None, updated_at=at))
            session.add(HaltEventRow(name=self.name, action="resume", who=who, reason=reason, at=at))
        logger.warning("trading resumed by %s: %s", who, reason)
        return self.state()

    def is_halted(self) -> bool:
        """Return True while trading is halted (reads the database every call)."""
        with self._sessions() as session:
            halted = session.scalar(select(HaltRow.halted).where(HaltRow.name == self.name))
        if halted is None:
            raise RuntimeError(f"kill switch {self.name!r} has no row in lifecycle_halt (deleted by hand?)")
        return bool(halted)

    def state(self) -> HaltState:
        """Return the switch's state."""
        with self._sessions() as session:
            row = session.get(HaltRow, self.name)
            if row is None:
                raise RuntimeError(f"kill switch {self.name!r} has no row in lifecycle_halt (deleted by hand?)")
            return HaltState(row.halted, row.reason, row.who, row.since)

    def events(self) -> list[HaltEvent]:
        """Return every halt and resume of this switch, oldest first."""
        with self._sessions() as session:
            rows = session.scalars(select(HaltEventRow).where(HaltEventRow.name == self.name)
                                   .order_by(HaltEventRow.id))
            return [HaltEvent(r.action, r.who, r.reason, r.at) for r in rows]

    @contextmanager
    def step_in_flight(self, trader_id: str, bar_time: datetime, at: datetime) -> Iterator[None]:
        """Register a trader's step for the block's duration (``kill`` waits for it to end).

        A row left by a step of this trader that is no longer under way (its process died) is
        replaced.
        """
        row = StepInFlightRow(trader_id=trader_id, bar_time=ensure_utc(bar_time), host=socket.gethostname(),
                              pid=os.getpid(), started_at=ensure_utc(at))
        with self._sessions.begin() as session:
            session.execute(delete(StepInFlightRow).where(StepInFlightRow.trader_id == trader_id))
            session.add(row)
        try:
            yield
        finally:
            with self._sessions.begin() as session:
                session.execute(delete(StepInFlightRow).where(StepInFlightRow.trader_id == trader_id))

    def steps_in_flight(self) -> list[str]:
        """Return the traders whose step is under way (rows of dead processes on this host are cleared)."""
        host = socket.gethostname()
        with self._sessions.begin() as session:
            rows = list(session.scalars(select(StepInFlightRow)))
            dead = [r.trader_id for r in rows if r.host == host and not _process_alive(r.pid)]
            if dead:
                logger.warning("steps of %s were left by processes that died; cleared", ", ".join(dead))
                session.execute(delete(StepInFlightRow).where(StepInFlightRow.trader_id.in_(dead)))
            return [f"{r.trader_id} (bar {r.bar_time.isoformat()}, pid {r.pid} on {r.host})"
                    for r in rows if r.trader_id not in dead]

    def wait_for_steps(self, timeout_seconds: float, *, poll_seconds: float = 0.05,
                       sleep: Callable[[float], None] = time.sleep,
                       monotonic: Callable[[], float] = time.monotonic) -> list[str]:
        """Wait until no step is in flight, at most ``timeout_seconds``; return the steps still under way."""
        deadline = monotonic() + timeout_seconds
        while True:
            running = self.steps_in_flight()
            if not running or monotonic() >= deadline:
                return running
            sleep(poll_seconds)

    def _ensure_row(self) -> None:
        with self._sessions() as session:
            if session.get(HaltRow, self.name) is not None:
                return
        try:
            with self._sessions.begin() as session:
                session.add(HaltRow(name=self.name, halted=False, reason=None, who=None, since=None,
                                    updated_at=_NEVER))
        except IntegrityError:
            logger.info("kill switch %s was created concurrently", self.name)


def halt_check(engine: Engine, name: str = TRADING_SWITCH) -> Callable[[], bool]:
    """Return a callable that tells whether trading is halted (for ``Trader(halted=...)``).

    Each call reads the database; a database error propagates (a trader that cannot read the
    flag does not trade).
    """
    switch = KillSwitch(engine, name)
    return switch.is_halted


@dataclass(frozen=True)
class BrokerKill:
    """What ``kill`` did on one broker."""

    broker: str
    canceled: tuple[str, ...]
    closing_orders: tuple[Order, ...]
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return the outcome as a JSON-ready dict."""
        return {"broker": self.broker, "canceled": list(self.canceled),
                "closing_orders": [{"id": o.id, "symbol": o.symbol, "qty": o.qty, "status": str(o.status)}
                                   for o in self.closing_orders],
                "error": self.error}


@dataclass(frozen=True)
class KillReport:
    """The halt and what happened on every broker."""

    halt: HaltState
    flatten: bool
    brokers: tuple[BrokerKill, ...]
    steps_not_stopped: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """True when every step stopped and every broker did what was asked."""
        return not self.steps_not_stopped and all(b.error is None for b in self.brokers)

    def failures(self) -> list[str]:
        """Return one line per step that did not stop and per broker that failed."""
        return ([f"step still under way after the wait: {s}" for s in self.steps_not_stopped]
                + [f"{b.broker}: {b.error}" for b in self.brokers if b.error is not None])

    def summary(self) -> str:
        """Say in one line what was actually done on the accounts."""
        if not self.brokers:
            return "no account was reached: no order canceled, no position closed"
        done = [b for b in self.brokers if b.error is None]
        if not done:
            return "no account could be reached: no order canceled, no position closed"
        closing = sum(len(b.closing_orders) for b in done)
        what = (f"closing orders placed for {closing} position(s)" if self.flatten and closing
                else "no open position to close" if self.flatten else "positions kept")
        return (f"{sum(len(b.canceled) for b in done)} order(s) canceled on {len(done)} account(s), {what}"
                + ("" if len(done) == len(self.brokers) else f"; {len(self.brokers) - len(done)} account(s) failed"))

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        since = self.halt.since.isoformat() if self.halt.since is not None else None
        return {"halted": self.halt.halted, "since": since, "reason": self.halt.reason, "flatten": self.flatten,
                "complete": self.complete, "steps_not_stopped": list(self.steps_not_stopped),
                "brokers": [b.to_dict() for b in self.brokers]}


class KillIncomplete(RuntimeError):
    """Trading is halted but some broker could not cancel or close, or a step did not stop; ``report`` says which."""

    def __init__(self, report: KillReport) -> None:
        super().__init__(f"trading is halted, but the kill is incomplete: {'; '.join(report.failures())}")
        self.report = report


def kill(
    switch: KillSwitch,
    brokers: Mapping[str, Broker],
    *,
    reason: str,
    who: str,
    at: datetime,
    flatten: bool = True,
    step_wait_seconds: float = 60.0,
) -> KillReport:
    """Halt trading, wait for the steps under way, then cancel open orders (and close positions) on every broker.

    Args:
        switch: the kill switch to set.
        brokers: every account to stop, by a name for the report (``live``, ``paper``, ...).
        reason: why (recorded with the halt).
        who: who pulled the switch.
        at: when (UTC).
        flatten: also close every position (market sells); False only cancels open orders.
        step_wait_seconds: how long to wait for the trader steps under way to stop (each sends no
            order after the halt; an order sent just before it is canceled or closed below).

    Raises:
        KillIncomplete: some broker failed or a step did not stop in time (after all brokers were
            tried); trading stays halted.
    """
    state = switch.halt(reason=reason, who=who, at=at)
    running = switch.wait_for_steps(step_wait_seconds)
    if running:
        logger.error("kill: %d step(s) still under way after %.0f s: %s", len(running), step_wait_seconds,
                     "; ".join(running))
    outcomes = []
    for name, broker in brokers.items():
        canceled: list[str] = []
        closing: list[Order] = []
        try:
            canceled = broker.cancel_all()
            if flatten:
                closing = broker.close_all()
            error = None
        except Exception as exc:  # noqa: BLE001 - every broker must be tried; the failure is re-raised below
            error = f"{type(exc).__name__}: {exc}"
            logger.error("kill: broker %s failed: %s", name, error)
        outcomes.append(BrokerKill(name, tuple(canceled), tuple(closing), error))
        logger.critical("kill: broker %s canceled %d order(s), placed %d closing order(s)",
                        name, len(canceled), len(closing))
    report = KillReport(state, flatten, tuple(outcomes), tuple(running))
    if not report.complete:
        raise KillIncomplete(report)
    return report


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _check_words(reason: str, who: str) -> None:
    if not reason.strip() or not who.strip():
        raise ValueError("a halt or resume needs a non-empty reason and who")
