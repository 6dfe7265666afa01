"""A local fake of Alpaca's REST API for tests: a real HTTP server on 127.0.0.1.

It speaks the market-data bars endpoint (``GET /v1beta3/crypto/us/bars``) as alpaca-py
reads it (``alpaca/common/rest.py``, ``alpaca/data/mappings.py``)::

    {"bars": {"BTC/USD": [{"t": "2024-01-01T00:00:00Z", "o": .., "h": .., "l": .., "c": ..,
                           "v": .., "n": .., "vw": ..}, ...]},
     "next_page_token": "<opaque>" | null}

honouring ``symbols``, ``timeframe``, ``start`` and ``end`` (both inclusive, as Alpaca's
are), ``limit``, ``sort`` and ``page_token``; pages hold at most ``page_size`` bars.

Scripting: ``fail_next`` queues faults (an HTTP status, a raw body, a JSON body, a dropped
connection, a stall) for the next matching requests; ``require_auth`` demands a key pair;
``requests`` records every request with credential headers redacted. More endpoints plug in
with ``add_route`` (paths may hold ``{name}`` parts, handed to the route as ``path_params``).

It also speaks Alpaca's trading API for one crypto account (``FakeTrading``, reached as
``server.trading``), in the shapes alpaca-py's ``TradingClient`` reads
(``alpaca/trading/client.py``, ``alpaca/trading/models.py``): ``/v2/account``,
``/v2/positions``, ``/v2/positions/{symbol}``, ``/v2/orders``, ``/v2/orders/{order_id}`` and
``/v2/orders:by_client_order_id``, with Alpaca's refusals (403 insufficient balance, 422
invalid order or reused ``client_order_id``, 404 unknown order or position).

Usage::

    with FakeAlpacaServer(page_size=500) as server:
        server.load_bars("BTC/USD", "1Hour", make_bars(start, 2_500, 3600))
        source = AlpacaBarSource(api_key=None, secret_key=None, url_override=server.url)
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import math
import random
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger(__name__)

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
BARS_PATH = "/v1beta3/crypto/us/bars"
SECRET_HEADERS = frozenset({"apca-api-key-id", "apca-api-secret-key", "authorization"})
REDACTED = "<redacted>"
MAX_LIMIT = 10_000  # Alpaca's cap on ``limit``
DEFAULT_LIMIT = 1_000  # Alpaca's default ``limit``


@dataclass(frozen=True)
class FakeRequest:
    """One request the server received. Credential headers hold ``REDACTED``, never values."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str
    path_params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FakeResponse:
    """What a route answers: a status and a body (a ``str``/``bytes``, or JSON-able data)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        """Return the body as bytes (JSON-encoding anything that is not text)."""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Fault:
    """A scripted misbehaviour for one request (see ``FakeAlpacaServer.fail_next``)."""

    response: FakeResponse | None
    drop_connection: bool = False
    stall_seconds: float = 0.0
    path: str | None = None


Route = Callable[[FakeRequest], FakeResponse]
_UNSET: Any = object()


class FakeAlpacaServer:
    """An Alpaca REST fake on ``127.0.0.1:<free port>``, served from a daemon thread."""

    def __init__(self, *, page_size: int = 1_000) -> None:
        self.page_size = page_size
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._bars: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._faults: list[list[Any]] = []  # [requests still to let through, Fault]
        self._auth: tuple[str, str] | None = None
        self._requests: list[FakeRequest] = []
        self._routes: dict[tuple[str, str], Route] = {}
        self._template_routes: list[tuple[str, re.Pattern[str], Route]] = []
        self.handler_errors: list[str] = []
        self.add_route("GET", BARS_PATH, self._get_bars)
        self.trading = FakeTrading()
        self.trading.install(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> FakeAlpacaServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Serve in a daemon thread until ``stop``."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="fake-alpaca", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, release stalled handlers and close the socket."""
        self._stopping.set()
        if self._thread is not None:  # shutdown() would wait forever on a loop never started
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    @property
    def url(self) -> str:
        """Base URL to hand to alpaca-py as ``url_override`` (no trailing slash)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- scripting -------------------------------------------------------------------------

    def load_bars(self, symbol: str, timeframe: str, bars: list[dict[str, Any]]) -> None:
        """Serve ``bars`` (Alpaca bar objects, ``t`` as RFC 3339) for ``symbol`` at ``timeframe``.

        A repeated ``t`` is served as given (to test clients), but a page token cannot point
        past a repeat at a page boundary: keep repeats inside one page.
        """
        with self._lock:
            self._bars[(symbol, timeframe)] = [dict(bar) for bar in bars]

    def add_route(self, method: str, path: str, route: Route) -> None:
        """Answer ``method path`` with ``route``; ``{name}`` parts of ``path`` match one segment.

        Exact paths win over templates; the matched parts reach the route as
        ``request.path_params`` (URL-decoded).
        """
        if "{" not in path:
            self._routes[(method.upper(), path)] = route
            return
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
        self._template_routes.append((method.upper(), re.compile(f"^{pattern}$"), route))

    def require_auth(self, key: str, secret: str) -> None:
        """Answer 401 to requests without credentials and 403 to wrong ones."""
        with self._lock:
            self._auth = (key, secret)

    def fail_next(
        self,
        *,
        status: int | None = None,
        body: str | bytes | None = None,
        json_body: Any = _UNSET,
        drop_connection: bool = False,
        stall_seconds: float = 0.0,
        path: str | None = None,
        after: int = 0,
        times: int = 1,
    ) -> None:
        """Queue a fault for the next request (to ``path`` if given), ``times`` times in a row.

        Args:
            status: HTTP status to answer; 500 by default, 200 when a body is given.
            body: raw body to answer (for instance ``"{not json"``).
            json_body: data to answer as JSON (for instance a reply missing fields).
            drop_connection: close the connection without any answer.
            stall_seconds: wait this long before acting (to trip client timeouts).
            path: only requests to this path trigger (and consume) the fault.
            after: let this many matching requests through normally first (counted once
                the faults queued before this one are used up: faults fire in queue order).
            times: queue the fault this many times.
        """
        if json_body is not _UNSET:
            body = json.dumps(json_body)
        if status is None:
            status = 500 if body is None else 200
        if body is None:
            body = json.dumps({"code": status * 100_000, "message": f"fake fault {status}"})
        response = None if drop_connection else FakeResponse(status, body)
        with self._lock:
            for number in range(times):
                fault = Fault(response, drop_connection, stall_seconds, path)
                self._faults.append([after if number == 0 else 0, fault])

    @property
    def requests(self) -> list[FakeRequest]:
        """Every request received so far, in order."""
        with self._lock:
            return list(self._requests)

    def bar_requests(self) -> list[FakeRequest]:
        """The requests to the bars endpoint."""
        return [r for r in self.requests if r.path == BARS_PATH]

    @property
    def pending_faults(self) -> int:
        """Faults queued and not yet served."""
        with self._lock:
            return len(self._faults)

    # -- serving ---------------------------------------------------------------------------

    def _take_fault(self, request: FakeRequest) -> Fault | None:
        """Return the fault this request triggers, if any, consuming it."""
        with self._lock:
            self._requests.append(request)
            for entry in self._faults:
                fault: Fault = entry[1]
                if fault.path is not None and fault.path != request.path:
                    continue
                if entry[0] > 0:
                    entry[0] -= 1
                    return None
                self._faults.remove(entry)
                return fault
            return None

    def _check_auth(self, raw_headers: dict[str, str]) -> FakeResponse | None:
        """Return 401/403 when credentials are required and missing/wrong."""
        if self._auth is None:
            return None
        key = raw_headers.get("apca-api-key-id")
        secret = raw_headers.get("apca-api-secret-key")
        if key is None or secret is None:
            return FakeResponse(401, {"message": "unauthorized."})
        if (key, secret) != self._auth:
            return FakeResponse(403, {"message": "forbidden."})
        return None

    def _answer(self, request: FakeRequest, raw_headers: dict[str, str]) -> FakeResponse:
        """Route a request that no fault intercepted."""
        refusal = self._check_auth(raw_headers)
        if refusal is not None:
            return refusal
        route = self._routes.get((request.method, request.path))
        if route is not None:
            return route(request)
        for method, pattern, template_route in self._template_routes:
            match = pattern.match(request.path)
            if method == request.method and match is not None:
                params = {k: unquote(v) for k, v in match.groupdict().items()}
                return template_route(dataclasses.replace(request, path_params=params))
        return FakeResponse(404, {"message": "Not Found"})

    def _get_bars(self, request: FakeRequest) -> FakeResponse:
        """Serve ``GET /v1beta3/crypto/us/bars`` like Alpaca does."""
        query = request.query
        try:
            symbols = [s for s in query["symbols"].split(",") if s]
            timeframe = query["timeframe"]
            start = _parse_time(query["start"]) if "start" in query else None
            end = _parse_time(query["end"]) if "end" in query else None
            limit = int(query.get("limit", DEFAULT_LIMIT))
        except (KeyError, ValueError) as error:
            return FakeResponse(400, {"code": 40010001, "message": f"invalid request: {error}"})
        if not 1 <= limit <= MAX_LIMIT or query.get("sort", "asc") not in ("asc", "desc"):
            return FakeResponse(400, {"code": 40010001, "message": "invalid limit or sort"})
        items = self._select(symbols, timeframe, start, end, descending=query.get("sort") == "desc")
        first = 0
        if query.get("page_token"):
            try:
                first = _index_of(items, _decode_token(query["page_token"]))
            except ValueError:
                return FakeResponse(400, {"code": 40010001, "message": "invalid page token"})
        page = items[first:first + min(limit, self.page_size)]
        following = first + len(page)
        bars: dict[str, list[dict[str, Any]]] = {}
        for symbol, bar in page:
            bars.setdefault(symbol, []).append(bar)
        token = _encode_token(items[following]) if following < len(items) else None
        return FakeResponse(200, {"bars": bars, "next_page_token": token})

    def _select(self, symbols: list[str], timeframe: str, start: datetime | None, end: datetime | None,
                *, descending: bool) -> list[tuple[str, dict[str, Any]]]:
        """Return ``(symbol, bar)`` in page order: by symbol, then by time."""
        items = []
        with self._lock:
            for symbol in sorted(set(symbols)):
                bars = self._bars.get((symbol, timeframe), [])
                chosen = [b for b in bars if (start is None or _parse_time(b["t"]) >= start)
                          and (end is None or _parse_time(b["t"]) <= end)]
                chosen.sort(key=lambda b: _parse_time(b["t"]), reverse=descending)
                items.extend((symbol, b) for b in chosen)
        return items


def _handler_class(server: FakeAlpacaServer) -> type[BaseHTTPRequestHandler]:
    """Build the request handler class bound to ``server``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_PATCH(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
            logger.debug("fake alpaca: " + format, *args)

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            raw_headers = {k.lower(): v for k, v in self.headers.items()}
            request = FakeRequest(
                method=self.command,
                path=parts.path,
                query={k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
                headers={k: REDACTED if k in SECRET_HEADERS else v for k, v in raw_headers.items()},
                body=body,
            )
            fault = server._take_fault(request)
            if fault is not None and fault.stall_seconds:
                server._stopping.wait(fault.stall_seconds)
            if fault is not None and fault.drop_connection:
                self.close_connection = True
                return
            try:
                response = fault.response if fault is not None else server._answer(request, raw_headers)
            except Exception as error:  # a bug in a route: answer 500 and keep it for the test
                server.handler_errors.append(f"{request.method} {request.path}: {error!r}")
                response = FakeResponse(500, {"message": f"fake server error: {error!r}"})
            assert response is not None
            self._write(response)

        def _write(self, response: FakeResponse) -> None:
            payload = response.encoded()
            try:
                self.send_response(response.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError) as error:
                # The client gave up first (a stall that tripped its timeout).
                logger.debug("fake alpaca: client gone before the answer: %r", error)

    return Handler


def _parse_time(text: str) -> datetime:
    """Parse RFC 3339 (``...Z`` or ``+00:00``) or ``YYYY-MM-DD`` to a UTC datetime."""
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time without zone: {text!r}")
    return moment.astimezone(UTC)


def _encode_token(item: tuple[str, dict[str, Any]]) -> str:
    """Return an opaque token naming the next ``(symbol, bar)`` to serve."""
    return base64.urlsafe_b64encode(json.dumps([item[0], item[1]["t"]]).encode()).decode()


def _decode_token(token: str) -> tuple[str, str]:
    """Undo ``_encode_token``: the ``(symbol, t)`` of the next bar to serve."""
    try:
        symbol, stamp = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError) as error:
        raise ValueError(f"bad token {token!r}") from error
    return str(symbol), str(stamp)


def _index_of(items: list[tuple[str, dict[str, Any]]], key: tuple[str, str]) -> int:
    """Return where the ``(symbol, t)`` of ``key`` sits in ``items``; ``ValueError`` if nowhere."""
    for index, (symbol, bar) in enumerate(items):
        if (symbol, bar["t"]) == key:
            return index
    raise ValueError(f"no bar {key} in this query")


def format_time(moment: datetime) -> str:
    """Format a UTC datetime the way Alpaca does: ``2024-01-01T00:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_bars(start: datetime, count: int, step_seconds: int, *, seed: int = 0,
              price: float = 100.0) -> list[dict[str, Any]]:
    """Return ``count`` Alpaca bar objects every ``step_seconds`` from ``start``, a seeded walk."""
    rng = random.Random(seed)
    bars = []
    close = price
    for i in range(count):
        open_ = close
        close = round(open_ * (1 + rng.gauss(0, 0.01)), 4)
        high = round(max(open_, close) * (1 + abs(rng.gauss(0, 0.003))), 4)
        low = round(min(open_, close) * (1 - abs(rng.gauss(0, 0.003))), 4)
        bars.append({
            "t": format_time(start + timedelta(seconds=step_seconds * i)),
            "o": open_, "h": high, "l": low, "c": close,
            "v": round(rng.uniform(0.5, 50.0), 6),
            "n": rng.randint(1, 500),
            "vw": round((open_ + high + low + close) / 4, 4),
        })
    return bars


def assert_local_url(url: str) -> None:
    """Fail unless ``url`` points at this machine (127.0.0.1, localhost or ::1)."""
    host = urlsplit(url).hostname
    assert host in LOCAL_HOSTS, f"test tried to reach {host!r} ({url}); tests may only talk to 127.0.0.1"


def refuse_non_local_http(monkeypatch: Any) -> None:
    """Make every ``requests`` call to a non-local host fail the test before any I/O.

    Args:
        monkeypatch: pytest's ``monkeypatch`` fixture (undone after the test).
    """
    import requests.adapters

    original_send = requests.adapters.HTTPAdapter.send

    def guarded_send(adapter: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        assert_local_url(request.url)
        return original_send(adapter, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", guarded_send)


# -- the trading API -----------------------------------------------------------------------

_TRADING_NAMESPACE = uuid.UUID("0f3a9c2e-8d41-4b6a-9e57-1c2d3e4f5a6b")
_OPEN_STATUSES = frozenset({"new", "accepted", "pending_new", "partially_filled"})
_CRYPTO_QUOTES = ("USDT", "USDC", "USD", "BTC")


class FakeTrading:
    """Alpaca's trading API for one crypto account, simulated simply.

    Orders are market orders at the price set with ``set_price`` (no fee, no slippage).
    With ``fill_mode="immediate"`` an accepted order fills at once (``filled``); with
    ``"manual"`` it stays ``new`` until ``fill_open_orders``. Amounts are kept at 9
    decimals, as Alpaca's are, and written as decimal strings. Refusals:

    * 403 ``{"code": 40310000, "message": "insufficient balance for USD (...)"}`` when cash
      (less open buys) or units (less open sells) fall short;
    * 422 ``{"code": 40010001, ...}`` for a reused ``client_order_id``, a non-positive
      amount, both or neither of qty and notional, a quantity below ``min_qty`` or a
      notional below ``min_notional``, an unpriced symbol; 422 ``42210000`` for a
      non-cancelable order or a time in force crypto does not take;
    * 404 ``{"code": 40410000, ...}`` for an unknown order or position.

    ``lose_replies`` makes the next requests to a path do their work and then answer 500,
    as when a reply is lost on the way back.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.account_id = str(uuid.uuid5(_TRADING_NAMESPACE, "account"))
        self.cash = 100_000.0
        self.min_notional = 1.0
        self.fill_mode = "immediate"
        self._prices: dict[str, float] = {}
        self._min_qty: dict[str, float] = {}
        self._orders: list[dict[str, Any]] = []
        self._positions: dict[str, list[float]] = {}  # symbol -> [qty, cost basis]
        self._lost: dict[str, int] = {}
        self._after_orders: tuple[int, str, Callable[[], None]] | None = None
        self._ticks = 0

    def install(self, server: FakeAlpacaServer) -> None:
        """Add the trading routes to ``server``."""
        for method, path, route in (
            ("GET", "/v2/account", self._get_account),
            ("GET", "/v2/positions", self._list_positions),
            ("DELETE", "/v2/positions", self._close_all_positions),
            ("GET", "/v2/positions/{symbol}", self._get_position),
            ("DELETE", "/v2/positions/{symbol}", self._close_position),
            ("POST", "/v2/orders", self._post_order),
            ("GET", "/v2/orders", self._list_orders),
            ("DELETE", "/v2/orders", self._cancel_all),
            ("GET", "/v2/orders:by_client_order_id", self._get_by_client_id),
            ("GET", "/v2/orders/{order_id}", self._get_order),
            ("DELETE", "/v2/orders/{order_id}", self._cancel_order),
        ):
            server.add_route(method, path, self._losing(path, route))

    # -- scripting -------------------------------------------------------------------------

    def configure(self, *, cash: float | None = None, prices: dict[str, float] | None = None,
                  min_qty: dict[str, float] | None = None, fill_mode: str | None = None) -> None:
        """Set the cash, prices (``BTC/USD``), minimum quantities and fill mode."""
        with self._lock:
            if cash is not None:
                self.cash = float(cash)
            for symbol, price in (prices or {}).items():
                self._prices[symbol] = float(price)
            self._min_qty.update(min_qty or {})
            if fill_mode is not None:
                if fill_mode not in ("immediate", "manual"):
                    raise ValueError(f"fill_mode must be 'immediate' or 'manual', got {fill_mode!r}")
                self.fill_mode = fill_mode

    def set_price(self, symbol: str, price: float) -> None:
        """Set the price orders in ``symbol`` fill at and positions are valued at."""
        self.configure(prices={symbol: price})

    def lose_replies(self, path: str, times: int = 1) -> None:
        """Make the next ``times`` requests to ``path`` (a route path) do their work, then answer 500."""
        with self._lock:
            self._lost[path] = self._lost.get(path, 0) + times

    def after_orders(self, count: int, prefix: str, action: Callable[[], None]) -> None:
        """Run ``action`` once the ``count``-th order whose client id starts with ``prefix`` is placed, before its reply.

        For crash tests: ``action`` kills the client process, which then never sees the reply.
        """
        with self._lock:
            self._after_orders = (count, prefix, action)

    def fill_open_orders(self) -> list[dict[str, Any]]:
        """Fill every open order (sells first) at the current prices; return them."""
        with self._lock:
            pending = [o for o in self._orders if o["status"] in _OPEN_STATUSES]
            ordered = [o for o in pending if o["side"] == "sell"] + [o for o in pending if o["side"] == "buy"]
            for order in ordered:
                self._fill(order)
            return [dict(o) for o in ordered]

    @property
    def orders(self) -> list[dict[str, Any]]:
        """Every order created, in creation order (copies)."""
        with self._lock:
            return [dict(o) for o in self._orders]

    @property
    def holdings(self) -> dict[str, float]:
        """Units held per symbol (``BTC/USD``)."""
        with self._lock:
            return {symbol: qty for symbol, (qty, _) in self._positions.items()}

    # -- routes ----------------------------------------------------------------------------

    def _losing(self, path: str, route: Route) -> Route:
        def serve(request: FakeRequest) -> FakeResponse:
            with self._lock:
                response = route(request)
                if self._lost.get(path, 0) > 0:
                    self._lost[path] -= 1
                    return FakeResponse(500, {"code": 50010000, "message": "internal server error"})
                return response
        return serve

    def _get_account(self, request: FakeRequest) -> FakeResponse:
        value = sum(qty * self._prices[symbol] for symbol, (qty, _) in self._positions.items())
        equity = self.cash + value
        return FakeResponse(200, {
            "id": self.account_id, "account_number": "PA3FAKE00001", "status": "ACTIVE",
            "crypto_status": "ACTIVE", "currency": "USD", "buying_power": _decimal(self.cash),
            "regt_buying_power": _decimal(self.cash), "non_marginable_buying_power": _decimal(self.cash),
            "cash": _decimal(self.cash), "accrued_fees": "0", "pending_transfer_in": "0",
            "portfolio_value": _decimal(equity), "pattern_day_trader": False, "trading_blocked": False,
            "transfers_blocked": False, "account_blocked": False, "created_at": "2024-01-01T00:00:00Z",
            "trade_suspended_by_user": False, "multiplier": "1", "shorting_enabled": False,
            "equity": _decimal(equity), "last_equity": _decimal(equity), "long_market_value": _decimal(value),
            "short_market_value": "0", "initial_margin": "0", "maintenance_margin": "0",
            "last_maintenance_margin": "0", "sma": "0", "daytrade_count": 0, "crypto_tier": 1,
        })

    def _list_positions(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse(200, [self._position_json(symbol) for symbol in sorted(self._positions)])

    def _get_position(self, request: FakeRequest) -> FakeResponse:
        symbol = _pair(request.path_params["symbol"])
        if symbol not in self._positions:
            return _not_found("position does not exist")
        return FakeResponse(200, self._position_json(symbol))

    def _close_position(self, request: FakeRequest) -> FakeResponse:
        symbol = _pair(request.path_params["symbol"])
        if symbol not in self._positions:
            return _not_found("position does not exist")
        qty = self._positions[symbol][0] - self._held(symbol, "sell")
        if qty <= 0:
            return _refused(403, 40310000, f"insufficient qty available for order (requested: 0, available: {qty})")
        client_order_id = str(uuid.uuid5(_TRADING_NAMESPACE, f"close {len(self._orders)}"))
        return FakeResponse(200, self._create(symbol, "sell", qty, None, client_order_id, "gtc"))

    def _close_all_positions(self, request: FakeRequest) -> FakeResponse:
        if request.query.get("cancel_orders") in ("true", "True"):
            self._cancel_all(request)
        replies = []
        for symbol in sorted(self._positions):
            path = f"/v2/positions/{symbol.replace('/', '')}"
            answer = self._close_position(dataclasses.replace(request, path=path, path_params={"symbol": symbol}))
            replies.append({"symbol": symbol.replace("/", ""), "status": answer.status, "body": answer.body})
        return FakeResponse(207, replies)

    def _post_order(self, request: FakeRequest) -> FakeResponse:
        try:
            body = json.loads(request.body or "{}")
        except ValueError:
            return _refused(400, 40010000, "request body format is invalid")
        client_order_id = str(body.get("client_order_id") or uuid.uuid5(_TRADING_NAMESPACE, f"c{len(self._orders)}"))
        if any(o["client_order_id"] == client_order_id for o in self._orders):
            return _refused(422, 40010001, "client_order_id must be unique")
        refusal = self._check_order(body)
        if refusal is not None:
            return refusal
        symbol = _pair(str(body["symbol"]))
        qty = None if body.get("qty") is None else _round9(float(body["qty"]))
        notional = None if body.get("notional") is None else _round9(float(body["notional"]))
        created = self._create(symbol, body["side"], qty, notional, client_order_id, body["time_in_force"])
        if self._after_orders is not None:
            count, prefix, action = self._after_orders
            if sum(o["client_order_id"].startswith(prefix) for o in self._orders) == count:
                self._after_orders = None
                action()
        return FakeResponse(200, created)

    def _list_orders(self, request: FakeRequest) -> FakeResponse:
        status = request.query.get("status", "open")
        if status not in ("open", "closed", "all"):
            return _refused(422, 40010001, f"invalid status {status!r}")
        chosen = [o for o in self._orders if status == "all" or (o["status"] in _OPEN_STATUSES) == (status == "open")]
        symbols = [s for s in request.query.get("symbols", "").split(",") if s]
        if symbols:
            chosen = [o for o in chosen if o["symbol"] in {_pair(s) for s in symbols}]
        if request.query.get("direction", "desc") == "desc":
            chosen = chosen[::-1]
        return FakeResponse(200, [dict(o) for o in chosen[:int(request.query.get("limit", 50))]])

    def _cancel_all(self, request: FakeRequest) -> FakeResponse:
        replies = []
        for order in self._orders:
            if order["status"] in _OPEN_STATUSES:
                self._set_status(order, "canceled", "canceled_at")
                replies.append({"id": order["id"], "status": 200, "body": dict(order)})
        return FakeResponse(207, replies)

    def _get_by_client_id(self, request: FakeRequest) -> FakeResponse:
        wanted = request.query.get("client_order_id")
        for order in self._orders:
            if order["client_order_id"] == wanted:
                return FakeResponse(200, dict(order))
        return _not_found("order not found")

    def _get_order(self, request: FakeRequest) -> FakeResponse:
        order = self._find(request.path_params["order_id"])
        return _not_found("order not found") if order is None else FakeResponse(200, dict(order))

    def _cancel_order(self, request: FakeRequest) -> FakeResponse:
        order = self._find(request.path_params["order_id"])
        if order is None:
            return _not_found("order not found")
        if order["status"] not in _OPEN_STATUSES:
            return _refused(422, 42210000, "order is not cancelable")
        self._set_status(order, "canceled", "canceled_at")
        return FakeResponse(204, "")

    # -- the book --------------------------------------------------------------------------

    def _check_order(self, body: dict[str, Any]) -> FakeResponse | None:
        """Return Alpaca's refusal of an order body, or None when it is acceptable."""
        symbol = _pair(str(body.get("symbol", "")))
        if symbol not in self._prices:
            return _refused(422, 40010001, f"could not find asset \"{body.get('symbol')}\"")
        if body.get("type") != "market":
            return _refused(422, 40010001, "the fake takes market orders only")
        if body.get("time_in_force") not in ("gtc", "ioc"):
            return _refused(422, 42210000, "invalid crypto time_in_force")
        if body.get("side") not in ("buy", "sell"):
            return _refused(422, 40010001, "side must be buy or sell")
        if (body.get("qty") is None) == (body.get("notional") is None):
            return _refused(422, 40010001, "exactly one of qty or notional is required")
        name = "qty" if body.get("qty") is not None else "notional"
        try:
            amount = float(body[name])
        except (TypeError, ValueError):
            return _refused(422, 40010001, f"{name} is not a number")
        if not math.isfinite(amount) or amount <= 0:
            return _refused(422, 40010001, f"{name} must be > 0")
        price = self._prices[symbol]
        units = amount if name == "qty" else amount / price
        cost = amount * price if name == "qty" else amount
        minimum = self._min_qty.get(symbol, 0.0)
        if units < minimum:
            return _refused(422, 40010001, f"qty must be >= {minimum}")
        if cost < self.min_notional:
            return _refused(422, 40010001, f"cost basis must be >= {self.min_notional}")
        if body["side"] == "buy":
            available = self.cash - self._held_cash()
            if cost > available + 1e-9:
                return _refused(403, 40310000, f"insufficient balance for USD (requested: {cost:.2f}, "
                                               f"available: {available:.2f})")
        else:
            available = self._positions.get(symbol, [0.0])[0] - self._held(symbol, "sell")
            if units > available + 1e-12:
                return _refused(403, 40310000, f"insufficient balance for {symbol.split('/')[0]} "
                                               f"(requested: {units}, available: {available})")
        return None

    def _create(self, symbol: str, side: str, qty: float | None, notional: float | None,
                client_order_id: str, time_in_force: str) -> dict[str, Any]:
        now = self._now()
        order = {
            "id": str(uuid.uuid5(_TRADING_NAMESPACE, f"order {len(self._orders)}")),
            "client_order_id": client_order_id, "created_at": now, "updated_at": now,
            "submitted_at": now, "filled_at": None, "expired_at": None, "expires_at": None,
            "canceled_at": None, "failed_at": None, "replaced_at": None, "replaced_by": None,
            "replaces": None, "asset_id": str(uuid.uuid5(_TRADING_NAMESPACE, symbol)), "symbol": symbol,
            "asset_class": "crypto", "notional": None if notional is None else _decimal(notional),
            "qty": None if qty is None else _decimal(qty), "filled_qty": "0", "filled_avg_price": None,
            "order_class": "", "order_type": "market", "type": "market", "side": side,
            "position_intent": "buy_to_open" if side == "buy" else "sell_to_close",
            "time_in_force": time_in_force, "limit_price": None, "stop_price": None, "status": "new",
            "extended_hours": False, "legs": None, "trail_percent": None, "trail_price": None,
            "hwm": None, "subtag": None, "source": None,
        }
        self._orders.append(order)
        if self.fill_mode == "immediate":
            self._fill(order)
        return dict(order)

    def _fill(self, order: dict[str, Any]) -> None:
        """Fill ``order`` at its symbol's price, or reject it when the book cannot cover it."""
        symbol = order["symbol"]
        price = self._prices[symbol]
        units = float(order["qty"]) if order["qty"] is not None else _round9(float(order["notional"]) / price)
        qty, cost = self._positions.get(symbol, [0.0, 0.0])
        short_of_cash = order["side"] == "buy" and units * price > self.cash + 1e-9
        short_of_units = order["side"] == "sell" and units > qty + 1e-12
        if short_of_cash or short_of_units:
            self._set_status(order, "rejected", "failed_at")
            return
        if order["side"] == "buy":
            self.cash -= units * price
            self._positions[symbol] = [qty + units, cost + units * price]
        else:
            self.cash += units * price
            left = qty - units
            if left <= 1e-12:
                del self._positions[symbol]
            else:
                self._positions[symbol] = [left, cost * left / qty]
        order.update(filled_qty=_decimal(units), filled_avg_price=_decimal(price))
        self._set_status(order, "filled", "filled_at")

    def _set_status(self, order: dict[str, Any], status: str, stamp: str) -> None:
        now = self._now()
        order.update({"status": status, stamp: now, "updated_at": now})

    def _find(self, order_id: str) -> dict[str, Any] | None:
        return next((o for o in self._orders if o["id"] == order_id), None)

    def _held(self, symbol: str, side: str) -> float:
        """Units reserved by open orders on ``side`` of ``symbol``."""
        return sum(float(o["qty"]) if o["qty"] is not None else float(o["notional"]) / self._prices[symbol]
                   for o in self._orders
                   if o["status"] in _OPEN_STATUSES and o["side"] == side and o["symbol"] == symbol)

    def _held_cash(self) -> float:
        """Cash reserved by open buys."""
        return sum(float(o["notional"]) if o["notional"] is not None else float(o["qty"]) * self._prices[o["symbol"]]
                   for o in self._orders if o["status"] in _OPEN_STATUSES and o["side"] == "buy")

    def _position_json(self, symbol: str) -> dict[str, Any]:
        qty, cost = self._positions[symbol]
        price = self._prices[symbol]
        value = qty * price
        return {
            "asset_id": str(uuid.uuid5(_TRADING_NAMESPACE, symbol)), "symbol": symbol.replace("/", ""),
            "exchange": "CRYPTO", "asset_class": "crypto", "asset_marginable": False,
            "qty": _decimal(qty), "avg_entry_price": _decimal(cost / qty), "side": "long",
            "market_value": _decimal(value), "cost_basis": _decimal(cost),
            "unrealized_pl": _decimal(value - cost), "unrealized_plpc": _decimal((value - cost) / cost),
            "unrealized_intraday_pl": _decimal(value - cost),
            "unrealized_intraday_plpc": _decimal((value - cost) / cost),
            "current_price": _decimal(price), "lastday_price": _decimal(price), "change_today": "0",
            "qty_available": _decimal(qty - self._held(symbol, "sell")),
        }

    def _now(self) -> str:
        """A deterministic clock: one second later at every event."""
        self._ticks += 1
        return format_time(datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=self._ticks))


def _pair(symbol: str) -> str:
    """Return ``BASE/QUOTE`` for ``BTC/USD`` or ``BTCUSD`` (as Alpaca accepts both)."""
    if "/" in symbol:
        return symbol.upper()
    for quote in _CRYPTO_QUOTES:
        if symbol.upper().endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[:-len(quote)].upper()}/{quote}"
    return symbol.upper()


def _refused(status: int, code: int, message: str) -> FakeResponse:
    return FakeResponse(status, {"code": code, "message": message})


def _not_found(message: str) -> FakeResponse:
    return _refused(404, 40410000, message)


def _round9(value: float) -> float:
    return round(value, 9)


def _decimal(value: float) -> str:
    """Write a number the way Alpaca does: a decimal string (at most 9 decimals)."""
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
