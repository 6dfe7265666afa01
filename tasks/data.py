"""Thin Prefect tasks over the market-data core. Retries only where there is I/O."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NONE

from cappuccino_core.data.errors import BarDataError, SourceError, SourceRefused
from cappuccino_core.data.ingest import DataStatus, IngestWindow, SymbolIngestResult, data_status, ingest_symbol
from cappuccino_core.data.freshness import FreshnessPolicy
from cappuccino_core.data.intervals import Interval
from cappuccino_core.config.market_record import MarketRecord, record_market
from cappuccino_core.data.source import BarSource
from cappuccino_core.config import Settings
from cappuccino_core.data.store import BarStore
from tasks.retry import retry_on


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_on(SourceError, OSError, TimeoutError, never=(BarDataError, SourceRefused, FileNotFoundError)), cache_policy=NONE, task_run_name="fetch-{symbol}")
def fetch_and_store(source: BarSource, store: BarStore, symbol: str, interval: Interval, window: IngestWindow) -> SymbolIngestResult:
    """Fetch one symbol's bars and store them; retried on I/O, never on a refusal or bad data."""
    return ingest_symbol(source, store, symbol, interval, window)


@task(cache_policy=NONE)
def assess_data(store: BarStore, policy: FreshnessPolicy, now) -> DataStatus:
    """Run the quality checks and the freshness gate over everything stored."""
    return data_status(store, policy, now)


@task(cache_policy=NONE)
def remember_market(settings: Settings, first_start: datetime, now: datetime) -> MarketRecord:
    """Record the home's market unless it has one (after the first ingest that stored bars)."""
    return record_market(settings, first_start=first_start, now=now)
