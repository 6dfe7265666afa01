"""Ingest: fetch bars from a source, validate, store; then judge quality and freshness.

The Prefect ``ingest`` flow and the ``cappuccino data ingest`` command are thin wrappers over
these functions. Nothing here reads the wall clock: ``now`` is passed in.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cappuccino_core.clock import ensure_utc
from cappuccino_core.data.errors import SourceRefused
from cappuccino_core.data.freshness import FreshnessPolicy, FreshnessVerdict, check_freshness
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.quality import QualityReport, assess_quality
from cappuccino_core.data.source import BarSource
from cappuccino_core.data.store import BarStore, WriteResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestWindow:
    """The range of bar open times to ingest, ``[start, end)``, aligned to the interval grid."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class SymbolIngestResult:
    """One symbol's ingest: how many bars the source delivered and what the store did with them."""

    fetched: int
    write: WriteResult


@dataclass(frozen=True)
class DataStatus:
    """Quality of every stored series and the freshness verdict over them."""

    reports: dict[tuple[str, Interval], QualityReport]
    verdict: FreshnessVerdict

    @property
    def ok(self) -> bool:
        """True when no series is stale or broken (or staleness was explicitly allowed)."""
        return self.verdict.ok

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict (the ``data status --json`` document)."""
        return {
            "ok": self.ok,
            "verdict": self.verdict.to_dict(),
            "series": [
                {"symbol": symbol, "interval": str(interval), **report.to_dict()}
                for (symbol, interval), report in sorted(self.reports.items())
            ],
        }


def check_source(source: BarSource, symbols: Sequence[str], interval: Interval) -> None:
    """Refuse, before any fetch, a symbol or interval the source cannot serve.

    Raises:
        SourceRefused: names the first symbol the source has no bars of at ``interval``, and
            what it has instead (a files source also refuses a missing directory).
    """
    for symbol in symbols:
        served = source.intervals(symbol)
        if interval not in served:
            have = ", ".join(str(i) for i in served) or "none at any interval"
            raise SourceRefused(f"the {source.name} source has no {symbol} bars at {interval} (it has {have})")


def ingest_window(now: datetime, interval: Interval, history: timedelta) -> IngestWindow:
    """Return ``[now - history, now)`` snapped to the grid so only complete bars are asked for.

    The last bar asked for is the one whose interval ended at or before ``now``.
    """
    now = ensure_utc(now)
    step = interval.seconds
    end_ts = int(now.timestamp()) // step * step
    start_ts = (end_ts - int(history.total_seconds())) // step * step
    return IngestWindow(datetime.fromtimestamp(start_ts, now.tzinfo), datetime.fromtimestamp(end_ts, now.tzinfo))


def ingest_symbol(
    source: BarSource, store: BarStore, symbol: str, interval: Interval, window: IngestWindow
) -> SymbolIngestResult:
    """Fetch one symbol's bars in ``window`` and store them (validated, deduplicated, atomic).

    Raises:
        SourceError: the source could not deliver.
        BarDataError: the bars are malformed or conflict with stored bars; nothing stored changes.
    """
    bars = source.fetch(symbol, interval, window.start, window.end)
    result = store.write(symbol, interval, bars, source=source.name)
    logger.info("ingested %s %s: %d fetched, %d new, %d stored", symbol, interval, bars.height, result.added, result.rows_after)
    return SymbolIngestResult(fetched=bars.height, write=result)


def data_status(store: BarStore, policy: FreshnessPolicy, now: datetime) -> DataStatus:
    """Assess every stored series and judge freshness against ``now`` (or ``policy.as_of``).

    With ``as_of`` the bars are cut at ``as_of`` first, as if it were that moment.
    """
    reference = ensure_utc(policy.as_of) if policy.as_of is not None else ensure_utc(now)
    reports: dict[tuple[str, Interval], QualityReport] = {}
    entries = store.entries()
    if not entries:
        raise ValueError(f"the bar store at {store.root} is empty: run 'cappuccino data ingest' first")
    for entry in entries:
        bars = store.read(entry.symbol, entry.interval, end=policy.as_of)
        reports[(entry.symbol, entry.interval)] = assess_quality(
            bars, interval=entry.interval, now=reference, staleness_limit=policy.staleness_limit(entry.interval)
        )
    return DataStatus(reports=reports, verdict=check_freshness(reports, policy, now=reference))
