"""The trade journal: one append-only row per (trader, bar), and the trader's state between bars.

Tables (declared on ``db.Base``, created by ``TradeJournal``):

* ``trade_journal`` — what a trader saw and did at one bar: status, prices, equity, cash,
  positions, the policy's and the executed actions, the orders submitted (with client order
  ids), the previous bar's orders as they ended (fills), risk events with their reasons,
  errors and notes. Unique on ``(trader_id, bar_time)``; rows are only ever inserted.
* ``trader_state`` — per trader, what the next step needs: the risk layers' state, the client
  order ids awaiting fills, the number of decisions made. Written in the **same transaction**
  as the journal row of the bar it follows, so the two never disagree.
* ``trade_plan`` — the bar's decision (``TradePlan``: the account it was made on, the actions
  after the risk layers and the orders derived from them, with their client order ids, and the
  state after it), committed **before the first order is sent**. Unique on
  ``(trader_id, bar_time)``. It stays ``open`` until the bar's journal row is written, which
  closes it in the same transaction (``done``, ``failed`` or ``abandoned``).

Restart safety: a bar with a journal row is done. A step that dies after its plan was committed
and before its row was written resumes **that plan** when the same bar is stepped again: the
orders the broker does not hold yet are sent with the plan's quantities and client order ids,
and nothing is re-planned from the account its first orders have already changed. A plan of a
past bar (a later bar is stepped first) is never carried out late: its row is written with status
``abandoned``, the orders it had sent kept (their fills are booked at the next bar) and the
others recorded as ``not_sent``. A step that dies before its plan was committed left nothing;
rerunning it decides afresh on an account no order of the bar has touched.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Double, Engine, Integer, String, Text, UniqueConstraint, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from cappuccino_core.clock import ensure_utc
from cappuccino_core.db import Base, UTCDateTime, session_factory

if TYPE_CHECKING:  # torch is imported by the trader state's methods: reading a journal does not need it
    from cappuccino_core.trading.orders import PlannedOrder
    from cappuccino_core.risk.state import RiskState

logger = logging.getLogger(__name__)


class StepStatus(StrEnum):
    """What a trader did with one bar."""

    TRADED = "traded"  # decided (orders may be empty) and recorded
    SKIPPED_STALE = "skipped_stale"  # the bar or its history was missing: no orders
    SKIPPED_DUPLICATE = "skipped_duplicate"  # the bar was already processed, or is older than the last one
    SKIPPED_HALTED = "skipped_halted"  # the halt flag was set: no orders
    ERROR = "error"  # the step failed for a reason that retrying cannot fix; see errors
    ABANDONED = "abandoned"  # its plan did not finish before a later bar came; the unsent orders never go


class PlanStatus(StrEnum):
    """Where a bar's plan is."""

    OPEN = "open"  # committed; its orders are being (or were partly) sent
    DONE = "done"  # carried out; the bar's row is written
    FAILED = "failed"  # a failure retrying cannot fix stopped it; the bar's row is an error
    ABANDONED = "abandoned"  # a later bar came before it finished


# The plan status a journal row of each step status closes its bar's plan with.
_CLOSES_PLAN = {StepStatus.TRADED: PlanStatus.DONE, StepStatus.ERROR: PlanStatus.FAILED,
                StepStatus.ABANDONED: PlanStatus.ABANDONED}


