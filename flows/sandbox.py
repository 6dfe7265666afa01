"""The ``sandbox`` flow: step every active sandbox run once on the latest closed bar of its interval.

The flow runs at the base interval; a run whose model trades a longer interval (4h) steps only
on the base bar that closes one of its bars, on that bar (``Sandbox.due``), and waits otherwise.

Scheduled at the bar interval. It first refreshes the last few bars in the local store (the
daily ``ingest`` does the full window and the quality check): one fetch task per symbol,
retried on I/O, an upsert that leaves stored bars alone. Each run's step is one task; a task
that failed on I/O is retried by Prefect and resumes idempotently (journal rows and client
order ids make a repeated step a no-op), so re-running the flow for a bar is safe.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, unmapped
from pydantic import BaseModel, Field

from cappuccino_core.clock import SystemClock, ensure_utc
from cappuccino_core.config import load_settings
from cappuccino_core.data.errors import failures_line
from cappuccino_core.trading.clock import WallBarClock
from tasks.bars import REFRESH_BARS, BarRefresh, refresh_latest_bars
from tasks.trading import end_finished_runs, open_sandbox, runs_on_bar, step_sandbox_trader


class SandboxParams(BaseModel):
    """What a run may override."""

    bar_time: datetime | None = Field(None, description="Open time of the bar to step (UTC); default the latest closed bar.")
    refresh_bars: bool = Field(True, description="Fetch and store the latest bars from the source before stepping.")
    refresh_count: int = Field(REFRESH_BARS, ge=1, le=1000, description="Bars of the base interval to refresh, ending with bar_time.")


class SandboxStepReport(BaseModel):
    """What one run of the flow did."""

    bar_time: datetime
    ended: list[str]
    steps: list[dict[str, Any]]
    failed: dict[str, str]
    refresh: BarRefresh | None = Field(None, description="The bars refreshed before stepping (None: not asked).")


class SandboxStepError(RuntimeError):
    """Some run's step failed (after retries for I/O); ``report`` says which and why."""

    def __init__(self, report: SandboxStepReport) -> None:
        self.report = report
        super().__init__("sandbox step failed for " + failures_line(report.failed))


@flow(name="sandbox")
def sandbox(params: SandboxParams = SandboxParams()) -> SandboxStepReport:
    """Refresh the latest bars, end the runs whose period is over, then step every active run on the bar.

    Raises:
        SandboxStepError: a run's step or a symbol's refresh failed; the report is attached
            (every run was stepped: a run whose bar is missing skips it as stale).
    """
    settings = load_settings()
    bar_time = ensure_utc(params.bar_time) if params.bar_time else WallBarClock(settings.base_interval).latest()
    refresh = (refresh_latest_bars(settings, bar_time, SystemClock().now(), params.refresh_count)
               if params.refresh_bars else None)
    box = open_sandbox(settings)
    ended = end_finished_runs(box, bar_time)
    active, due = runs_on_bar(box, bar_time)  # each due run on the bar of its own interval that closed with this one
    if not active:
        get_run_logger().info("no sandbox model trades bar %s: nothing to step", bar_time.isoformat())
    elif len(due) < len(active):
        stepped = {run.trader_id for run, _ in due}
        waiting = sorted({run.interval.value for run in active if run.trader_id not in stepped})
        get_run_logger().info("%d of %d sandbox models have no new closed bar of their interval (%s) at %s",
                              len(active) - len(due), len(active), ", ".join(waiting),
                              (bar_time + settings.base_interval.timedelta).isoformat())
    ids = [run.trader_id for run, _ in due]
    futures = step_sandbox_trader.map(unmapped(box), ids, [bar for _, bar in due])
    steps, failed = [], {}
    for trader_id, future in zip(ids, futures):
        future.wait()
        if future.state.is_completed():
            steps.append(future.result().to_dict())
        else:
            failed[trader_id] = str(future.state.result(raise_on_failure=False))
    if refresh is not None:
        failed.update({f"refresh {symbol}": error for symbol, error in refresh.failed.items()})
    report = SandboxStepReport(bar_time=bar_time, ended=ended, steps=steps, failed=failed, refresh=refresh)
    if failed:
        raise SandboxStepError(report)
    return report
