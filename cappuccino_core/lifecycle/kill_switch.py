"""The kill switch: a durable halt flag every trader checks, and ``kill`` to stop everything now.

The flag is a row of ``lifecycle_halt`` in the project database, so a halt survives restarts
and reaches every process: traders call ``halt_check(engine)`` before each step and skip the
bar while it returns True. ``kill`` halts first (so no trader places a new order while the
books are being flattened), then cancels open orders and, if asked, closes every position on
each broker. A broker that fails does not stop the others; ``KillIncomplete`` is raised after
all were tried, carrying the report. Every halt and resume is kept in ``lifecycle_halt_event``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from cappuccino_core.clock import ensure_utc
from cappuccino_core.db import Base, session_factory
from cappuccino_core.lifecycle.tables import HALT_TABLES, HaltEventRow, HaltRow
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

    @property
    def complete(self) -> bool:
        """True when every broker did what was asked."""
        return all(b.error is None for b in self.brokers)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        since = self.halt.since.isoformat() if self.halt.since is not None else None
        return {"halted": self.halt.halted, "since": since, "reason": self.halt.reason, "flatten": self.flatten,
                "complete": self.complete, "brokers": [b.to_dict() for b in self.brokers]}


class KillIncomplete(RuntimeError):
    """Trading is halted but some broker could not cancel or close; ``report`` says which."""

    def __init__(self, report: KillReport) -> None:
        failed = "; ".join(f"{b.broker}: {b.error}" for b in report.brokers if b.error is not None)
        super().__init__(f"trading is halted, but the kill is incomplete: {failed}")
        self.report = report


def kill(
    switch: KillSwitch,
    brokers: Mapping[str, Broker],
    *,
    reason: str,
    who: str,
    at: datetime,
    flatten: bool = True,
) -> KillReport:
    """Halt trading, then cancel open orders (and close positions if ``flatten``) on every broker.

    Args:
        switch: the kill switch to set.
        brokers: every account to stop, by a name for the report (``live``, ``paper``, ...).
        reason: why (recorded with the halt).
        who: who pulled the switch.
        at: when (UTC).
        flatten: also close every position (market sells); False only cancels open orders.

    Raises:
        KillIncomplete: some broker failed (after all were tried); trading stays halted.
    """
    state = switch.halt(reason=reason, who=who, at=at)
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
    report = KillReport(state, flatten, tuple(outcomes))
    if not report.complete:
        raise KillIncomplete(report)
    return report


def _check_words(reason: str, who: str) -> None:
    if not reason.strip() or not who.strip():
        raise ValueError("a halt or resume needs a non-empty reason and who")
