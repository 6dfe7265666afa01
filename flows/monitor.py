"""Every bar: ``production-trading`` steps the production and live traders, ``monitor`` watches them.

* ``production-trading`` (each bar): after refreshing the latest bars in the local store
  (``tasks.bars``; the daily ``ingest`` does the full window), the production model trades the paper
  account (Alpaca paper with keys, else its SimBroker account) and the live model, while live
  trading is allowed, trades its ramp capital on the live account. Both steps are
  idempotent; each is retried on I/O failures only. A failed step does not stop the other.
  Each model trades bars of its own interval: a 4h model acts on the base bar that closes a
  4h bar and reports ``no_new_bar`` on the others (one log line).
* ``monitor`` (each bar, after the traders): live limits and drift against the backtest, with
  automatic demotion at critical and the kill switch at emergency; the production model's
  paper drift raises alerts (``cappuccino_core.operations.live_monitor``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from cappuccino_core.clock import ensure_utc
from cappuccino_core.config import load_settings
from cappuccino_core.data.errors import failures_line
from cappuccino_core.operations.production import NO_NEW_BAR, TraderStep
from cappuccino_core.trading.clock import latest_closed_bar
from tasks import lifecycle as lifecycle_tasks
from tasks.bars import REFRESH_BARS, BarRefresh, refresh_latest_bars


class TradingParams(BaseModel):
    """What a run may set."""

    bar_time: datetime | None = Field(None, description="Open time of the bar to trade (UTC); default the latest closed bar.")
    refresh_bars: bool = Field(True, description="Fetch and store the latest bars from the source before stepping.")
    refresh_count: int = Field(REFRESH_BARS, ge=1, le=1000, description="Bars of the base interval to refresh, ending with bar_time.")


class TradingReport(BaseModel):
    """What the production and live traders did on the bar."""

    bar_time: datetime
    production: dict[str, Any] | None
    live: dict[str, Any] | None
    failed: dict[str, str]
    refresh: BarRefresh | None = Field(None, description="The bars refreshed before stepping (None: not asked).")


class TradingStepError(RuntimeError):
    """A trader's step failed (after retries for I/O); ``report`` says which and why."""

    def __init__(self, report: TradingReport) -> None:
        self.report = report
        super().__init__("trading step failed for " + failures_line(report.failed))


@flow(name="production-trading")
def production_trading(params: TradingParams = TradingParams()) -> TradingReport:
    """Refresh the latest bars, then step the production trader and the live trader on the bar.

    Raises:
        TradingStepError: a step or a symbol's refresh failed; the report is attached (both
            steps ran: a trader whose bar is missing skips it as stale).
    """
    site = lifecycle_tasks.open_site(load_settings())
    interval = site.settings.base_interval
    bar_time = ensure_utc(params.bar_time) if params.bar_time else latest_closed_bar(site.now(), interval)
    refresh = (refresh_latest_bars(site.settings, bar_time, site.now(), params.refresh_count)
               if params.refresh_bars else None)
    results: dict[str, TraderStep | None] = {}
    failed: dict[str, str] = {}
    for role, step in (("production", lifecycle_tasks.step_production_trader),
                       ("live", lifecycle_tasks.step_live_trader)):
        state = step(site, bar_time, return_state=True)
        if state.is_completed():
            results[role] = state.result()
            if results[role] is None:
                get_run_logger().info("no %s model: nothing to trade on bar %s", role, bar_time.isoformat())
            elif results[role].status == NO_NEW_BAR:
                get_run_logger().info(results[role].message)
        else:
            results[role] = None
            failed[role] = str(state.result(raise_on_failure=False))
    if refresh is not None:
        failed.update({f"refresh {symbol}": error for symbol, error in refresh.failed.items()})
    report = TradingReport(bar_time=bar_time, failed=failed, refresh=refresh,
                           **{role: None if step is None else step.to_dict() for role, step in results.items()})
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
