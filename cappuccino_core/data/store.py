"""The local bar store: validated bars as Parquet files, one per (symbol, interval).

Layout under ``root``::

    bars/{BASE-QUOTE}/{interval}.parquet   the bars, canonical (see ``data/bars.py``)
    bars/manifest.json                     per series: first/last bar, rows, content hash, sources
    bars/.lock                             flock'd by writers

Contract:

* **Validated.** ``write`` runs ``validate_bars`` first; nothing broken is stored.
* **Idempotent, append/merge only.** Incoming bars merge with stored ones on timestamp.
  A stored bar is never changed: an incoming bar with a stored timestamp must carry the same
  values (on the columns both have) or the whole write is refused naming the timestamp.
  Re-writing stored bars changes nothing and does not touch the file. Optional columns
  (``trade_count``, ``vwap``) may differ between writes; rows that never had one hold null.
* **Never filled.** Gaps stay gaps; no value is forward-filled, resampled or rounded.
* **Atomic.** Each file is written to a temp file in its own directory, flushed, fsync'd and
  moved over the old one with ``os.replace``; the manifest follows the data file the same way.
  A crash leaves the old file or the new one, never a partial one. A crash between the data
  file and the manifest leaves the manifest behind; the data file is the truth, the next
  ``write`` of that series or ``rebuild_manifest`` brings the manifest up to date.
* **Serialised writers.** ``fcntl.flock`` on ``bars/.lock`` (per open file, so it also
  serialises threads of one process). Readers need no lock: they see a whole old or new file.
* **Content hash.** SHA-256 over the table's column names, types and value bytes (not the
  Parquet bytes), so the same bars hash the same however often they are rewritten.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import polars as pl

from cappuccino_core.data.bars import BAR_SCHEMA, REQUIRED_COLUMNS
from cappuccino_core.data.errors import BarDataError
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.quality import BAR_COLUMNS, validate_bars
from cappuccino_core.data.symbols import parse_symbol, symbol_key

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 1
_HASH_PREFIX = b"cappuccino-bars/v1\n"


class StoreError(RuntimeError):
    """The bar store's own files are unreadable or inconsistent."""


class NotStoredError(StoreError, LookupError):
    """Nothing is stored for the requested symbol and interval."""


