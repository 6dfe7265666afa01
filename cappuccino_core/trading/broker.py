"""The broker contract: one protocol that the simulated and the Alpaca brokers both honour.

A trader only talks to a ``Broker``; sandbox (``SimBroker``), paper and live
(``AlpacaBroker``) are interchangeable, and ``tests/trading/test_broker_contract.py`` runs
one suite against every implementation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from cappuccino_core.data.symbols import parse_symbol


class OrderSide(StrEnum):
    """Which way an order trades."""

    BUY = "buy"
    SELL = "sell"


class OrderStatus(StrEnum):
    """Where an order is in its life (Alpaca's set of statuses, so every reply maps)."""

    PENDING_NEW = "pending_new"
    NEW = "new"
    ACCEPTED = "accepted"
    ACCEPTED_FOR_BIDDING = "accepted_for_bidding"
    PARTIALLY_FILLED = "partially_filled"
    DONE_FOR_DAY = "done_for_day"
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"
    PENDING_REVIEW = "pending_review"
    HELD = "held"
    CALCULATED = "calculated"
    STOPPED = "stopped"
    SUSPENDED = "suspended"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REPLACED = "replaced"
    REJECTED = "rejected"

    @property
    def is_open(self) -> bool:
        """Return True while the order may still fill (any status but the final ones)."""
        return self not in _FINAL_STATUSES


_FINAL_STATUSES = frozenset({
    OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REPLACED, OrderStatus.REJECTED,
})


@dataclass(frozen=True)
class Order:
    """A market order as the broker reports it.

    Attributes:
        id: the broker's order id.
        client_order_id: our id for the order (unique per account; the idempotency key).
        symbol: ``BASE/QUOTE``.
        side: buy or sell.
        qty: ordered units, or None for an order by notional.
        notional: ordered quote amount, or None for an order by quantity.
        status: the order's status.
        filled_qty: units filled so far (0 before any fill).
        filled_avg_price: average fill price, None before any fill.
        fee: fee paid in quote currency, None when the broker does not report it (Alpaca).
        submitted_at: when the broker accepted the order (UTC).
        filled_at: when it filled (UTC), None while not filled.
        reason: why the broker rejected or refused it, None otherwise.
    """

    id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    qty: float | None
    notional: float | None
    status: OrderStatus
    filled_qty: float
    filled_avg_price: float | None
    fee: float | None
    submitted_at: datetime
    filled_at: datetime | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Position:
    """A long holding: units, average entry price and value at the broker's latest mark."""

    symbol: str
    qty: float
    avg_entry_price: float
    market_value: float | None


@dataclass(frozen=True)
class Account:
    """Cash and equity (cash plus positions at market) in ``currency``."""

    cash: float
    equity: float
    currency: str


class BrokerError(Exception):
    """A broker refused or failed a request. Messages never hold credentials.

    Attributes:
        client_order_id: the order concerned, when there is one.
    """

    def __init__(self, message: str, *, client_order_id: str | None = None) -> None:
        super().__init__(message)
        self.client_order_id = client_order_id


class InsufficientFunds(BrokerError):
    """Not enough cash for a buy or units for a sell (Alpaca: HTTP 403, code 40310000)."""


class InvalidOrder(BrokerError):
    """The order is malformed or refused by a rule: bad amount, minimum, reused id (HTTP 422)."""


class BrokerUnavailable(BrokerError):
    """The broker kept failing (429, 5xx, timeouts) and the retries are exhausted."""


class OrderNotFound(BrokerError):
    """No order with that id or client order id (HTTP 404)."""


@runtime_checkable
class Broker(Protocol):
    """Places market orders and reports an account's cash, positions and orders.

    Contract (every implementation, checked by the shared contract suite):

    * **Symbols** are ``BASE/QUOTE`` (``BTC/USD``); quantities are base units, notionals
      and cash are quote currency (``Account.currency``).
    * **Time**: every datetime returned is UTC-aware.
    * **Idempotency**: ``client_order_id`` is the key of an order. Submitting an id that
      the account has already used returns the existing order, whatever its status, and
      never places a second order; this holds across restarts and concurrent callers.
      Reusing an id for a different symbol, side or amount raises ``InvalidOrder``.
    * **Amounts**: exactly one of ``qty`` and ``notional``, finite and positive. A buy by
      notional spends that much cash, fees included.
    * **Errors** are typed: ``InsufficientFunds``, ``InvalidOrder``, ``OrderNotFound``,
      ``BrokerUnavailable`` (all ``BrokerError``); a refused order is never half-placed,
      so callers may record the error and carry on.
    * **Ordering**: lists come in the order the broker handled the orders (submission
      order); ``positions`` holds only non-zero holdings.
    * **Thread safety**: none promised; use one instance per thread.
    """

    def account(self) -> Account:
        """Return cash and equity."""
        ...

    def positions(self) -> dict[str, Position]:
        """Return the open positions by symbol."""
        ...

    def submit_order(
        self,
        symbol: str,
        side: OrderSide,
        *,
        qty: float | None = None,
        notional: float | None = None,
        client_order_id: str,
    ) -> Order:
        """Place a market order (or return the existing order with ``client_order_id``)."""
        ...

    def get_order(self, order_id: str) -> Order:
        """Return the order with this broker id or client order id; ``OrderNotFound`` if none."""
        ...

    def cancel_order(self, order_id: str) -> None:
        """Cancel an open order (by broker id); ``InvalidOrder`` if it is no longer open."""
        ...

    def cancel_all(self) -> list[str]:
        """Cancel every open order; return the ids whose cancellation was accepted."""
        ...

    def close_all(self) -> list[Order]:
        """Cancel open orders and sell every position; return the closing orders."""
        ...


def check_order_request(
    symbol: str, side: str, qty: float | None, notional: float | None, client_order_id: str
) -> tuple[str, OrderSide, float | None, float | None]:
    """Check the parts of an order every broker refuses alike; return them in canonical form.

    Returns:
        ``(symbol, side, qty, notional)`` with ``BASE/QUOTE`` symbol and float amounts.

    Raises:
        InvalidOrder: a bad symbol, side, client order id, or not exactly one finite
            positive amount.
    """
    if not isinstance(client_order_id, str) or not client_order_id.strip() or len(client_order_id) > 128:
        raise InvalidOrder(f"client_order_id must be a non-empty string of at most 128 characters, "
                           f"got {client_order_id!r}")
    try:
        canonical = parse_symbol(symbol)
        order_side = OrderSide(side)
    except ValueError as error:
        raise InvalidOrder(str(error), client_order_id=client_order_id) from None
    if (qty is None) == (notional is None):
        raise InvalidOrder(f"order {client_order_id}: give exactly one of qty and notional "
                           f"(got qty={qty!r}, notional={notional!r})", client_order_id=client_order_id)
    name, amount = ("qty", qty) if qty is not None else ("notional", notional)
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount) or amount <= 0:
        raise InvalidOrder(f"order {client_order_id}: {name} must be > 0, got {amount!r}",
                           client_order_id=client_order_id)
    return canonical, order_side, None if qty is None else float(qty), None if notional is None else float(notional)


def same_request(order: Order, symbol: str, side: OrderSide, qty: float | None, notional: float | None) -> bool:
    """Return True when ``order`` was placed with this symbol, side and amount (to 1e-9 relative)."""

    def close(a: float | None, b: float | None) -> bool:
        if a is None or b is None:
            return a is None and b is None
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)

    return order.symbol == symbol and order.side == side and close(order.qty, qty) and close(order.notional, notional)


def refuse_reused_id(order: Order, symbol: str, side: OrderSide, qty: float | None, notional: float | None) -> Order:
    """Return ``order`` if it matches the request; raise ``InvalidOrder`` if its id was reused.

    Raises:
        InvalidOrder: the client order id names an order for another symbol, side or amount.
    """
    if not same_request(order, symbol, side, qty, notional):
        asked = f"{side.value} {symbol} qty={qty} notional={notional}"
        held = f"{order.side.value} {order.symbol} qty={order.qty} notional={order.notional}"
        raise InvalidOrder(f"client_order_id {order.client_order_id!r} was already used for another order "
                           f"({held}); refused {asked}", client_order_id=order.client_order_id)
    return order
