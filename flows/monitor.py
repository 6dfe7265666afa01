"""Every bar: ``production-trading`` steps the production and live traders, ``monitor`` watches them.

* ``production-trading`` (each bar, after the ingest): the production model trades the paper
  account (Alpaca paper with keys, else its SimBroker account) and the live model, while live
  trading is allowed, trades its ramp capital on the live account. Both steps are
  idempotent; each is retried on I/O failures only. A failed step does not stop the other.
* ``monitor`` (each bar, after the traders): live limits and drift against the backtest, with
  automatic demotion at critical and the kill switch at emergency; the production model's
  paper drift raises alerts (``cappuccino_core.lifecycle.live_monitor``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow
from pydantic import BaseModel, Field

from cappuccino_core.clock import ensure_utc
from cappuccino_core.config import load_settings
from cappuccino_core.trading.clock import latest_closed_bar
from tasks import lifecycle as lifecycle_tasks


class TradingParams(BaseModel):
    """What a run may set."""

    bar_time: datetime | None = Field(None, description="Open time of the bar to trade (UTC); default the latest closed bar.")


class TradingReport(BaseModel):
    """What the production and live traders did on the bar."""

    bar_time: datetime
    production: dict[str, Any] | None
    live: dict[str, Any] | None
    failed: dict[str, str]


class TradingStepError(RuntimeError):
    """A trader's step failed (after retries for I/O); ``report`` says which and why."""

    def __init__(self, report: TradingReport) -> None:
        self.report = report
        super().__init__("trading step failed for " + "; ".join(f"{k}: {v}" for k, v in report.failed.items()))


@flow(name="production-trading")
def production_trading(params: TradingParams = TradingParams()) -> TradingReport:
    """Step the production trader and the live trader on the bar.

    Raises:
        TradingStepError: a step failed; the report is attached (the other step ran).
    """
    site = lifecycle_tasks.open_site(load_settings())
    interval = site.settings.base_interval
    bar_time = ensure_utc(params.bar_time) if params.bar_time else latest_closed_bar(site.now(), interval)
    results: dict[str, dict[str, Any] | None] = {}
    failed: dict[str, str] = {}
    for role, step in (("production", lifecycle_tasks.step_production_trader),
                       ("live", lifecycle_tasks.step_live_trader)):
        state = step(site, bar_time, return_state=True)
        if state.is_completed():
            results[role] = state.result()
        else:
            results[role] = None
            failed[role] = str(state.result(raise_on_failure=False))
    report = TradingReport(bar_time=bar_time, production=results["production"], live=results["live"], failed=failed)
    if failed:
        raise TradingStepError(report)
    return report


class MonitorParams(BaseModel):
    """What a run may set."""

    at: datetime | None = Field(None, description="Check as of this time (UTC); default now.")


class MonitorReport(BaseModel):
    """What the monitor found and did."""

    at: datetime
    live: dict[str, Any]
    paper: dict[str, Any]


@flow(name="monitor")
def monitor(params: MonitorParams = MonitorParams()) -> MonitorReport:
    """Check the live model (demote or halt on a breach) and the production model's paper drift."""
    site = lifecycle_tasks.open_site(load_settings())
    at = ensure_utc(params.at) if params.at is not None else site.now()
    live = lifecycle_tasks.watch_live(site, at)
    paper = lifecycle_tasks.watch_paper(site, at)
    return MonitorReport(at=at, live=live, paper=paper)