@dataclass(frozen=True)
class Coverage:
    """What the store holds for one (symbol, interval), as recorded in the manifest.

    Attributes:
        symbol: the trading pair, ``BASE/QUOTE``.
        interval: the bar interval.
        first_bar: open time of the first stored bar.
        last_bar: open time of the last stored bar.
        rows: stored bars.
        content_hash: ``bars_content_hash`` of the stored table.
        source: the source of the most recent write that added bars.
        sources: every source that added bars, in the order first seen.
        updated_at: the time passed to the last write that changed the series, if any.
    """

    symbol: str
    interval: Interval
    first_bar: datetime
    last_bar: datetime
    rows: int
    content_hash: str
    source: str
    sources: tuple[str, ...]
    updated_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """Return the coverage as JSON-ready values (the manifest entry)."""
        return {
            "symbol": self.symbol,
            "interval": self.interval.value,
            "first_bar": self.first_bar.isoformat(),
            "last_bar": self.last_bar.isoformat(),
            "rows": self.rows,
            "content_hash": self.content_hash,
            "source": self.source,
            "sources": list(self.sources),
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> Coverage:
        """Read a manifest entry written by ``to_dict``."""
        updated = entry.get("updated_at")
        return cls(
            symbol=entry["symbol"],
            interval=Interval(entry["interval"]),
            first_bar=datetime.fromisoformat(entry["first_bar"]),
            last_bar=datetime.fromisoformat(entry["last_bar"]),
            rows=int(entry["rows"]),
            content_hash=entry["content_hash"],
            source=entry["source"],
            sources=tuple(entry.get("sources", [entry["source"]])),
            updated_at=datetime.fromisoformat(updated) if updated else None,
        )


@dataclass(frozen=True)
class WriteResult:
    """What one ``BarStore.write`` did.

    Attributes:
        symbol: the trading pair, ``BASE/QUOTE``.
        interval: the bar interval.
        rows_before: stored bars before the write.
        rows_after: stored bars after the write.
        added: bars that were new (``rows_after - rows_before``).
        unchanged: True when nothing was written (every incoming bar was already stored).
        content_hash_before: hash before the write, None when nothing was stored.
        content_hash_after: hash after the write, None when still nothing is stored.
    """

    symbol: str
    interval: Interval
    rows_before: int
    rows_after: int
    added: int
    unchanged: bool
    content_hash_before: str | None
    content_hash_after: str | None


def bars_content_hash(bars: pl.DataFrame) -> str:
    """Return the SHA-256 of a bar table's content: column names, types and value bytes.

    Independent of the Parquet encoding, so rewriting the same bars keeps the hash.
    """
    digest = hashlib.sha256(_HASH_PREFIX)
    digest.update(f"rows={len(bars)}\n".encode())
    for name in bars.columns:
        column = bars[name]
        digest.update(f"{name}:{column.dtype}\n".encode())
        if isinstance(column.dtype, pl.Datetime):
            column = column.dt.epoch("us")
        if column.null_count():
            digest.update(b"nulls:" + column.is_null().to_numpy().tobytes())
            column = column.fill_null(0)
        values = column.to_numpy()
        digest.update(np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes())
    return digest.hexdigest()


class BarStore:
    """Validated bars on local disk, one Parquet file per (symbol, interval).

    See the module docstring for the contract (validation, merge rules, atomicity, locking).
    """

    def __init__(self, root: Path) -> None:
        """Open (or prepare) a store under ``root``; nothing is created until the first write."""
        self.root = Path(root)
        self.bars_dir = self.root / "bars"
        self.manifest_path = self.bars_dir / "manifest.json"
        self._lock_path = self.bars_dir / ".lock"

    def path(self, symbol: str, interval: Interval) -> Path:
        """Return the Parquet file that holds ``symbol`` at ``interval``."""
        return self.bars_dir / symbol_key(symbol) / f"{Interval(interval).value}.parquet"

    def write(
        self,
        symbol: str,
        interval: Interval,
        bars: pl.DataFrame,
        *,
        source: str,
        updated_at: datetime | None = None,
    ) -> WriteResult:
        """Validate ``bars`` and merge them into the stored series.

        Args:
            symbol: the trading pair (any form ``parse_symbol`` accepts).
            interval: the bar interval.
            bars: the incoming bars.
            source: name of the source they came from (recorded in the manifest).
            updated_at: the time to record as the series' update time (injected, UTC-aware).

        Returns:
            The ``WriteResult``.

        Raises:
            BarDataError: the bars fail validation, or an incoming bar has a stored
                timestamp but different values (named); nothing stored changes.
        """
        symbol, interval = parse_symbol(symbol), Interval(interval)
        if updated_at is not None and updated_at.utcoffset() is None:
            raise ValueError(f"updated_at must be UTC-aware, got naive {updated_at.isoformat()}")
        where = f"{symbol} {interval} from {source}"
        incoming = validate_bars(bars, where=where, interval=interval)
        path = self.path(symbol, interval)
        with self._lock():
            existing = self._read_file(path) if path.exists() else None
            if existing is None:
                merged, added, hash_before = incoming, len(incoming), None
            else:
                hash_before = bars_content_hash(existing)
                _refuse_conflicts(existing, incoming, where)
                new = incoming.join(existing.select("timestamp"), on="timestamp", how="anti")
                added = len(new)
                merged = _merge(existing, new) if added else existing
            rows_before = 0 if existing is None else len(existing)
            if not len(merged):
                return WriteResult(symbol, interval, 0, 0, 0, True, None, None)
            hash_after = bars_content_hash(merged) if added else hash_before
            assert hash_after is not None
            if added:
                _atomic_write(path, lambda fh: merged.write_parquet(fh, compression="zstd"))
                logger.info(
                    "stored %d new %s %s bars from %s (%d in all)", added, symbol, interval, source, len(merged)
                )
            self._update_manifest(symbol, interval, merged, hash_after, source, added, updated_at)
        return WriteResult(
            symbol=symbol,
            interval=interval,
            rows_before=rows_before,
            rows_after=len(merged),
            added=added,
            unchanged=not added,
            content_hash_before=hash_before,
            content_hash_after=hash_after,
        )

    def read(
        self, symbol: str, interval: Interval, start: datetime | None = None, end: datetime | None = None
    ) -> pl.DataFrame:
        """Return the stored bars of ``symbol`` at ``interval`` with open time in ``[start, end)``.

        Args:
            symbol: the trading pair.
            interval: the bar interval.
            start: first open time to include (UTC-aware), or None for the beginning.
            end: open time to stop before (UTC-aware), or None for the end.

        Returns:
            The canonical bar table, sorted ascending and unique (possibly empty).

        Raises:
            NotStoredError: nothing is stored for the series (the message lists what is).
            BarDataError: the stored file cannot be read.
        """
        symbol, interval = parse_symbol(symbol), Interval(interval)
        path = self.path(symbol, interval)
        if not path.exists():
            stored = ", ".join(f"{c.symbol} {c.interval}" for c in self.entries()) or "nothing"
            raise NotStoredError(f"no {symbol} {interval} bars stored under {self.bars_dir}; stored: {stored}")
        query = pl.scan_parquet(path)
        if start is not None:
            query = query.filter(pl.col("timestamp") >= _require_aware(start, "start"))
        if end is not None:
            query = query.filter(pl.col("timestamp") < _require_aware(end, "end"))
        return _checked_frame(path, lambda: query.collect())

    def coverage(self, symbol: str, interval: Interval) -> Coverage | None:
        """Return the manifest's record of ``symbol`` at ``interval``, or None if not stored."""
        entry = self._load_manifest()["series"].get(_manifest_key(parse_symbol(symbol), Interval(interval)))
        return Coverage.from_dict(entry) if entry else None

    def entries(self) -> list[Coverage]:
        """Return every stored series, sorted by symbol then interval length."""
        covers = [Coverage.from_dict(e) for e in self._load_manifest()["series"].values()]
        return sorted(covers, key=lambda c: (c.symbol, c.interval.seconds))

    def content_hash(self, symbol: str, interval: Interval) -> str | None:
        """Return the content hash of the stored series, or None if not stored."""
        cover = self.coverage(symbol, interval)
        return cover.content_hash if cover else None

    def intervals(self, symbol: str) -> tuple[Interval, ...]:
        """Return the intervals stored for ``symbol``, shortest first."""
        symbol = parse_symbol(symbol)
        return tuple(c.interval for c in self.entries() if c.symbol == symbol)

    def verify(self, symbol: str, interval: Interval) -> None:
        """Check that the stored file still holds what the manifest recorded (bit rot, edits).

        Raises:
            NotStoredError: nothing is recorded for the series.
            StoreError: the file's content hash differs from the manifest's.
            BarDataError: the file cannot be read.
        """
        symbol, interval = parse_symbol(symbol), Interval(interval)
        cover = self.coverage(symbol, interval)
        if cover is None:
            raise NotStoredError(f"no {symbol} {interval} bars recorded in {self.manifest_path}")
        actual = bars_content_hash(self._read_file(self.path(symbol, interval)))
        if actual != cover.content_hash:
            raise StoreError(
                f"{self.path(symbol, interval)}: content hash {actual} differs from the manifest's "
                f"{cover.content_hash}; the file changed outside the store or the manifest lags it"
            )

    def rebuild_manifest(self, *, updated_at: datetime | None = None) -> list[Coverage]:
        """Recompute the manifest from the data files (after a crash or a manual change).

        Sources are kept from the old manifest where it has them, else recorded as ``unknown``.

        Returns:
            The new manifest entries.
        """
        with self._lock():
            old = self._load_manifest()["series"]
            series: dict[str, Any] = {}
            for path in sorted(self.bars_dir.glob("*/*.parquet")):
                symbol, interval = parse_symbol(path.parent.name), Interval.parse(path.stem)
                bars = self._read_file(path)
                if not len(bars):
                    continue
                key = _manifest_key(symbol, interval)
                previous = old.get(key, {})
                cover = _coverage(
                    symbol,
                    interval,
                    bars,
                    bars_content_hash(bars),
                    source=previous.get("source", "unknown"),
                    sources=tuple(previous.get("sources", [previous.get("source", "unknown")])),
                    updated_at=updated_at,
                )
                series[key] = cover.to_dict()
            self._write_manifest(series)
        return self.entries()

    # --- internals ------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.bars_dir.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _read_file(self, path: Path) -> pl.DataFrame:
        return _checked_frame(path, lambda: pl.read_parquet(path))

    def _load_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"version": MANIFEST_VERSION, "series": {}}
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise StoreError(f"{self.manifest_path}: not valid JSON ({exc}); run rebuild_manifest()") from exc
        if manifest.get("version") != MANIFEST_VERSION:
            raise StoreError(
                f"{self.manifest_path}: manifest version {manifest.get('version')!r}, expected {MANIFEST_VERSION}"
            )
        return manifest

    def _write_manifest(self, series: dict[str, Any]) -> None:
        text = json.dumps({"version": MANIFEST_VERSION, "series": dict(sorted(series.items()))}, indent=2)
        _atomic_write(self.manifest_path, lambda fh: fh.write(text.encode() + b"\n"))

    def _update_manifest(
        self,
        symbol: str,
        interval: Interval,
        bars: pl.DataFrame,
        content_hash: str,
        source: str,
        added: int,
        updated_at: datetime | None,
    ) -> None:
        """Record the series in the manifest when it changed or the manifest lags the file."""
        series = self._load_manifest()["series"]
        key = _manifest_key(symbol, interval)
        previous = series.get(key)
        if previous is not None and not added and previous.get("content_hash") == content_hash:
            return
        if previous is None:
            sources = (source,)
        else:
            known = tuple(previous.get("sources", [previous["source"]]))
            sources = known + ((source,) if added and source not in known else ())
        cover = _coverage(
            symbol,
            interval,
            bars,
            content_hash,
            source=source if added or previous is None else previous["source"],
            sources=sources,
            updated_at=updated_at,
        )
        if previous is not None and not added:
            logger.warning("manifest entry %s lagged its data file; brought up to date", key)
        series[key] = cover.to_dict()
        self._write_manifest(series)


