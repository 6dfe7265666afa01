"""The ``ingest`` flow: fetch every symbol concurrently, store, check quality and freshness."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, unmapped
from pydantic import BaseModel, Field

from cappuccino_core.clock import SystemClock, ensure_utc
from cappuccino_core.config import DataSourceKind, RunOverrides, load_settings
from cappuccino_core.data.errors import BarDataError, SourceError, failures_line
from cappuccino_core.config.components import freshness_policy, make_source
from cappuccino_core.data.ingest import IngestWindow, ingest_window
from cappuccino_core.data.store import BarStore
from tasks.data import assess_data, fetch_and_store, remember_market


# Failures whose message says all there is: a source that refused or could not deliver, bad bars, I/O.
KNOWN_FAILURES: tuple[type[BaseException], ...] = (SourceError, BarDataError, OSError, TimeoutError)


class IngestParams(BaseModel):
    """What a run may override; secrets never travel as parameters (they come from the environment)."""

    source: DataSourceKind | None = Field(None, description="Bar source; default from settings.")
    files_path: str | None = Field(None, description="Directory of bar files for source=files.")
    symbols: list[str] | None = Field(None, description="Pairs to ingest; default from settings.")
    interval: str | None = Field(None, description="Interval to fetch and store; default the base interval.")
    start: datetime | None = Field(None, description="First bar open time; default end minus the history length.")
    end: datetime | None = Field(None, description="End of the range (exclusive); default now.")
    as_of: datetime | None = Field(None, description="Judge freshness as of this time (research on history).")
    allow_stale: bool = Field(False, description="Let stale (never broken) data pass the gate; recorded.")
    overrides: RunOverrides = Field(default_factory=RunOverrides, description="Settings this run overrides (history, market).")

    def settings_overrides(self) -> dict[str, Any]:
        """Return the settings this run overrides (the explicit fields above win over ``overrides``)."""
        out: dict[str, Any] = {"source": self.source, "files_path": self.files_path, "base_interval": self.interval}
        if self.symbols:
            out["symbols"] = tuple(self.symbols)
        return {**self.overrides.values(), **{k: v for k, v in out.items() if v is not None}}


class SymbolIngest(BaseModel):
    """One symbol's outcome."""

    symbol: str
    interval: str
    fetched: int = 0
    added: int = 0
    rows_after: int = 0
    content_hash: str | None = None
    error: str | None = None
    known: bool = True  # the error is a known failure (a refusal, bad data, I/O after retries), not a bug


class IngestReport(BaseModel):
    """What an ingest run did and what the data looks like afterwards."""

    source: str
    window_start: datetime
    window_end: datetime
    symbols: list[SymbolIngest]
    status: dict[str, Any] | None  # None when a symbol failed: the fetch's cause is the report, not the store
    status_ok: bool

    @property
    def ok(self) -> bool:
        """True when every symbol was stored and the freshness gate passed."""
        return self.status_ok and all(s.error is None for s in self.symbols)


class IngestError(RuntimeError):
    """Some symbol could not be ingested; ``report`` says which and why (earlier data is intact).

    ``expected`` is True when every failure is a known one (its message is the whole story:
    no traceback is needed to show it).
    """

    def __init__(self, report: IngestReport) -> None:
        self.report = report
        failed = [s for s in report.symbols if s.error]
        self.expected = all(s.known for s in failed)
        super().__init__("ingest failed for " + failures_line({s.symbol: s.error or "" for s in failed}))


@flow(name="ingest")
def ingest(params: IngestParams = IngestParams()) -> IngestReport:
    """Fetch, validate and store bars for every symbol, then judge quality and freshness.

    The first ingest that stores bars in a home records its market there
    (``data.market_record``); later runs on the home follow that record.

    Raises:
        IngestError: a symbol failed (after retries for I/O; a refusal is not retried); the
            report is attached, without a data status (the store is not judged then).
    """
    settings = load_settings(**params.settings_overrides())
    now = SystemClock().now()
    interval = settings.base_interval
    window = ingest_window(now if params.end is None else ensure_utc(params.end), interval, settings.history)
    if params.start is not None:
        window = IngestWindow(ensure_utc(params.start), window.end)
    source = make_source(settings)
    store = BarStore(settings.bars_dir)
    futures = fetch_and_store.map(unmapped(source), unmapped(store), list(settings.symbols), unmapped(interval), unmapped(window))
    outcomes = []
    for symbol, future in zip(settings.symbols, futures):
        future.wait()
        state = future.state
        if state.is_completed():
            result = future.result()
            outcomes.append(SymbolIngest(
                symbol=symbol, interval=str(interval), fetched=result.fetched, added=result.write.added,
                rows_after=result.write.rows_after, content_hash=result.write.content_hash_after,
            ))
        else:
            error = state.result(raise_on_failure=False)
            outcomes.append(SymbolIngest(symbol=symbol, interval=str(interval), error=str(error),
                                         known=isinstance(error, KNOWN_FAILURES)))
    if any(s.error is None for s in outcomes):
        remember_market(settings, window.start, now)  # bars are stored: the home is this market's from now on
    if any(s.error for s in outcomes):
        # The fetch's cause comes first: judging a store the fetch could not fill would only
        # say that it is empty or stale.
        raise IngestError(IngestReport(source=source.name, window_start=window.start, window_end=window.end,
                                       symbols=outcomes, status=None, status_ok=False))
    policy = freshness_policy(settings, as_of=params.as_of, allow_stale=params.allow_stale)
    status = assess_data(store, policy, now)
    return IngestReport(
        source=source.name, window_start=window.start, window_end=window.end, symbols=outcomes,
        status=status.to_dict(), status_ok=status.ok,
    )