class TradeJournalRow(Base):
    """One bar of one trader; the detail is a JSON document (see ``JournalEntry``)."""

    __tablename__ = "trade_journal"
    __table_args__ = (UniqueConstraint("trader_id", "bar_time", name="uq_trade_journal_trader_bar"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trader_id: Mapped[str] = mapped_column(String(64), index=True)
    bar_time: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(24))
    equity: Mapped[float | None] = mapped_column(Double, nullable=True)
    cash: Mapped[float | None] = mapped_column(Double, nullable=True)
    detail: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TraderStateRow(Base):
    """A trader's memory between bars (see ``TraderState``)."""

    __tablename__ = "trader_state"

    trader_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_bar_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    state: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TradePlanRow(Base):
    """One bar's decision of one trader, written before its first order (see ``TradePlan``)."""

    __tablename__ = "trade_plan"
    __table_args__ = (UniqueConstraint("trader_id", "bar_time", name="uq_trade_plan_trader_bar"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trader_id: Mapped[str] = mapped_column(String(64), index=True)
    bar_time: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), index=True)
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


_TABLES = [TradeJournalRow.__table__, TraderStateRow.__table__, TradePlanRow.__table__]


@dataclass(frozen=True)
class JournalEntry:
    """One journal row.

    Attributes:
        trader_id: the trader (one model on one account).
        bar_time: open time of the bar decided on (UTC).
        status: what happened.
        recorded_at: when the row was written.
        equity, cash: the account at the decision (``None`` when the step did not read it).
        prices: close of the bar per symbol.
        positions: units held per symbol at the decision.
        policy_actions: the policy's actions, in the model's symbol order.
        executed_actions: the actions after the risk layers.
        orders: orders submitted or refused at this bar: ``client_order_id, symbol, side, qty,
            notional, status, order_id, reason``.
        fills: the previous decision's orders as they ended: ``client_order_id, symbol, side,
            status, filled_qty, filled_avg_price, fee``.
        risk_events: ``rule, symbol, reason, value, threshold`` per trigger, in application order.
        errors: what went wrong (refused orders, missing data, failures).
        notes: what changed a decision without being an error (e.g. buys cut to settled cash).
    """

    trader_id: str
    bar_time: datetime
    status: StepStatus
    recorded_at: datetime
    equity: float | None = None
    cash: float | None = None
    prices: dict[str, float] = field(default_factory=dict)
    positions: dict[str, float] = field(default_factory=dict)
    policy_actions: tuple[float, ...] | None = None
    executed_actions: tuple[float, ...] | None = None
    orders: tuple[dict[str, Any], ...] = ()
    fills: tuple[dict[str, Any], ...] = ()
    risk_events: tuple[dict[str, Any], ...] = ()
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


_DETAIL = ("prices", "positions", "policy_actions", "executed_actions", "orders", "fills", "risk_events", "errors", "notes")


@dataclass(frozen=True, eq=False)
class TraderState:
    """What a trader carries from one bar to the next.

    Attributes:
        risk: the risk layers' state of the one book (``N = 1``); after a decision it is the
            decision's state, to be passed to ``update_after_fills`` once its orders filled.
        pending: client order ids of the last decision's accepted orders.
        awaiting_fills: a decision was made whose fills are not booked into ``risk`` yet.
        steps: decisions made so far (the backtester's step counter).
        last_bar_time: the last bar processed.
    """

    risk: RiskState
    pending: tuple[str, ...] = ()
    awaiting_fills: bool = False
    steps: int = 0
    last_bar_time: datetime | None = None

    @classmethod
    def initial(cls, num_assets: int) -> TraderState:
        """Return the state of a trader that has not decided yet."""
        from cappuccino_core.risk.state import RiskState

        return cls(risk=RiskState.initial(1, num_assets))

    def to_json(self) -> str:
        """Serialise (tensors as exact lists; floats round-trip through JSON's repr)."""
        risk = {f.name: getattr(self.risk, f.name).tolist() for f in fields(self.risk)}
        payload = {"risk": risk, "pending": list(self.pending), "awaiting_fills": self.awaiting_fills,
                   "steps": self.steps}
        return json.dumps(payload, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, last_bar_time: datetime | None) -> TraderState:
        """Rebuild from ``to_json`` output."""
        import torch

        from cappuccino_core.risk.state import RiskState

        payload = json.loads(text)
        num_assets = len(payload["risk"]["entry_price"][0])
        template = RiskState.initial(1, num_assets)
        risk = RiskState(**{
            f.name: torch.tensor(payload["risk"][f.name], dtype=getattr(template, f.name).dtype)
            for f in fields(template)
        })
        return cls(risk=risk, pending=tuple(payload["pending"]), awaiting_fills=bool(payload["awaiting_fills"]),
                   steps=int(payload["steps"]), last_bar_time=last_bar_time)


@dataclass(frozen=True, eq=False)
class TradePlan:
    """A bar's decision, committed before its first order so that a restart carries out this one.

    Attributes:
        trader_id: the trader.
        bar_time: the decision bar (UTC).
        decision: the bar's journal row as decided, before any order: the account read,
            ``policy_actions``, ``executed_actions`` (the actions after the risk layers: the
            target the orders move the book to, in the env's action mapping), the previous
            orders' fills, risk events, errors and notes; ``orders`` is empty.
        orders: the orders derived from ``executed_actions``, with their client order ids, in
            the order they are sent.
        state: the trader's state after the decision; ``pending`` is empty (the ids the broker
            accepts are filled in when the row is written).
        created_at: when the plan was committed.
    """

    trader_id: str
    bar_time: datetime
    decision: JournalEntry
    orders: tuple[PlannedOrder, ...]
    state: TraderState
    created_at: datetime

    def to_json(self) -> str:
        """Serialise the decision, the orders and the state (floats round-trip exactly)."""
        payload = {
            "decision": _entry_payload(self.decision),
            "orders": [{"symbol": o.symbol, "side": str(o.side), "qty": o.qty, "notional": o.notional,
                        "client_order_id": o.client_order_id} for o in self.orders],
            "state": self.state.to_json(),
        }
        return json.dumps(payload, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, trader_id: str, bar_time: datetime, created_at: datetime) -> TradePlan:
        """Rebuild from ``to_json`` output and the row's columns."""
        from cappuccino_core.trading.broker import OrderSide
        from cappuccino_core.trading.orders import PlannedOrder

        payload = json.loads(text)
        orders = tuple(PlannedOrder(o["symbol"], OrderSide(o["side"]), o["qty"], o["notional"], o["client_order_id"])
                       for o in payload["orders"])
        decision = _entry_from_payload(payload["decision"], trader_id, bar_time)
        state = TraderState.from_json(payload["state"], bar_time)
        return cls(trader_id, bar_time, decision, orders, state, created_at)


class TradeJournal:
    """Reads and appends journal rows and trader states in the project database."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = session_factory(engine)
        Base.metadata.create_all(engine, tables=_TABLES)

    def has(self, trader_id: str, bar_time: datetime) -> bool:
        """Return whether the trader has a row for ``bar_time``."""
        with self._sessions() as session:
            found = session.scalar(select(TradeJournalRow.id).where(
                TradeJournalRow.trader_id == trader_id, TradeJournalRow.bar_time == ensure_utc(bar_time)))
            return found is not None

    def record(self, entry: JournalEntry, state: TraderState | None = None) -> bool:
        """Append ``entry`` and, in the same transaction, store ``state`` (when given).

        An open plan of the same bar is closed in that transaction too (``done`` by a traded
        row, ``failed`` by an error, ``abandoned`` by an abandoned one).

        Returns:
            False when a row for ``(trader_id, bar_time)`` already exists (nothing is changed).
        """
        detail = json.dumps({name: _plain(getattr(entry, name)) for name in _DETAIL}, allow_nan=False)
        bar_time = ensure_utc(entry.bar_time)
        row = TradeJournalRow(trader_id=entry.trader_id, bar_time=bar_time, status=str(entry.status),
                              equity=entry.equity, cash=entry.cash, detail=detail, recorded_at=entry.recorded_at)
        try:
            with self._sessions.begin() as session:
                session.add(row)
                session.flush()
                if state is not None:
                    session.merge(TraderStateRow(trader_id=entry.trader_id, last_bar_time=state.last_bar_time,
                                                 state=state.to_json(), updated_at=entry.recorded_at))
                closes = _CLOSES_PLAN.get(entry.status)
                if closes is not None:
                    session.execute(update(TradePlanRow).where(
                        TradePlanRow.trader_id == entry.trader_id, TradePlanRow.bar_time == bar_time,
                        TradePlanRow.status == str(PlanStatus.OPEN),
                    ).values(status=str(closes), closed_at=entry.recorded_at))
        except IntegrityError:
            logger.info("%s: bar %s is already in the journal", entry.trader_id, entry.bar_time.isoformat())
            return False
        return True

    # -- plans -------------------------------------------------------------------------------

    def save_plan(self, plan: TradePlan) -> TradePlan:
        """Commit ``plan`` as the bar's open plan; return the bar's plan as stored.

        When the bar already has a plan (another process decided first), that one is returned
        and ``plan`` is dropped: a bar has one decision.
        """
        row = TradePlanRow(trader_id=plan.trader_id, bar_time=ensure_utc(plan.bar_time), status=str(PlanStatus.OPEN),
                           detail=plan.to_json(), created_at=plan.created_at)
        try:
            with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            stored = self.plan(plan.trader_id, plan.bar_time)
            if stored is None:
                raise
            logger.warning("%s: bar %s already has a plan (committed %s); keeping it", plan.trader_id,
                           plan.bar_time.isoformat(), stored[0].created_at.isoformat())
            return stored[0]
        return plan

    def plan(self, trader_id: str, bar_time: datetime) -> tuple[TradePlan, PlanStatus] | None:
        """Return the bar's plan and its status, or None when the bar was never planned."""
        with self._sessions() as session:
            row = session.scalar(select(TradePlanRow).where(
                TradePlanRow.trader_id == trader_id, TradePlanRow.bar_time == ensure_utc(bar_time)))
            return None if row is None else (_to_plan(row), PlanStatus(row.status))

    def open_plans(self, trader_id: str) -> list[TradePlan]:
        """Return the trader's plans not carried out yet, oldest bar first."""
        with self._sessions() as session:
            rows = session.scalars(select(TradePlanRow).where(
                TradePlanRow.trader_id == trader_id, TradePlanRow.status == str(PlanStatus.OPEN))
                .order_by(TradePlanRow.bar_time))
            return [_to_plan(row) for row in rows]

    def close_plan(self, trader_id: str, bar_time: datetime, status: PlanStatus, at: datetime) -> None:
        """Close an open plan whose bar already has a row (the row was written by another path)."""
        with self._sessions.begin() as session:
            session.execute(update(TradePlanRow).where(
                TradePlanRow.trader_id == trader_id, TradePlanRow.bar_time == ensure_utc(bar_time),
                TradePlanRow.status == str(PlanStatus.OPEN)).values(status=str(status), closed_at=at))

    def load_state(self, trader_id: str) -> TraderState | None:
        """Return the trader's state, or None before its first decision."""
        with self._sessions() as session:
            row = session.get(TraderStateRow, trader_id)
            return None if row is None else TraderState.from_json(row.state, row.last_bar_time)

    def entries(self, trader_id: str) -> list[JournalEntry]:
        """Return every row of the trader, oldest bar first."""
        with self._sessions() as session:
            rows = session.scalars(select(TradeJournalRow).where(TradeJournalRow.trader_id == trader_id)
                                   .order_by(TradeJournalRow.bar_time))
            return [_to_entry(row) for row in rows]

    def last_bar_time(self, trader_id: str) -> datetime | None:
        """Return the latest bar with a row for the trader, whatever its status."""
        with self._sessions() as session:
            return session.scalar(select(func.max(TradeJournalRow.bar_time)).where(
                TradeJournalRow.trader_id == trader_id))

    def trader_ids(self) -> list[str]:
        """Return every trader with a row, sorted."""
        with self._sessions() as session:
            return sorted(session.scalars(select(TradeJournalRow.trader_id).distinct()))

    def status_counts(self, trader_id: str) -> dict[str, int]:
        """Return how many bars ended in each status."""
        with self._sessions() as session:
            rows = session.execute(select(TradeJournalRow.status, func.count()).where(
                TradeJournalRow.trader_id == trader_id).group_by(TradeJournalRow.status))
            return {status: int(count) for status, count in rows}


def _plain(value: Any) -> Any:
    """Tuples of dicts and floats as JSON-ready lists."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _to_entry(row: TradeJournalRow) -> JournalEntry:
    detail = json.loads(row.detail)
    return _entry_from_detail(detail, row.trader_id, row.bar_time, StepStatus(row.status), row.recorded_at,
                              row.equity, row.cash)


def _entry_from_detail(detail: dict[str, Any], trader_id: str, bar_time: datetime, status: StepStatus,
                       recorded_at: datetime, equity: float | None, cash: float | None) -> JournalEntry:
    def vector(name: str) -> tuple[float, ...] | None:
        return None if detail[name] is None else tuple(detail[name])

    return JournalEntry(
        trader_id=trader_id, bar_time=bar_time, status=status, recorded_at=recorded_at,
        equity=equity, cash=cash, prices=detail["prices"], positions=detail["positions"],
        policy_actions=vector("policy_actions"), executed_actions=vector("executed_actions"),
        orders=tuple(detail["orders"]), fills=tuple(detail["fills"]), risk_events=tuple(detail["risk_events"]),
        errors=tuple(detail["errors"]), notes=tuple(detail["notes"]),
    )


def _entry_payload(entry: JournalEntry) -> dict[str, Any]:
    """A journal entry as one JSON-ready document (a plan's decision)."""
    payload = {name: _plain(getattr(entry, name)) for name in _DETAIL}
    payload.update(status=str(entry.status), recorded_at=entry.recorded_at.isoformat(), equity=entry.equity,
                   cash=entry.cash)
    return payload


def _entry_from_payload(payload: dict[str, Any], trader_id: str, bar_time: datetime) -> JournalEntry:
    return _entry_from_detail(payload, trader_id, bar_time, StepStatus(payload["status"]),
                              ensure_utc(datetime.fromisoformat(payload["recorded_at"])), payload["equity"],
                              payload["cash"])


def _to_plan(row: TradePlanRow) -> TradePlan:
    return TradePlan.from_json(row.detail, row.trader_id, row.bar_time, row.created_at)