def _manifest_key(symbol: str, interval: Interval) -> str:
    return f"{symbol_key(symbol)}/{interval.value}"


def _coverage(
    symbol: str,
    interval: Interval,
    bars: pl.DataFrame,
    content_hash: str,
    *,
    source: str,
    sources: tuple[str, ...],
    updated_at: datetime | None,
) -> Coverage:
    timestamps = bars["timestamp"]
    return Coverage(
        symbol=symbol,
        interval=interval,
        first_bar=timestamps.min(),  # type: ignore[arg-type]
        last_bar=timestamps.max(),  # type: ignore[arg-type]
        rows=len(bars),
        content_hash=content_hash,
        source=source,
        sources=sources,
        updated_at=updated_at,
    )


def _refuse_conflicts(existing: pl.DataFrame, incoming: pl.DataFrame, where: str) -> None:
    """Raise when an incoming bar shares a stored timestamp but not its values."""
    shared = [c for c in incoming.columns if c in existing.columns and c != "timestamp"]
    both = existing.select("timestamp", *shared).join(
        incoming.select("timestamp", *shared), on="timestamp", how="inner", suffix="_incoming"
    )
    if not len(both):
        return
    differs = pl.any_horizontal([~pl.col(c).eq_missing(pl.col(f"{c}_incoming")) for c in shared])
    conflicts = both.filter(differs).sort("timestamp")
    if not len(conflicts):
        return
    first = conflicts.row(0, named=True)
    # The first differing field's values, the others by name: a changed market differs in every
    # column of every bar, and a message of all of them would be kilobytes of floats.
    fields = [c for c in shared if first[c] != first[c + "_incoming"]] or shared[:1]
    also = f"; also {', '.join(fields[1:])}" if len(fields) > 1 else ""
    raise BarDataError(
        where,
        f"bar {first['timestamp'].isoformat()} differs from the stored bar ({fields[0]} stored "
        f"{_short(first[fields[0]])}, incoming {_short(first[fields[0] + '_incoming'])}{also}); "
        f"{len(conflicts)} conflicting bars in all; nothing was written",
    )


