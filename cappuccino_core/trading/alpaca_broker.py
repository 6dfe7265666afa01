"""Alpaca paper and live trading through alpaca-py's ``TradingClient``: a ``Broker``.

How requests behave:

* Retries are ours, not the SDK's (``_TradingClient`` turns the SDK's fixed-sleep 429
  retries off and gives every request a timeout). HTTP 429, 5xx, timeouts and connection
  errors are retried with exponential backoff (``backoff_seconds * 2**k``, capped at
  ``max_backoff_seconds``) through an injected ``sleep``, at most ``max_retries`` times;
  then ``BrokerUnavailable``.
* Retrying an order is safe because every order carries our ``client_order_id`` and
  Alpaca refuses a second order with the same id (HTTP 422 "client_order_id must be
  unique"). When a submission is refused (403 or 422) we look the id up: if Alpaca holds
  an order with it (an earlier attempt whose reply was lost, or a resubmission), that
  order is returned; otherwise the refusal is raised as a typed error.
* Alpaca's 403 with code 40310000 ("insufficient balance ...") is ``InsufficientFunds``;
  other 401/403 mean the credentials were refused; 400/422 are ``InvalidOrder``; 404 is
  ``OrderNotFound``. No message or log line holds the API key or secret.
* Crypto positions come back as ``BTCUSD``; every symbol we return is ``BTC/USD``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from alpaca.common.enums import BaseURL
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide as AlpacaOrderSide
from alpaca.trading.enums import QueryOrderStatus, TimeInForce
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.requests import GetOrdersRequest, MarketOrderRequest
from pydantic import ValidationError

from cappuccino_core.alpaca_http import TRANSIENT_ERRORS, TimeoutSession
from cappuccino_core.clock import ensure_utc
from cappuccino_core.data.symbols import parse_symbol
from cappuccino_core.trading.broker import (
    Account,
    BrokerError,
    BrokerUnavailable,
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

T = TypeVar("T")
_INSUFFICIENT_BALANCE = 40310000  # Alpaca's code for "insufficient balance/buying power"
_QUOTES = ("USDT", "USDC", "USD", "BTC")  # quote currencies of Alpaca crypto pairs, longest first
_DECIMALS = 9  # Alpaca takes qty and notional with at most 9 decimals
_MAX_OPEN_ORDERS = 500  # Alpaca's cap on one order listing


@dataclass(frozen=True)
class PositionDifference:
    """A symbol whose units at Alpaca differ from what we expected."""

    symbol: str
    expected_qty: float
    actual_qty: float


@dataclass(frozen=True)
class ReconcileReport:
    """How Alpaca's orders and positions compare with our record, at start-up.

    Attributes:
        open_orders: every order open at Alpaca.
        unknown_open_orders: open orders whose client order id is not in our record.
        missing_client_order_ids: ids in our record Alpaca has no order for.
        position_differences: symbols whose units differ from the expected ones (only
            when expected positions were given).
    """

    open_orders: tuple[Order, ...]
    unknown_open_orders: tuple[Order, ...]
    missing_client_order_ids: tuple[str, ...]
    position_differences: tuple[PositionDifference, ...]

    @property
    def clean(self) -> bool:
        """Return True when nothing differs."""
        return not (self.unknown_open_orders or self.missing_client_order_ids or self.position_differences)


class _TradingClient(TradingClient):
    """The SDK trading client with its own retries off and a request timeout.

    ``RESTClient`` keeps its retry settings in ``_retry``/``_retry_codes`` and its HTTP
    session in ``_session`` (alpaca-py 0.44, ``alpaca/common/rest.py``); their presence is
    checked so an SDK change fails loudly instead of silently retrying twice.
    """

    def __init__(self, *, api_key: str, secret_key: str, paper: bool,
                 url_override: str | None, timeout_seconds: float) -> None:
        super().__init__(api_key=api_key, secret_key=secret_key, paper=paper, url_override=url_override)
        for attribute in ("_retry", "_retry_codes", "_session"):
            if not hasattr(self, attribute):
                raise RuntimeError(f"alpaca-py no longer has RESTClient.{attribute}; review _TradingClient")
        self._retry = 0
        self._retry_codes = []
        self._session = TimeoutSession(timeout_seconds)


class _PositionGone(BrokerError):
    """Alpaca holds no position in the symbol (HTTP 404 on a position)."""


class AlpacaBroker:
    """A ``Broker`` over an Alpaca paper or live account (crypto, market orders, GTC).

    Thread safety: one instance holds one HTTP session; use one instance per thread.
    """

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        paper: bool,
        url_override: str | None = None,
        max_retries: int = 5,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
        timeout_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Create the broker (no request is sent until a method is called).

        Args:
            api_key: Alpaca API key id (paper keys when ``paper``).
            secret_key: Alpaca API secret.
            paper: trade the paper account; False trades real money.
            url_override: base URL instead of Alpaca's (tests, proxies).
            max_retries: retries per request after the first attempt (0 = no retry).
            backoff_seconds: wait before the first retry; doubles on each further retry.
            max_backoff_seconds: cap on one wait.
            timeout_seconds: connect and read timeout of each HTTP request.
            sleep: how to wait between retries (tests pass a recorder).

        Raises:
            ValueError: a key is missing, or a number is out of range.
        """
        if not api_key or not secret_key:
            raise ValueError("AlpacaBroker needs both an API key and a secret key")
        if max_retries < 0 or backoff_seconds < 0 or max_backoff_seconds < backoff_seconds or timeout_seconds <= 0:
            raise ValueError("need max_retries >= 0, 0 <= backoff_seconds <= max_backoff_seconds, timeout_seconds > 0")
        default = BaseURL.TRADING_PAPER if paper else BaseURL.TRADING_LIVE
        self._base_url = (url_override or default.value).rstrip("/")
        self._client = _TradingClient(api_key=api_key, secret_key=secret_key, paper=paper,
                                      url_override=self._base_url, timeout_seconds=timeout_seconds)
        self._secrets = (api_key, secret_key)
        self._paper = paper
        self._max_retries = max_retries
        self._backoff_seconds = backoff_seconds
        self._max_backoff_seconds = max_backoff_seconds
        self._sleep = sleep
        self._submitted: list[str] = []

    def __repr__(self) -> str:
        return f"AlpacaBroker(base_url={self._base_url!r}, paper={self._paper})"

    @property
    def base_url(self) -> str:
        """The trading base URL requests go to (never holds credentials)."""
        return self._base_url

    @property
    def submitted_client_order_ids(self) -> tuple[str, ...]:
        """Client order ids this instance submitted or found, in order (``reconcile``'s default record)."""
        return tuple(self._submitted)

    # -- reading ---------------------------------------------------------------------------

    def account(self) -> Account:
        """Return cash, equity and currency as Alpaca reports them."""
        raw = self._call("get account", self._client.get_account)
        if raw.cash is None or raw.equity is None or raw.currency is None:
            raise BrokerError(f"get account: Alpaca's reply lacks cash, equity or currency "
                              f"(cash={raw.cash!r}, equity={raw.equity!r}, currency={raw.currency!r})")
        return Account(cash=float(raw.cash), equity=float(raw.equity), currency=raw.currency)

    def positions(self) -> dict[str, Position]:
        """Return the open positions by ``BASE/QUOTE`` symbol (sorted)."""
        raw = self._call("list positions", self._client.get_all_positions)
        positions = {}
        for item in raw:
            symbol = alpaca_symbol_to_pair(item.symbol)
            market_value = None if item.market_value is None else float(item.market_value)
            positions[symbol] = Position(symbol, float(item.qty), float(item.avg_entry_price), market_value)
        return dict(sorted(positions.items()))

    def get_order(self, order_id: str) -> Order:
        """Return the order with this Alpaca id, else the one with this client order id.

        Raises:
            OrderNotFound: Alpaca has no such order.
        """
        if _is_uuid(order_id):
            found = self._lookup(f"get order {order_id}", lambda: self._client.get_order_by_id(order_id))
            if found is not None:
                return found
        found = self._find_by_client_id(order_id)
        if found is None:
            raise OrderNotFound(f"Alpaca has no order with id or client order id {order_id!r}")
        return found

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
        """Place a GTC market order (quantities and notionals rounded to 9 decimals).

        Raises:
            InvalidOrder: a malformed order, one Alpaca refuses (422), or a reused id.
            InsufficientFunds: Alpaca's 403 insufficient balance.
            BrokerUnavailable: retries exhausted.
            BrokerError: credentials refused or another refusal.
        """
        symbol, side, qty, notional = check_order_request(symbol, side, qty, notional, client_order_id)
        qty, notional = _round_amount(qty), _round_amount(notional)
        if qty == 0 or notional == 0:
            raise InvalidOrder(f"order {client_order_id}: amount rounds to 0 at {_DECIMALS} decimals",
                               client_order_id=client_order_id)
        request = MarketOrderRequest(symbol=symbol, side=AlpacaOrderSide(side.value), qty=qty, notional=notional,
                                     time_in_force=TimeInForce.GTC, client_order_id=client_order_id)
        what = f"submit order {client_order_id}"
        try:
            order = _to_order(self._call(what, lambda: self._client.submit_order(request),
                                         client_order_id=client_order_id))
        except (InsufficientFunds, InvalidOrder) as refusal:
            existing = self._find_by_client_id(client_order_id)
            if existing is None:
                raise
            logger.info("%s: refused (%s) but Alpaca already holds order %s; returning it",
                        what, refusal, existing.id)
            order = existing
        else:
            logger.info("%s: placed %s %s qty=%s notional=%s as Alpaca order %s",
                        what, side.value, symbol, qty, notional, order.id)
        if client_order_id not in self._submitted:
            self._submitted.append(client_order_id)
        return refuse_reused_id(order, symbol, side, qty, notional)

    def cancel_order(self, order_id: str) -> None:
        """Ask Alpaca to cancel an open order (it may pass through ``pending_cancel``).

        Raises:
            OrderNotFound: no order with this id (or not an Alpaca order id).
            InvalidOrder: the order is no longer cancelable (422).
        """
        if not _is_uuid(order_id):
            raise OrderNotFound(f"{order_id!r} is not an Alpaca order id")
        self._call(f"cancel order {order_id}", lambda: self._client.cancel_order_by_id(order_id))
        logger.info("cancel order %s: accepted", order_id)

    def cancel_all(self) -> list[str]:
        """Cancel every open order; return the ids whose cancellation Alpaca accepted.

        Raises:
            BrokerError: Alpaca refused some cancellations (the message lists them all).
        """
        replies = self._call("cancel all orders", self._client.cancel_orders)
        accepted = [str(r.id) for r in replies if 200 <= r.status < 300]
        refused = [f"{r.id} (HTTP {r.status}: {self._redact(json.dumps(r.body))[:100]})"
                   for r in replies if not 200 <= r.status < 300]
        if refused:
            raise BrokerError(f"cancel all orders: Alpaca refused {len(refused)} cancellation(s): "
                              f"{'; '.join(refused)}; accepted: {', '.join(accepted) or 'none'}")
        logger.info("cancel all orders: %d accepted", len(accepted))
        return accepted

    def close_all(self) -> list[Order]:
        """Cancel open orders, then close every position with a market order; return those orders.

        A position already gone when its close is sent is logged and skipped. After a
        failure, ``positions()`` shows what is left and ``close_all`` may be called again.
        """
        self.cancel_all()
        orders = []
        for symbol in self.positions():
            alpaca_symbol = symbol.replace("/", "")
            try:
                raw = self._call(f"close position {symbol}", lambda s=alpaca_symbol: self._client.close_position(s),
                                 missing=_PositionGone)
            except _PositionGone as gone:
                logger.warning("close position %s: already gone (%s)", symbol, gone)
                continue
            orders.append(_to_order(raw))
            logger.info("close position %s: Alpaca order %s", symbol, orders[-1].id)
        return orders

    def reconcile(
        self,
        expected_client_order_ids: Iterable[str] | None = None,
        expected_positions: Mapping[str, float] | None = None,
        *,
        qty_tolerance: float = 1e-9,
    ) -> ReconcileReport:
        """Compare our record with Alpaca's open orders and positions (for start-up).

        Args:
            expected_client_order_ids: the client order ids we placed; defaults to those
                this instance submitted. Each one not open is looked up (one request each).
            expected_positions: units we expect per symbol; None skips the position check.
            qty_tolerance: absolute difference in units still counted as equal.
        """
        known = list(self._submitted if expected_client_order_ids is None else expected_client_order_ids)
        listing = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=_MAX_OPEN_ORDERS)
        open_orders = [_to_order(o) for o in self._call("list open orders", lambda: self._client.get_orders(listing))]
        if len(open_orders) == _MAX_OPEN_ORDERS:
            logger.warning("reconcile: Alpaca listed %d open orders, its cap; more may exist", _MAX_OPEN_ORDERS)
        open_ids = {o.client_order_id for o in open_orders}
        unknown = tuple(o for o in open_orders if o.client_order_id not in set(known))
        missing = tuple(c for c in known if c not in open_ids and self._find_by_client_id(c) is None)
        differences: list[PositionDifference] = []
        if expected_positions is not None:
            expected = {parse_symbol(s): float(q) for s, q in expected_positions.items()}
            actual = {s: p.qty for s, p in self.positions().items()}
            for symbol in sorted(set(expected) | set(actual)):
                want, have = expected.get(symbol, 0.0), actual.get(symbol, 0.0)
                if abs(want - have) > qty_tolerance:
                    differences.append(PositionDifference(symbol, want, have))
        report = ReconcileReport(tuple(open_orders), unknown, missing, tuple(differences))
        log = logger.info if report.clean else logger.warning
        log("reconcile: %d open order(s), %d unknown, %d missing id(s), %d position difference(s)",
            len(open_orders), len(unknown), len(missing), len(differences))
        return report

    # -- requests --------------------------------------------------------------------------

    def _find_by_client_id(self, client_order_id: str) -> Order | None:
        """Return Alpaca's order with this client order id, or None when it has none."""
        return self._lookup(f"get order by client id {client_order_id}",
                            lambda: self._client.get_order_by_client_id(client_order_id))

    def _lookup(self, what: str, fetch: Callable[[], AlpacaOrder]) -> Order | None:
        """Return the fetched order, or None on Alpaca's 404."""
        try:
            return _to_order(self._call(what, fetch))
        except OrderNotFound:
            logger.debug("%s: not found", what)
            return None

    def _call(self, what: str, request: Callable[[], T], *, client_order_id: str | None = None,
              missing: type[BrokerError] = OrderNotFound) -> T:
        """Run one SDK call with bounded retries on 429, 5xx and transport errors."""
        attempts = 0
        while True:
            attempts += 1
            try:
                return request()
            except APIError as error:
                status = error.status_code
                if status is None or not (status == 429 or status >= 500):
                    raise self._refusal(what, error, client_order_id, missing) from None
                reason = f"HTTP {status}"
            except TRANSIENT_ERRORS as error:
                reason = f"{type(error).__name__}: {self._redact(str(error))[:200]}"
            except (ValidationError, requests.exceptions.JSONDecodeError) as error:
                detail = self._redact(str(error)).splitlines()[0][:200]
                raise BrokerError(f"{what}: Alpaca's reply is not what the SDK expects ({detail})",
                                  client_order_id=client_order_id) from None
            if attempts > self._max_retries:
                raise BrokerUnavailable(f"{what}: Alpaca failed {attempts} times (retries exhausted); "
                                        f"last error: {reason}", client_order_id=client_order_id)
            wait = min(self._max_backoff_seconds, self._backoff_seconds * 2 ** (attempts - 1))
            logger.warning("%s: %s; retry %d of %d in %.1f s", what, reason, attempts, self._max_retries, wait)
            self._sleep(wait)

    def _refusal(self, what: str, error: APIError, client_order_id: str | None,
                 missing: type[BrokerError]) -> BrokerError:
        """Return the typed error for a non-retryable Alpaca answer."""
        status = error.status_code
        code, message = _error_body(str(error))
        text = self._redact(message)[:300]
        detail = f"{what}: {text} (HTTP {status}, code {code})"
        if status == 403 and (code == _INSUFFICIENT_BALANCE or "insufficient" in text.lower()):
            return InsufficientFunds(detail, client_order_id=client_order_id)
        if status in (401, 403):
            return BrokerError(f"{what}: Alpaca refused the credentials (HTTP {status}); "
                               "check the API key and secret settings", client_order_id=client_order_id)
        if status == 404:
            return missing(detail, client_order_id=client_order_id)
        if status in (400, 422):
            return InvalidOrder(detail, client_order_id=client_order_id)
        return BrokerError(detail, client_order_id=client_order_id)

    def _redact(self, text: str) -> str:
        """Return ``text`` with the key and secret masked (foreign text may echo headers)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def alpaca_symbol_to_pair(symbol: str) -> str:
    """Return ``BASE/QUOTE`` for an Alpaca crypto symbol (``BTC/USD`` or ``BTCUSD``).

    Raises:
        BrokerError: the symbol is neither form.
    """
    text = symbol.strip().upper()
    if "/" not in text:
        quote = next((q for q in _QUOTES if text.endswith(q) and len(text) > len(q)), None)
        if quote is None:
            raise BrokerError(f"cannot read Alpaca symbol {symbol!r} as a crypto pair")
        text = f"{text[:-len(quote)]}/{quote}"
    try:
        return parse_symbol(text)
    except ValueError:
        raise BrokerError(f"cannot read Alpaca symbol {symbol!r} as a crypto pair") from None


def _to_order(raw: AlpacaOrder) -> Order:
    """Convert the SDK's order to ours (UTC times, float amounts, ``BASE/QUOTE`` symbol)."""
    if raw.symbol is None or raw.side is None:
        raise BrokerError(f"Alpaca order {raw.id} has no symbol or side (a multi-leg order?)")
    filled_qty = _number(raw.filled_qty) or 0.0
    return Order(
        id=str(raw.id),
        client_order_id=raw.client_order_id,
        symbol=alpaca_symbol_to_pair(raw.symbol),
        side=OrderSide(raw.side.value),
        qty=_number(raw.qty),
        notional=_number(raw.notional),
        status=OrderStatus(raw.status.value),
        filled_qty=filled_qty,
        filled_avg_price=_number(raw.filled_avg_price) if filled_qty > 0 else None,
        fee=None,
        submitted_at=ensure_utc(raw.submitted_at),
        filled_at=None if raw.filled_at is None else ensure_utc(raw.filled_at),
    )


def _number(value: str | float | None) -> float | None:
    return None if value is None or value == "" else float(value)


def _round_amount(value: float | None) -> float | None:
    return None if value is None else round(value, _DECIMALS)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _error_body(text: str) -> tuple[int | None, str]:
    """Return Alpaca's error ``code`` and ``message`` from a reply body (raw text if not JSON)."""
    try:
        body = json.loads(text)
    except ValueError:
        return None, text
    if not isinstance(body, dict):
        return None, text
    code = body.get("code")
    return (code if isinstance(code, int) else None), str(body.get("message", text))

