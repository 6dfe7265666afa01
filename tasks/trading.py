"""Thin Prefect tasks over the trading core. Retries only where there is I/O."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NONE

from cappuccino_core.config import Settings
from cappuccino_core.sandbox.runner import Sandbox
from cappuccino_core.sandbox.runs import SandboxRun
from cappuccino_core.trading.trader import TRANSIENT_ERRORS, StepOutcome
from tasks.retry import retry_on


def is_transient(error: BaseException) -> bool:
    """Return True for failures a retry may fix (broker unavailable, database or network I/O)."""
    return isinstance(error, TRANSIENT_ERRORS)


def open_sandbox(settings: Settings) -> Sandbox:
    """The sandbox of these settings: project database, bar store, registry loader and the kill switch."""
    from cappuccino_core.operations.site import LifecycleSite

    return LifecycleSite.from_settings(settings).sandbox()


@task(retries=3, retry_delay_seconds=[5, 15, 60], retry_condition_fn=retry_on(*TRANSIENT_ERRORS), cache_policy=NONE)
def end_finished_runs(sandbox: Sandbox, bar_time: datetime) -> list[str]:
    """End the runs whose period is over at ``bar_time``; return their ids."""
    return sandbox.end_due(bar_time)


@task(retries=3, retry_delay_seconds=[5, 15, 60], retry_condition_fn=retry_on(*TRANSIENT_ERRORS), cache_policy=NONE)
def runs_on_bar(sandbox: Sandbox, bar_time: datetime) -> tuple[list[SandboxRun], list[tuple[SandboxRun, datetime]]]:
    """The runs active at ``bar_time``, and those with a new closed bar of their interval (with that bar)."""
    return sandbox.active(bar_time), sandbox.due(bar_time)


@task(retries=3, retry_delay_seconds=[5, 15, 60], retry_condition_fn=retry_on(*TRANSIENT_ERRORS), cache_policy=NONE,
      task_run_name="sandbox-step-{trader_id}")
def step_sandbox_trader(sandbox: Sandbox, trader_id: str, bar_time: datetime) -> StepOutcome:
    """Step one sandbox run on ``bar_time``, a bar of its interval (idempotent: a repeated step changes nothing twice)."""
    return sandbox.step(trader_id, bar_time)
