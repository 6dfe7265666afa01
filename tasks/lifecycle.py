"""Thin Prefect tasks over the lifecycle core. Retries only after I/O failures (broker, database, network).

Every task is safe to repeat: decided sandbox runs are not decided again, trader steps are
idempotent (journal rows, client order ids), a model already live is not moved twice, and the
mirror only writes what differs. A demotion whose flattening failed (``FlattenFailed``), a
model that does not fit the bars, or a bug fails at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from cappuccino_core.config import Settings
from cappuccino_core.operations import challenge, health, live, live_monitor, production, sandbox_entry
from cappuccino_core.operations.live import Approval
from cappuccino_core.operations.live_monitor import FlattenFailed
from cappuccino_core.operations.site import LifecycleSite
from cappuccino_core.trading.trader import TRANSIENT_ERRORS
from tasks.retry import retry_on

_IO = retry_on(*TRANSIENT_ERRORS, never=(FlattenFailed,))
_DELAYS = [5, 15, 60]


def open_site(settings: Settings) -> LifecycleSite:
    """The lifecycle site of ``settings`` (every lifecycle flow opens its site here)."""
    return LifecycleSite.from_settings(settings)


@task(retries=3, retry_delay_seconds=_DELAYS, retry_condition_fn=_IO, cache_policy=NONE)
def arena_promotions(settings: Settings) -> list[str]:
    """The models the arena promoted (to enter the sandbox)."""
    return sandbox_entry.arena_promotions(settings)


@task(retries=3, retry_delay_seconds=_DELAYS, retry_condition_fn=_IO, cache_policy=NONE)
def admit_to_sandbox(site: LifecycleSite, model_ids: list[str], at: datetime, start: datetime,
                     period_days: float) -> list[str]:
    """Start a sandbox run for each model not in the sandbox (or beyond) yet; return their trader ids."""
    sandbox = site.sandbox()
    runs = [sandbox_entry.enter_sandbox(site, sandbox, model_id, who=challenge.WHO, why="promoted by the arena",
                                    at=at, start=start, period=timedelta(days=period_days))
            for model_id in sandbox_entry.waiting_for_sandbox(site, model_ids)]
    if runs:
        site.mirror()
    return [run.trader_id for run in runs]


@task(retries=3, retry_delay_seconds=_DELAYS, retry_condition_fn=_IO, cache_policy=NONE)
def decide_sandbox_runs(site: LifecycleSite, at: datetime) -> challenge.PromotionReport:
    """Decide every sandbox run whose period is over (head-to-head with production)."""
    return challenge.promote_finished_runs(site, site.sandbox(), at=at)


@task(retries=3, retry_delay_seconds=_DELAYS, retry_condition_fn=_IO, cache_policy=NONE)
def judge_live_gate(site: LifecycleSite, at: datetime) -> live.GateCheck:
    """Decide the green light for the production model; say whether it may go live now."""
    return live.judge_green_light(site, at=at)


@task(retries=3, retry_delay_seconds=_DELAYS, retry_condition_fn=_IO, cache_policy=NONE)
def record_live_approval(site: LifecycleSite, model_id: str, approval: Approval, at: datetime) -> int:
    """Store the approval or rejection."""
    return live.record_approval(site, model_id, approval, at=at)


@task(retries=3, retry_delay_seconds=_DELAYS, retry_condition_fn=_IO, cache_policy=NONE)
def move_to_live(site: LifecycleSite, model_id: str, approval: Approval, decision: dict[str, Any],
                 at: datetime) -> dict[str, Any]:
    """Move the approved, green-lit production model to live."""
    return live.go_live(site, model_id, approval, decision, at=at)


@task(cache_policy=NONE)
def live_capital_report(site: LifecycleSite) -> dict[str, Any] | None:
    """The live model's ramp step and allocations."""
    return live.live_capital(site)


@task(retries=3, retry_delay_seconds=_DELAYS, retry_condition_fn=_IO, cache_policy=NONE,
      task_run_name="production-step")
def step_production_trader(site: LifecycleSite, bar_time: datetime) -> production.TraderStep | None:
    """Step the production model on the paper account."""
    return production.step_production(site, bar_time)


@task(retries=3, retry_delay_seconds=_DELAYS, retry_condition_fn=_IO, cache_policy=NONE, task_run_name="live-step")
def step_live_trader(site: LifecycleSite, bar_time: datetime) -> production.TraderStep | None:
    """Step the live model on the live account with its ramp capital."""
    return production.step_live(site, bar_time)


@task(retries=3, retry_delay_seconds=_DELAYS, retry_condition_fn=_IO, cache_policy=NONE)
def watch_live(site: LifecycleSite, at: datetime) -> dict[str, Any]:
    """Check the live limits and drift; demote or halt as the verdict says."""
    return live_monitor.monitor_live(site, at=at)


@task(retries=3, retry_delay_seconds=_DELAYS, retry_condition_fn=_IO, cache_policy=NONE)
def watch_paper(site: LifecycleSite, at: datetime) -> dict[str, Any]:
    """Compare the production model's paper record with its backtest; alert."""
    return live_monitor.monitor_paper(site, at=at)


@task(retries=3, retry_delay_seconds=_DELAYS, retry_condition_fn=_IO, cache_policy=NONE)
def check_trading_health(site: LifecycleSite, at: datetime, grace_bars: int) -> dict[str, Any]:
    """Missed bars, catastrophic losses, repeated errors, stale data; alert on each."""
    return health.check_health(site, at=at, grace_bars=grace_bars)