def _short(value: object) -> str:
    """A stored value in a message: floats to 6 significant digits."""
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


def _merge(existing: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """Stored rows plus new rows, sorted, in canonical column order."""
    merged = pl.concat([existing, new], how="diagonal").sort("timestamp")
    return merged.select([c for c in BAR_COLUMNS if c in merged.columns])


def _checked_frame(path: Path, load: Callable[[], pl.DataFrame]) -> pl.DataFrame:
    """Load a stored file and check it is a canonical bar table, naming the file otherwise."""
    try:
        bars = load()
    # A corrupt page can make polars' decoder panic (PanicException is a BaseException).
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as exc:
        raise BarDataError(str(path), f"stored Parquet file cannot be read: {exc}") from exc
    expected = {c: BAR_SCHEMA[c] for c in bars.columns if c in BAR_SCHEMA}
    if any(c not in bars.columns for c in REQUIRED_COLUMNS) or dict(bars.schema) != expected:
        raise BarDataError(str(path), f"stored file is not a canonical bar table: schema {dict(bars.schema)}")
    return bars


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write a file through a temp file in the same directory, fsync, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Persist a rename: fsync the directory entry (POSIX)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _require_aware(ts: datetime, name: str) -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{name} must be UTC-aware, got naive {ts.isoformat()}")
    return ts.astimezone(UTC)
