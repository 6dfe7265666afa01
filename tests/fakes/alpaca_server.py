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
``requests`` records every request with credential headers redacted. More endpoints (the
trading API: ``/v2/account``, ``/v2/positions``, ``/v2/orders``) plug in with ``add_route``.

Usage::

    with FakeAlpacaServer(page_size=500) as server:
        server.load_bars("BTC/USD", "1Hour", make_bars(start, 2_500, 3600))
        source = AlpacaBarSource(api_key=None, secret_key=None, url_override=server.url)
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
        self.handler_errors: list[str] = []
        self.add_route("GET", BARS_PATH, self._get_bars)
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
        """Answer ``method path`` with ``route`` (how trading endpoints get added)."""
        self._routes[(method.upper(), path)] = route

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
        if route is None:
            return FakeResponse(404, {"message": "Not Found"})
        return route(request)

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
