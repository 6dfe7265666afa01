"""Historical crypto bars from Alpaca's market-data API, through the alpaca-py SDK.

How a fetch works:

* The window ``[start, end)`` is cut into chunks of at most ``chunk_bars`` bars. Each chunk
  is one ``CryptoHistoricalDataClient.get_crypto_bars`` call; the SDK follows
  ``next_page_token`` itself (``RESTClient._get_marketdata``), so one chunk may be several
  HTTP pages. A chunk is the unit of retry: a failure on any page re-fetches the chunk
  from its first page, so no page is ever kept twice.
* Retries are ours, not the SDK's. ``RESTClient`` would retry 429/504 three times with a
  fixed ``time.sleep(3)`` and never a timeout; ``_CryptoClient`` turns that off and gives
  every HTTP request a timeout. ``AlpacaBarSource`` retries HTTP 429, 5xx, timeouts and
  connection errors with exponential backoff (``backoff_seconds * 2**k``, capped at
  ``max_backoff_seconds``) through an injected ``sleep``, at most ``max_retries`` times.
* 401/403 raise ``SourceRefused`` at once; other 4xx raise ``SourceRefused`` at once; a body
  that is not an Alpaca bars reply raises ``BarDataError``. No message or log line ever
  holds the API key or secret.
* Alpaca's ``end`` is inclusive, so each chunk asks up to one microsecond before its end;
  we keep only bars with open time in ``[start, end)`` whose close time (open + interval)
  is at or before ``end`` (complete bars only). The caller
  passes ``end <= now``: the source has no clock of its own.

Alpaca serves crypto bars without credentials (with a lower rate limit), so both keys may be
``None``. Note that Alpaca's ``1Day`` crypto bars open at midnight US Central time
(05:00 or 06:00 UTC), not at midnight UTC; they are returned as delivered.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import requests
from alpaca.common.enums import BaseURL
from alpaca.common.exceptions import APIError
from alpaca.data.historical.crypto import CryptoHistoricalDataClient
from alpaca.data.models.bars import Bar
from alpaca.data.requests import CryptoBarsRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
from pydantic import ValidationError

from cappuccino_core.alpaca_http import TRANSIENT_ERRORS, TimeoutSession
from cappuccino_core.data.bars import BAR_SCHEMA
from cappuccino_core.data.errors import BarDataError, SourceError, SourceRefused
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.symbols import parse_symbol

logger = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Errors the SDK could raise from deep inside on a reply of the wrong shape; ``_check_page``
# catches the shapes we know first, these are the safety net.
_SHAPE_ERRORS = (ValueError, TypeError, AttributeError, KeyError)
_ALPACA_FIELDS = {"timestamp": "t", "open": "o", "high": "h", "low": "l", "close": "c",
                  "volume": "v", "trade_count": "n", "vwap": "vw"}

_TIMEFRAMES: dict[Interval, tuple[int, TimeFrameUnit]] = {
    Interval.M1: (1, TimeFrameUnit.Minute),
    Interval.M5: (5, TimeFrameUnit.Minute),
    Interval.M15: (15, TimeFrameUnit.Minute),
    Interval.M30: (30, TimeFrameUnit.Minute),
    Interval.H1: (1, TimeFrameUnit.Hour),
    Interval.H4: (4, TimeFrameUnit.Hour),
    Interval.D1: (1, TimeFrameUnit.Day),
}


def alpaca_timeframe(interval: Interval) -> TimeFrame:
    """Return the SDK ``TimeFrame`` of ``interval`` (``4h`` -> ``TimeFrame(4, Hour)``)."""
    amount, unit = _TIMEFRAMES[Interval(interval)]
    return TimeFrame(amount, unit)


class _MalformedPage(Exception):
    """One reply page is not ``{"bars": {symbol: [...]}, "next_page_token": str | null}``."""


def _check_page(page: Any) -> None:
    """Raise ``_MalformedPage`` unless ``page`` has the shape of an Alpaca bars reply."""
    if page is None:
        raise _MalformedPage("reply body is empty")
    if not isinstance(page, dict):
        raise _MalformedPage(f"reply is a JSON {type(page).__name__}, not an object")
    if "bars" not in page:
        fields = ", ".join(sorted(map(str, page))) or "none"
        raise _MalformedPage(f"reply has no 'bars' field (fields: {fields})")
    if not isinstance(page["bars"], dict):
        raise _MalformedPage(f"reply 'bars' is a JSON {type(page['bars']).__name__}, not an object")
    for symbol, items in page["bars"].items():
        if not isinstance(items, list):
            raise _MalformedPage(f"reply 'bars.{symbol}' is a JSON {type(items).__name__}, not a list")
    token = page.get("next_page_token")
    if token is not None and not isinstance(token, str):
        raise _MalformedPage(f"reply 'next_page_token' is a JSON {type(token).__name__}, not a string")


class _CryptoClient(CryptoHistoricalDataClient):
    """The SDK crypto client with its own retries off, a request timeout, and raw replies.

    ``RESTClient`` keeps its retry settings in ``_retry``/``_retry_codes`` and its HTTP
    session in ``_session`` (alpaca-py 0.44, ``alpaca/common/rest.py``); there is no public
    setter, so they are replaced here and their presence is checked so an SDK change fails
    loudly instead of silently retrying twice.
    """

    def __init__(self, *, api_key: str | None, secret_key: str | None,
                 url_override: str | None, timeout_seconds: float) -> None:
        super().__init__(api_key=api_key, secret_key=secret_key, url_override=url_override, raw_data=True)
        for attribute in ("_retry", "_retry_codes", "_session"):
            if not hasattr(self, attribute):
                raise RuntimeError(f"alpaca-py no longer has RESTClient.{attribute}; review _CryptoClient")
        self._retry = 0
        self._retry_codes = []
        self._session = TimeoutSession(timeout_seconds)

    def get(self, path: str, data: dict[str, Any] | str | None = None, **kwargs: Any) -> Any:
        """Do one GET (one page, for the SDK's page loop) and check the page's shape.

        The SDK would index into whatever JSON came back, and it takes any known data key
        (``quotes``, ``trades``...) for bars; checking each page here turns those cases into
        a clear message instead of a ``TypeError`` or silently empty bars.
        """
        page = super().get(path, data, **kwargs)
        _check_page(page)
        return page


class AlpacaBarSource:
    """A ``BarSource`` over Alpaca's crypto bars endpoint (``/v1beta3/crypto/us/bars``).

    Thread safety: one instance holds one HTTP session; use one instance per thread.
    """

    name = "alpaca"

    def __init__(
        self,
        *,
        api_key: str | None,
        secret_key: str | None,
        url_override: str | None = None,
        max_retries: int = 5,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
        chunk_bars: int = 10_000,
        timeout_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Create the source.

        Args:
            api_key: Alpaca API key id, or None to fetch without credentials.
            secret_key: Alpaca API secret, given together with ``api_key`` or not at all.
            url_override: base URL instead of ``https://data.alpaca.markets`` (tests, proxies).
            max_retries: retries per chunk after the first attempt (0 = no retry).
            backoff_seconds: wait before the first retry; doubles on each further retry.
            max_backoff_seconds: cap on one wait.
            chunk_bars: most bars asked for in one chunk (one SDK call, maybe several pages).
            timeout_seconds: connect and read timeout of each HTTP request.
            sleep: how to wait between retries (tests pass a recorder).

        Raises:
            ValueError: only one of the keys is given, or a number is out of range.
        """
        if (api_key is None) != (secret_key is None):
            raise ValueError("api_key and secret_key must be given together, or both left None")
        if max_retries < 0 or chunk_bars < 1:
            raise ValueError(f"need max_retries >= 0 and chunk_bars >= 1, got {max_retries} and {chunk_bars}")
        if backoff_seconds < 0 or max_backoff_seconds < backoff_seconds or timeout_seconds <= 0:
            raise ValueError("need 0 <= backoff_seconds <= max_backoff_seconds and timeout_seconds > 0")
        self._base_url = (url_override or BaseURL.DATA.value).rstrip("/")
        self._client = _CryptoClient(api_key=api_key, secret_key=secret_key,
                                     url_override=self._base_url, timeout_seconds=timeout_seconds)
        self._secrets = tuple(s for s in (api_key, secret_key) if s)
        self._max_retries = max_retries
        self._backoff_seconds = backoff_seconds
        self._max_backoff_seconds = max_backoff_seconds
        self._chunk_bars = chunk_bars
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"AlpacaBarSource(base_url={self._base_url!r})"

    @property
    def base_url(self) -> str:
        """The market-data base URL requests go to (never holds credentials)."""
        return self._base_url

    def intervals(self, symbol: str) -> tuple[Interval, ...]:
        """Return the intervals whose Alpaca bars sit on our UTC grid: all but ``1d``.

        Alpaca's ``1Day`` crypto bars open at midnight US Central time, not at 00:00 UTC, so
        they are off the epoch-aligned grid ``quality.validate_bars`` requires; daily bars
        should be resampled from hourly ones. ``fetch`` still serves ``1d`` as delivered.
        """
        parse_symbol(symbol)
        return tuple(i for i in Interval if i is not Interval.D1)

    def fetch(self, symbol: str, interval: Interval, start: datetime, end: datetime) -> pl.DataFrame:
        """Return the complete bars of ``symbol`` with open time in ``[start, end)``.

        Raises:
            ValueError: naive datetimes or ``start > end``.
            SourceError: credentials refused, a request refused, or retries exhausted.
            BarDataError: a reply that cannot be read as bars of ``symbol``.
        """
        symbol, interval = parse_symbol(symbol), Interval(interval)
        _check_window(start, end)
        where = f"alpaca {symbol} {interval.value}"
        chunks = list(_chunks(start.astimezone(UTC), end.astimezone(UTC), interval, self._chunk_bars))
        frames = []
        for number, (chunk_start, chunk_end) in enumerate(chunks, start=1):
            logger.info("%s: requesting bars [%s, %s) (chunk %d of %d)",
                        where, chunk_start.isoformat(), chunk_end.isoformat(), number, len(chunks))
            raw = self._fetch_chunk(where, symbol, interval, chunk_start, chunk_end)
            bars = _parse_bars(where, symbol, raw)
            frames.append(_to_table(bars).filter(
                (pl.col("timestamp") >= chunk_start) & (pl.col("timestamp") < chunk_end)))
        table = pl.concat(frames) if frames else pl.DataFrame(schema=BAR_SCHEMA)
        return _finish(where, table, interval, end.astimezone(UTC))

    def _fetch_chunk(self, where: str, symbol: str, interval: Interval,
                     chunk_start: datetime, chunk_end: datetime) -> dict[str, Any]:
        """Fetch one chunk (all its pages) with bounded retries; return the SDK's raw bars dict."""
        # Alpaca's end is inclusive: asking up to one microsecond before ``chunk_end`` keeps
        # the next chunk's first bar out (else every chunk costs one more page for it).
        # A window of n bar lengths then holds at most n bars; ``limit`` (a total for the
        # SDK's page loop) stops paging one past that, so a broken reply (say, a page token
        # that never ends) is refused below instead of paging forever.
        most_bars = math.ceil((chunk_end - chunk_start) / interval.timedelta)
        request = CryptoBarsRequest(symbol_or_symbols=symbol, timeframe=alpaca_timeframe(interval),
                                    start=chunk_start, end=chunk_end - _MICROSECOND, limit=most_bars + 1)
        attempts = 0
        while True:
            attempts += 1
            try:
                raw = self._client.get_crypto_bars(request)
            except APIError as error:
                reason = self._classify_api_error(where, error, attempts)
            except _MalformedPage as error:
                raise BarDataError(where, self._redact(str(error))) from None
            except requests.exceptions.JSONDecodeError as error:
                raise BarDataError(where, f"reply body is not valid JSON ({error})") from None
            except TRANSIENT_ERRORS as error:
                reason = f"{type(error).__name__}: {self._redact(str(error))[:200]}"
            except _SHAPE_ERRORS as error:
                detail = f"{type(error).__name__}: {self._redact(str(error))[:200]}"
                raise BarDataError(where, f"reply is not an Alpaca bars object ({detail})") from None
            else:
                if sum(len(v) for v in raw.values() if isinstance(v, list)) > most_bars:
                    window = f"[{chunk_start.isoformat()}, {chunk_end.isoformat()})"
                    raise BarDataError(where, f"reply holds more than the {most_bars} bars the window {window} can hold")
                return raw
            if attempts > self._max_retries:
                raise SourceError(f"{where}: Alpaca request failed after {attempts} attempts "
                                  f"(retries exhausted); last error: {reason}")
            wait = min(self._max_backoff_seconds, self._backoff_seconds * 2 ** (attempts - 1))
            logger.info("%s: %s; retry %d of %d in %.1f s", where, reason, attempts, self._max_retries, wait)
            self._sleep(wait)

    def _classify_api_error(self, where: str, error: APIError, attempts: int) -> str:
        """Return a retry reason for 429/5xx; raise ``SourceRefused`` for any other status."""
        status = error.status_code
        if status in (401, 403):
            raise SourceRefused(f"{where}: Alpaca rejected the credentials (HTTP {status}); "
                              "check the API key and secret settings") from None
        if status == 429 or (status is not None and status >= 500):
            return f"HTTP {status}"
        body = self._redact(str(error))[:200]
        raise SourceRefused(f"{where}: Alpaca refused the request with HTTP {status} "
                          f"on attempt {attempts}: {body}") from None

    def _redact(self, text: str) -> str:
        """Return ``text`` with the key and secret masked (foreign text may echo headers)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _check_window(start: datetime, end: datetime) -> None:
    """Refuse naive datetimes and reversed windows."""
    for label, moment in (("start", start), ("end", end)):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"{label} must be timezone-aware (UTC), got naive {moment.isoformat()}")
    if start > end:
        raise ValueError(f"start {start.isoformat()} is after end {end.isoformat()}")


def _chunks(
    start: datetime, end: datetime, interval: Interval, chunk_bars: int
) -> Iterator[tuple[datetime, datetime]]:
    """Yield consecutive ``[chunk_start, chunk_end)`` windows covering ``[start, end)``."""
    span = interval.timedelta * chunk_bars
    chunk_start = start
    while chunk_start < end:
        chunk_end = min(chunk_start + span, end)
        yield chunk_start, chunk_end
        chunk_start = chunk_end


def _parse_bars(where: str, symbol: str, raw: dict[str, Any]) -> list[Bar]:
    """Parse the raw ``{symbol: [bar, ...]}`` reply with the SDK's ``Bar`` model, bar by bar."""
    strangers = sorted(str(key) for key in raw if key != symbol)
    if strangers:
        raise BarDataError(where, f"reply holds bars for symbols not asked for: {', '.join(strangers)}")
    items = raw.get(symbol, [])
    if not isinstance(items, list):
        raise BarDataError(where, f"reply 'bars.{symbol}' is a {type(items).__name__}, not a list")
    bars = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise BarDataError(where, f"bar {index} of the reply is a {type(item).__name__}, not an object")
        try:
            bar = Bar(symbol, item)
        except ValidationError as error:
            problems = "; ".join(_describe(e) for e in error.errors())
            problem = f"bar {index} of the reply (t={item.get('t')!r}) is malformed: {problems}"
            raise BarDataError(where, problem) from None
        if bar.timestamp.tzinfo is None or bar.timestamp.utcoffset() is None:
            problem = f"bar {index} of the reply has a timestamp without time zone: {item.get('t')!r}"
            raise BarDataError(where, problem)
        bars.append(bar)
    return bars


def _describe(error: Any) -> str:
    """Describe one pydantic error by Alpaca's field name: ``'o' (open): Field required``."""
    field = str(error["loc"][0]) if error.get("loc") else "?"
    return f"'{_ALPACA_FIELDS.get(field, field)}' ({field}): {error['msg']}"


def _to_table(bars: list[Bar]) -> pl.DataFrame:
    """Convert parsed SDK bars to the bar table (UTC microsecond open times, Float64 values)."""
    micros = [(bar.timestamp - _EPOCH) // _MICROSECOND for bar in bars]
    columns: dict[str, Any] = {
        "timestamp": pl.Series(micros, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
    }
    for name in ("open", "high", "low", "close", "volume", "trade_count", "vwap"):
        columns[name] = pl.Series([getattr(bar, name) for bar in bars], dtype=pl.Float64)
    return pl.DataFrame(columns, schema=BAR_SCHEMA)


def _finish(where: str, table: pl.DataFrame, interval: Interval, end: datetime) -> pl.DataFrame:
    """Sort, refuse repeated bars, and drop bars that close after ``end`` (incomplete)."""
    table = table.sort("timestamp")
    repeated = table.filter(pl.col("timestamp").is_duplicated())
    if repeated.height:
        raise BarDataError(where, f"reply repeats the bar at {repeated['timestamp'][0].isoformat()}")
    complete = table.filter(pl.col("timestamp") + interval.timedelta <= end)
    if complete.height < table.height:
        logger.info("%s: dropped %d bar(s) still open at %s",
                    where, table.height - complete.height, end.isoformat())
    return complete
