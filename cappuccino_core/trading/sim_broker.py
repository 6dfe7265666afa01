"""A simulated broker whose ledger lives in the project database (the sandbox stage's broker).

Each model trades one virtual account (``account_id``); many accounts share one database.
Orders, fills, positions, cash and the latest marks are rows of the ``sim_*`` tables, so a
SimBroker restarted on the same database sees exactly the state it left.

Execution follows the training environment (``cappuccino_core.accounting``): a market
order is accepted as ``new`` and fills on the next bar given to ``on_bar``, at that bar's
open with slippage, paying ``fee_rate`` of the filled notional in cash (``fill_order``).
Pending orders fill sells first, then buys, each in submission order. An order that no
longer fits when it fills (cash, units, minimums) is ``rejected`` with the reason recorded;
the checks Alpaca makes at submission raise ``InsufficientFunds``/``InvalidOrder`` here too.
``ExecutionCosts.min_cash_reserve`` is a rule of the action mapping, not of the broker, and
is not applied.

Concurrency: every change is one transaction that first bumps the account row's
``revision``. That write takes the row lock on PostgreSQL and the database write lock on
SQLite, so changes to one account are serialised; the unique constraint on
``(account_id, client_order_id)`` makes idempotency hold in the database itself.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import (
    Double,
    Engine,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from cappuccino_core.clock import Clock, ensure_utc
from cappuccino_core.trading.bars_provider import BarProvider, MissingBarsError, bar_time_ns
from cappuccino_core.data.symbols import parse_symbol, symbol_key
from cappuccino_core.db import Base, UTCDateTime, session_factory
from cappuccino_core.accounting import ExecutionCosts, fill_order
from cappuccino_core.trading.broker import (
    Account,
    InsufficientFunds,
    InvalidOrder,
    Order,
    OrderNotFound,
    OrderSide,
    OrderStatus,
    Position,
    check_order_request,
    refuse_reused_id,
)

logger = logging.getLogger(__name__)

# Order ids are derived from (account, client order id): the same submission gets the same
# id in every replay, and two accounts never share one.
_ORDER_ID_NAMESPACE = uuid.UUID("5b0c6f0e-3c1a-4d7e-9a55-2f6d9c1e8b41")
# A position left with less than this fraction of what it held is float noise, not a holding.
_DUST = 1e-12
_OPEN = [status.value for status in OrderStatus if status.is_open]


class SimAccountRow(Base):
    """One virtual account: its cash, counters and the last bar it processed."""

    __tablename__ = "sim_accounts"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    currency: Mapped[str] = mapped_column(String(8))
    initial_cash: Mapped[float] = mapped_column(Double)
    cash: Mapped[float] = mapped_column(Double)
    order_seq: Mapped[int] = mapped_column(Integer, default=0)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    last_bar_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SimOrderRow(Base):
    """One order of one account; ``seq`` is its place in the account's submission order."""

    __tablename__ = "sim_orders"
    __table_args__ = (
        UniqueConstraint("account_id", "client_order_id", name="uq_sim_orders_account_client_order_id"),
        UniqueConstraint("account_id", "seq", name="uq_sim_orders_account_seq"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), ForeignKey("sim_accounts.account_id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    client_order_id: Mapped[str] = mapped_column(String(128))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    qty: Mapped[float | None] = mapped_column(Double, nullable=True)
    notional: Mapped[float | None] = mapped_column(Double, nullable=True)
    status: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    filled_qty: Mapped[float] = mapped_column(Double, default=0.0)
    filled_avg_price: Mapped[float | None] = mapped_column(Double, nullable=True)
    fee: Mapped[float | None] = mapped_column(Double, nullable=True)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    filled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SimFillRow(Base):
    """One fill: units at a price (slippage included), its notional and fee."""

    __tablename__ = "sim_fills"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(36), ForeignKey("sim_orders.id"), index=True)
    account_id: Mapped[str] = mapped_column(String(64), ForeignKey("sim_accounts.account_id"), index=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    units: Mapped[float] = mapped_column(Double)
    price: Mapped[float] = mapped_column(Double)
    notional: Mapped[float] = mapped_column(Double)
    fee: Mapped[float] = mapped_column(Double)
    filled_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SimPositionRow(Base):
    """A holding of one account (rows exist only while units are held)."""

    __tablename__ = "sim_positions"

    account_id: Mapped[str] = mapped_column(String(64), ForeignKey("sim_accounts.account_id"), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    qty: Mapped[float] = mapped_column(Double)
    avg_entry_price: Mapped[float] = mapped_column(Double)


class SimMarkRow(Base):
    """The latest close seen for a symbol: what positions are valued at."""

    __tablename__ = "sim_marks"

    account_id: Mapped[str] = mapped_column(String(64), ForeignKey("sim_accounts.account_id"), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    price: Mapped[float] = mapped_column(Double)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)


_TABLES = [row.__table__ for row in (SimAccountRow, SimOrderRow, SimFillRow, SimPositionRow, SimMarkRow)]


@dataclass(frozen=True)
class Fill:
    """One booked fill (see ``SimFillRow``)."""

    order_id: str
    symbol: str
    side: OrderSide
    units: float
    price: float
    notional: float
    fee: float
    filled_at: datetime


class SimBroker:
    """A ``Broker`` over a virtual account kept in the project database.

    Thread safety: use one instance per thread; instances in several threads or processes
    may share one account (changes are serialised by the database).
    """

    def __init__(
        self,
        engine: Engine,
        account_id: str,
        *,
        costs: ExecutionCosts,
        initial_cash: float,
        clock: Clock,
        min_qty: Mapping[str, float] | None = None,
        currency: str = "USD",
    ) -> None:
        """Open the account ``account_id``, creating it (and the ledger tables) if needed.

        Args:
            engine: the project database (``cappuccino_core.db.make_engine``).
            account_id: the virtual account, one per model.
            costs: fees, slippage and the minimum order notional (as in training).
            initial_cash: cash the account starts with; must match a stored account's.
            clock: what ``submitted_at`` and ``canceled_at`` are read from.
            min_qty: smallest order quantity per symbol (as Alpaca's ``min_order_size``).
            currency: quote currency of the account.

        Raises:
            ValueError: a bad argument, or a stored account with another initial cash or currency.
        """
        if not account_id or len(account_id) > 64:
            raise ValueError(f"account_id must be 1-64 characters, got {account_id!r}")
        if not math.isfinite(initial_cash) or initial_cash < 0:
            raise ValueError(f"initial_cash must be a finite number >= 0, got {initial_cash!r}")
        self._min_qty = {parse_symbol(s): float(q) for s, q in (min_qty or {}).items()}
        for symbol, quantity in self._min_qty.items():
            if not math.isfinite(quantity) or quantity < 0:
                raise ValueError(f"min_qty for {symbol} must be a finite number >= 0, got {quantity!r}")
        self.account_id = account_id
        self._costs = costs
        self._clock = clock
        self._sessions = session_factory(engine)
        Base.metadata.create_all(engine, tables=_TABLES)
        self._open_account(initial_cash, currency)

    def __repr__(self) -> str:
        return f"SimBroker(account_id={self.account_id!r})"

    # -- reading ---------------------------------------------------------------------------

    def account(self) -> Account:
        """Return cash and equity (positions valued at the latest close given to ``on_bar``)."""
        with self._sessions() as session:
            row = self._account_row(session)
            value = 0.0
            for position in self._positions(session).values():
                if position.market_value is None:  # on_bar marks every symbol it fills
                    raise RuntimeError(f"{self.account_id}: position in {position.symbol} has no mark")
                value += position.market_value
            return Account(cash=row.cash, equity=row.cash + value, currency=row.currency)

    def positions(self) -> dict[str, Position]:
        """Return the open positions by symbol (sorted)."""
        with self._sessions() as session:
            return self._positions(session)

    def get_order(self, order_id: str) -> Order:
        """Return the order with this id, else the one with this client order id.

        Raises:
            OrderNotFound: the account has no such order.
        """
        with self._sessions() as session:
            return _to_order(self._order_row(session, order_id, by_client_id=True))

    def orders(self) -> list[Order]:
        """Return every order of the account in submission order."""
        with self._sessions() as session:
            rows = session.scalars(select(SimOrderRow).where(SimOrderRow.account_id == self.account_id)
                                   .order_by(SimOrderRow.seq))
            return [_to_order(row) for row in rows]

    def fills(self) -> list[Fill]:
        """Return every fill of the account in booking order."""
        with self._sessions() as session:
            rows = session.scalars(select(SimFillRow).where(SimFillRow.account_id == self.account_id)
                                   .order_by(SimFillRow.id))
            return [Fill(r.order_id, r.symbol, OrderSide(r.side), r.units, r.price, r.notional, r.fee, r.filled_at)
                    for r in rows]

    # -- orders ----------------------------------------------------------------------------

    def submit_order(
        self,
        symbol: str,
        side: OrderSide,
        *,
        qty: float | None = None,
        notional: float | None = None,
        client_order_id: str,
    ) -> Order:
        """Accept a market order as ``new``; it fills on the next ``on_bar``.

        Resubmitting a ``client_order_id`` returns the stored order unchanged.

        Raises:
            InvalidOrder: a malformed order, one below a minimum, or a reused id.
            InsufficientFunds: cash (less open buys) or units (less open sells) fall short
                at the latest mark.
        """
        symbol, side, qty, notional = check_order_request(symbol, side, qty, notional, client_order_id)
        with self._sessions.begin() as session:
            account = self._lock(session)
            existing = session.scalars(select(SimOrderRow).where(
                SimOrderRow.account_id == self.account_id,
                SimOrderRow.client_order_id == client_order_id)).one_or_none()
            if existing is not None:
                logger.info("%s: order %s already submitted; returning it", self.account_id, client_order_id)
                return refuse_reused_id(_to_order(existing), symbol, side, qty, notional)
            self._check_submission(session, account, symbol, side, qty, notional, client_order_id)
            row = self._insert_order(session, account, symbol, side, qty, notional, client_order_id)
            logger.info("%s: accepted %s %s qty=%s notional=%s as %s",
                        self.account_id, side.value, symbol, qty, notional, client_order_id)
            return _to_order(row)

    def cancel_order(self, order_id: str) -> None:
        """Cancel an open order.

        Raises:
            OrderNotFound: no order with this id.
            InvalidOrder: the order is no longer open.
        """
        with self._sessions.begin() as session:
            self._lock(session)
            row = self._order_row(session, order_id, by_client_id=False)
            if not OrderStatus(row.status).is_open:
                raise InvalidOrder(f"order {order_id} is {row.status}, not cancelable",
                                   client_order_id=row.client_order_id)
            self._cancel(row)

    def cancel_all(self) -> list[str]:
        """Cancel every open order; return their ids in submission order."""
        with self._sessions.begin() as session:
            self._lock(session)
            return [self._cancel(row) for row in self._open_rows(session)]

    def close_all(self) -> list[Order]:
        """Cancel open orders and place a sell of every position's units (they fill next bar).

        The closing sells skip the submission checks; one that a minimum refuses is
        ``rejected`` with its reason when it would fill.
        """
        with self._sessions.begin() as session:
            account = self._lock(session)
            for row in self._open_rows(session):
                self._cancel(row)
            orders = []
            for symbol, position in self._positions(session).items():
                client_order_id = f"close-{symbol_key(symbol)}-{account.order_seq + 1}"
                row = self._insert_order(session, account, symbol, OrderSide.SELL, position.qty, None, client_order_id)
                orders.append(_to_order(row))
            logger.info("%s: closing %d position(s)", self.account_id, len(orders))
            return orders

    # -- the market ------------------------------------------------------------------------

    def on_bar(
        self, bar_time: datetime, prices_open: Mapping[str, float], prices_close: Mapping[str, float]
    ) -> list[Order]:
        """Fill pending orders at this bar's open, then mark positions at its close.

        Pending orders fill sells first, then buys, each in submission order; an order whose
        symbol has no open price this bar stays pending. Returns the orders filled or
        rejected on this bar.

        Args:
            bar_time: the bar's open time (UTC-aware), later than the last bar processed.
            prices_open: open price per symbol (the fill reference).
            prices_close: close price per symbol; must cover every symbol in ``prices_open``.

        Raises:
            ValueError: a naive or non-increasing ``bar_time``, or a missing or bad price.
        """
        bar_time = ensure_utc(bar_time)
        opens = _check_prices("open", bar_time, prices_open)
        closes = _check_prices("close", bar_time, prices_close)
        missing = sorted(set(opens) - set(closes))
        if missing:
            raise ValueError(f"bar {bar_time.isoformat()}: no close price for {', '.join(missing)}")
        with self._sessions.begin() as session:
            account = self._lock(session)
            if account.last_bar_time is not None and bar_time <= account.last_bar_time:
                raise ValueError(f"{self.account_id}: bar {bar_time.isoformat()} is not after the last bar "
                                 f"processed, {account.last_bar_time.isoformat()}")
            rows = self._open_rows(session)
            touched = []
            for row in [r for r in rows if r.side == OrderSide.SELL] + [r for r in rows if r.side == OrderSide.BUY]:
                if row.symbol not in opens:
                    logger.info("%s: no open price for %s at %s; order %s stays pending",
                                self.account_id, row.symbol, bar_time.isoformat(), row.client_order_id)
                    continue
                self._fill_or_reject(session, account, row, opens[row.symbol], bar_time)
                touched.append(_to_order(row))
            for symbol, price in closes.items():
                session.merge(SimMarkRow(account_id=self.account_id, symbol=symbol, price=price, as_of=bar_time))
            account.last_bar_time = bar_time
            return touched

    # -- internals -------------------------------------------------------------------------

    def feed_bar(self, bars: BarProvider, bar_time: datetime) -> None:
        """Give the account bar ``bar_time`` of ``bars`` once: fill pending orders at its open, mark at its close.

        A bar the account has seen, or one not available for every symbol, is left out (the trader
        then records the missing bar; pending orders wait for the next one).
        """
        bar_time = ensure_utc(bar_time)
        with self._sessions() as session:
            seen = self._account_row(session).last_bar_time
        if seen is not None and bar_time <= seen:
            return
        try:
            panel = bars.panel_until(bar_time)
        except MissingBarsError:
            return
        row = panel.num_bars - 1
        if int(panel.timestamps[row]) != bar_time_ns(bar_time):
            return
        opens = {s: float(p) for s, p in zip(panel.symbols, np.asarray(panel.open[row]), strict=True)}
        closes = {s: float(p) for s, p in zip(panel.symbols, np.asarray(panel.close[row]), strict=True)}
        self.on_bar(bar_time, opens, closes)

    def _open_account(self, initial_cash: float, currency: str) -> None:
        """Create the account row, or check a stored one matches."""
        try:
            with self._sessions.begin() as session:
                if session.get(SimAccountRow, self.account_id) is None:
                    session.add(SimAccountRow(
                        account_id=self.account_id, currency=currency, initial_cash=initial_cash,
                        cash=initial_cash, order_seq=0, revision=0, created_at=self._clock.now()))
                    logger.info("%s: opened with %.2f %s", self.account_id, initial_cash, currency)
                    return
        except IntegrityError:  # another process created it between our read and insert
            logger.info("%s: created concurrently; using the stored account", self.account_id)
        with self._sessions() as session:
            row = self._account_row(session)
        if row.initial_cash != initial_cash or row.currency != currency:
            raise ValueError(f"account {self.account_id!r} is stored with initial cash {row.initial_cash} "
                             f"{row.currency}, not {initial_cash} {currency}")

    def _account_row(self, session: Session) -> SimAccountRow:
        row = session.get(SimAccountRow, self.account_id, populate_existing=True)
        if row is None:
            raise RuntimeError(f"account {self.account_id!r} has vanished from the ledger")
        return row

    def _lock(self, session: Session) -> SimAccountRow:
        """Serialise changes to the account: write its row first, then read it."""
        result = session.execute(update(SimAccountRow).where(SimAccountRow.account_id == self.account_id)
                                 .values(revision=SimAccountRow.revision + 1))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise RuntimeError(f"account {self.account_id!r} has vanished from the ledger")
        return self._account_row(session)

    def _positions(self, session: Session) -> dict[str, Position]:
        marks = {m.symbol: m.price for m in session.scalars(
            select(SimMarkRow).where(SimMarkRow.account_id == self.account_id))}
        rows = session.scalars(select(SimPositionRow).where(SimPositionRow.account_id == self.account_id)
                               .order_by(SimPositionRow.symbol))
        return {r.symbol: Position(r.symbol, r.qty, r.avg_entry_price,
                                   r.qty * marks[r.symbol] if r.symbol in marks else None) for r in rows}

    def _mark(self, session: Session, symbol: str) -> float | None:
        row = session.get(SimMarkRow, (self.account_id, symbol))
        return None if row is None else row.price

    def _open_rows(self, session: Session) -> list[SimOrderRow]:
        return list(session.scalars(select(SimOrderRow).where(
            SimOrderRow.account_id == self.account_id, SimOrderRow.status.in_(_OPEN)).order_by(SimOrderRow.seq)))

    def _order_row(self, session: Session, order_id: str, *, by_client_id: bool) -> SimOrderRow:
        where = SimOrderRow.account_id == self.account_id
        row = session.scalars(select(SimOrderRow).where(where, SimOrderRow.id == order_id)).one_or_none()
        if row is None and by_client_id:
            row = session.scalars(select(SimOrderRow).where(
                where, SimOrderRow.client_order_id == order_id)).one_or_none()
        if row is None:
            raise OrderNotFound(f"{self.account_id}: no order {order_id!r}")
        return row

    def _insert_order(self, session: Session, account: SimAccountRow, symbol: str, side: OrderSide,
                      qty: float | None, notional: float | None, client_order_id: str) -> SimOrderRow:
        account.order_seq += 1
        order_id = str(uuid.uuid5(_ORDER_ID_NAMESPACE, f"{self.account_id}\n{client_order_id}"))
        row = SimOrderRow(id=order_id, account_id=self.account_id, seq=account.order_seq,
                          client_order_id=client_order_id, symbol=symbol, side=side.value, qty=qty,
                          notional=notional, status=OrderStatus.NEW.value, filled_qty=0.0,
                          submitted_at=self._clock.now())
        session.add(row)
        session.flush()
        return row

    def _cancel(self, row: SimOrderRow) -> str:
        row.status = OrderStatus.CANCELED.value
        row.canceled_at = self._clock.now()
        logger.info("%s: canceled order %s", self.account_id, row.client_order_id)
        return row.id

    def _check_submission(self, session: Session, account: SimAccountRow, symbol: str, side: OrderSide,
                          qty: float | None, notional: float | None, client_order_id: str) -> None:
        """Refuse what Alpaca refuses at submission: minimums and a shortfall at the latest mark."""
        mark = self._mark(session, symbol)
        min_qty = self._min_qty.get(symbol, 0.0)
        units = qty if qty is not None else (notional / mark if mark else None)
        value = notional if notional is not None else (qty * mark if mark else None)
        if units is not None and units < min_qty:
            raise InvalidOrder(f"qty must be >= {min_qty} for {symbol}; order {client_order_id} is {units:.10g}",
                               client_order_id=client_order_id)
        if value is not None and value < self._costs.min_order_notional:
            raise InvalidOrder(f"order {client_order_id} is worth {value:.6g} {account.currency}, below the minimum "
                               f"{self._costs.min_order_notional}", client_order_id=client_order_id)
        open_rows = self._open_rows(session)
        if side == OrderSide.BUY:
            reserved = sum(self._buy_cost(session, r.symbol, r.qty, r.notional) or 0.0
                           for r in open_rows if r.side == OrderSide.BUY)
            needed = self._buy_cost(session, symbol, qty, notional)
            available = account.cash - reserved
            if needed is not None and needed > available:
                raise InsufficientFunds(f"insufficient balance for {account.currency} (requested: {needed:.2f}, "
                                        f"available: {available:.2f}) for order {client_order_id}",
                                        client_order_id=client_order_id)
            return
        held = session.get(SimPositionRow, (self.account_id, symbol))
        held_qty = held.qty if held is not None else 0.0
        reserved = sum(r.qty if r.qty is not None else (r.notional / mark if mark else 0.0)
                       for r in open_rows if r.side == OrderSide.SELL and r.symbol == symbol)
        available = held_qty - reserved
        if (units is not None and units > available) or available <= 0:
            requested = f"{units:.10g}" if units is not None else f"{notional} {account.currency} worth"
            raise InsufficientFunds(f"insufficient balance for {symbol.split('/')[0]} (requested: {requested}, "
                                    f"available: {available:.10g}) for order {client_order_id}",
                                    client_order_id=client_order_id)

    def _buy_cost(self, session: Session, symbol: str, qty: float | None, notional: float | None) -> float | None:
        """Cash a buy would take at the latest mark (None for a qty buy before any mark)."""
        if notional is not None:
            return notional
        mark = self._mark(session, symbol)
        return None if mark is None or qty is None else -fill_order("buy", mark, self._costs, quantity=qty).cash_change

    def _fill_or_reject(self, session: Session, account: SimAccountRow, row: SimOrderRow,
                        price: float, bar_time: datetime) -> None:
        """Fill ``row`` at ``price`` with costs, or reject it with the reason it no longer fits."""
        fill = fill_order(row.side, price, self._costs, quantity=row.qty, notional=row.notional)
        position = session.get(SimPositionRow, (self.account_id, row.symbol))
        held = position.qty if position is not None else 0.0
        min_qty = self._min_qty.get(row.symbol, 0.0)
        reason = None
        if fill.units < min_qty:
            reason = f"quantity {fill.units:.10g} is below the minimum {min_qty} for {row.symbol}"
        elif fill.notional < self._costs.min_order_notional:
            reason = f"notional {fill.notional:.6g} is below the minimum {self._costs.min_order_notional}"
        elif row.side == OrderSide.SELL and fill.units > held:
            reason = f"insufficient quantity: selling {fill.units:.10g} {row.symbol} but holding {held:.10g}"
        elif row.side == OrderSide.BUY and -fill.cash_change > account.cash:
            reason = f"insufficient cash: needs {-fill.cash_change:.2f} but holds {account.cash:.2f}"
        if reason is not None:
            row.status, row.reason = OrderStatus.REJECTED.value, reason
            logger.info("%s: rejected order %s at %s: %s", self.account_id, row.client_order_id,
                        bar_time.isoformat(), reason)
            return
        account.cash += fill.cash_change
        if row.side == OrderSide.BUY:
            if position is None:
                session.add(SimPositionRow(account_id=self.account_id, symbol=row.symbol,
                                           qty=fill.units, avg_entry_price=fill.price))
            else:
                total = position.qty + fill.units
                position.avg_entry_price = (position.qty * position.avg_entry_price + fill.units * fill.price) / total
                position.qty = total
        else:
            assert position is not None  # the check above refuses a sell with nothing held
            position.qty -= fill.units
            if position.qty <= _DUST * held:
                logger.debug("%s: %s position closed (float remainder %.3g dropped)",
                             self.account_id, row.symbol, position.qty)
                session.delete(position)
        session.add(SimFillRow(order_id=row.id, account_id=self.account_id, symbol=row.symbol, side=row.side,
                               units=fill.units, price=fill.price, notional=fill.notional, fee=fill.fee,
                               filled_at=bar_time))
        row.status = OrderStatus.FILLED.value
        row.filled_qty, row.filled_avg_price, row.fee, row.filled_at = fill.units, fill.price, fill.fee, bar_time
        logger.info("%s: filled %s %s %.10g @ %.6g (fee %.6g) for order %s", self.account_id, row.side,
                    row.symbol, fill.units, fill.price, fill.fee, row.client_order_id)


def _check_prices(label: str, bar_time: datetime, prices: Mapping[str, float]) -> dict[str, float]:
    """Return prices keyed by canonical symbol; refuse a non-finite or non-positive one."""
    checked = {}
    for symbol, price in prices.items():
        if not isinstance(price, int | float) or not math.isfinite(price) or price <= 0:
            raise ValueError(f"bar {bar_time.isoformat()}: {label} price of {symbol} is {price!r}, "
                             "not a positive number")
        checked[parse_symbol(symbol)] = float(price)
    return checked


def _to_order(row: SimOrderRow) -> Order:
    return Order(
        id=row.id, client_order_id=row.client_order_id, symbol=row.symbol, side=OrderSide(row.side),
        qty=row.qty, notional=row.notional, status=OrderStatus(row.status), filled_qty=row.filled_qty,
        filled_avg_price=row.filled_avg_price, fee=row.fee, submitted_at=row.submitted_at,
        filled_at=row.filled_at, reason=row.reason,
    )
