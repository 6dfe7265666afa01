"""Bars from files on disk: one CSV or Parquet file per (symbol, interval).

File names are ``{BASE}-{QUOTE}_{interval}.{csv|parquet}``: ``BTC-USDT_1h.parquet`` holds
BTC/USDT at 1h. ``interval`` must be an ``Interval`` value as written (``1h``, ``15m``,
``1d``); other files in the directory (``SOURCES.md``, ``BTC-USDT-PERP_1h.parquet``) are
not bar files of this source and are ignored.

Columns: ``timestamp, open, high, low, close, volume`` and optionally ``trade_count,
vwap``; nothing else (see ``quality.validate_bars``). ``timestamp`` is the bar's open time:

* Parquet: a time-zone-aware timestamp column (any unit, any zone; converted to UTC).
* CSV: ISO-8601 with an offset or ``Z`` (``2024-01-01T00:00:00Z``,
  ``2024-01-01 00:00:00+00:00``), the same offset on every row; or integer epoch
  **milliseconds** (``1704067200000``). Naive timestamps are refused.

Every fetch reads and validates the whole file, so a malformed file raises ``BarDataError``
naming the file whatever window is asked for. Symbols are never substituted: asking for
BTC/USD when only BTC/USDT exists raises ``SourceRefused`` listing what is available.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from cappuccino_core.data.errors import BarDataError, SourceRefused
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.quality import validate_bars
from cappuccino_core.data.symbols import base_asset, parse_symbol

logger = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^([A-Za-z0-9]{2,12})-([A-Za-z0-9]{2,12})_([0-9]+[a-zA-Z]+)\.(csv|parquet)$")


class FileBarSource:
    """A ``BarSource`` over a directory of per-series CSV or Parquet files (read only)."""

    name: str = "files"

    def __init__(self, directory: Path) -> None:
        """Serve the bar files in ``directory`` (it is only read, never written)."""
        self.directory = Path(directory)

    def available(self) -> list[tuple[str, Interval, Path]]:
        """Return (symbol, interval, path) for every bar file, sorted by symbol then interval.

        Raises:
            SourceRefused: the directory does not exist.
        """
        if not self.directory.is_dir():
            raise SourceRefused(f"bar file directory {self.directory} does not exist")
        found = []
        for path in self.directory.iterdir():
            match = _FILE_NAME.match(path.name)
            if not match or not path.is_file():
                continue
            base, quote, interval_text, _ = match.groups()
            try:
                interval = Interval(interval_text)
            except ValueError:
                allowed = ", ".join(i.value for i in Interval)
                logger.warning("ignoring %s: interval %r is not one of %s", path, interval_text, allowed)
                continue
            found.append((parse_symbol(f"{base}/{quote}"), interval, path))
        return sorted(found, key=lambda item: (item[0], item[1].seconds, item[2].name))

    def intervals(self, symbol: str) -> tuple[Interval, ...]:
        """Return the intervals with a file for ``symbol``, shortest first."""
        symbol = parse_symbol(symbol)
        return tuple(sorted({i for s, i, _ in self.available() if s == symbol}, key=lambda i: i.seconds))

    def path_for(self, symbol: str, interval: Interval) -> Path:
        """Return the file holding ``symbol`` at ``interval``.

        Raises:
            SourceRefused: no such file (the message lists what is available, and points out
                the same base asset in another quote currency), or both a CSV and a Parquet
                file exist for it.
        """
        symbol, interval = parse_symbol(symbol), Interval(interval)
        files = self.available()
        paths = [p for s, i, p in files if s == symbol and i == interval]
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            raise SourceRefused(f"{symbol} {interval}: more than one file in {self.directory} ({names}); keep one")
        if paths:
            return paths[0]
        base = base_asset(symbol)
        near = sorted({f"{s} {i}" for s, i, _ in files if base_asset(s) == base})
        listing = ", ".join(f"{s} {i}" for s, i, _ in files) or "none"
        hint = f" {base} is there as {', '.join(near)}, not substituted;" if near else ""
        raise SourceRefused(f"no {symbol} {interval} file in {self.directory};{hint} available: {listing}")

    def fetch(self, symbol: str, interval: Interval, start: datetime, end: datetime) -> pl.DataFrame:
        """Return the file's bars with open time in ``[start, end)`` that are complete by ``end``.

        The whole file is validated first. Rows are returned as stored in the file.

        Args:
            symbol: the trading pair, e.g. ``BTC/USDT``.
            interval: the bar interval.
            start: first open time to include (UTC-aware).
            end: the window's end (UTC-aware); a bar is included only if it ends by ``end``.

        Returns:
            The canonical bar table for the window (possibly empty).

        Raises:
            SourceRefused: no file for the series (see ``path_for``).
            BarDataError: the file cannot be read or breaks a bar rule; names the file.
            ValueError: ``start`` or ``end`` is naive.
        """
        interval = Interval(interval)
        start, end = _utc(start, "start"), _utc(end, "end")
        bars = self.read_file(self.path_for(symbol, interval), interval)
        return bars.filter(
            (pl.col("timestamp") >= start)
            & (pl.col("timestamp") < end)
            & (pl.col("timestamp") + interval.timedelta <= end)
        )

    def read_file(self, path: Path, interval: Interval) -> pl.DataFrame:
        """Read and validate one bar file in full.

        Raises:
            BarDataError: the file cannot be read or breaks a bar rule; names the file.
        """
        if path.suffix == ".parquet":
            raw = _read_parquet(path)
        elif path.suffix == ".csv":
            raw = _read_csv(path)
        else:
            raise BarDataError(str(path), f"unsupported file type {path.suffix!r}; expected .csv or .parquet")
        return validate_bars(raw, where=str(path), interval=Interval(interval))


# What polars raises on unreadable files. A corrupt data page can make its Rust decoder
# panic; pyo3 turns that into PanicException (a BaseException), which we name as corruption.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    pl.exceptions.PolarsError,
    pl.exceptions.PanicException,
    OSError,
)


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except _READ_ERRORS as exc:
        raise BarDataError(str(path), f"cannot read Parquet file (truncated or corrupt?): {exc}") from exc


def _read_csv(path: Path) -> pl.DataFrame:
    """Read every CSV cell as text; ``validate_bars`` parses it and names any bad cell."""
    try:
        raw = pl.read_csv(path, infer_schema=False)
    except _READ_ERRORS as exc:
        raise BarDataError(str(path), f"cannot read CSV file: {exc}") from exc
    if "timestamp" in raw.columns:
        stamps = raw["timestamp"].str.strip_chars()
        present = stamps.drop_nulls()
        if len(present) and present.str.contains(r"^-?\d+$").all():
            # Integer epoch milliseconds; validate_bars refuses implausible magnitudes.
            raw = raw.with_columns(stamps.cast(pl.Int64).alias("timestamp"))
    return raw


def _utc(ts: datetime, name: str) -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{name} must be UTC-aware, got naive {ts.isoformat()}")
    return ts.astimezone(UTC)
