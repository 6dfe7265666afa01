"""The ``promotion`` flow: sandbox → production.

Scheduled hourly (after the sandbox flow). It first puts the models the arena promoted into
the sandbox (a run of ``sandbox_days`` from the next bar; idempotent), then decides every
sandbox run whose period is over: head-to-head against the production model on the run's
bars, same rule as the arena (``cappuccino_core.operations.challenge``). The winner holds
production, the loser is retired; with no production model the best qualifying run's model
(positive alpha) becomes production. Every move is recorded in the project database,
mirrored into MLflow (aliases and ``stage`` tags) and alerted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow
from pydantic import BaseModel, Field

from cappuccino_core.clock import ensure_utc
from cappuccino_core.config import RunOverrides, settings_for
from cappuccino_core.trading.clock import latest_closed_bar
from tasks import lifecycle as lifecycle_tasks


class PromotionParams(BaseModel):
    """What a run may set."""

    at: datetime | None = Field(None, description="Decide as of this time (UTC); default now.")
    admit_arena: bool = Field(True, description="Put the arena's promoted models into the sandbox first.")
    overrides: RunOverrides = Field(default_factory=RunOverrides,
                                    description="Settings this run overrides (e.g. sandbox_days, as the pipeline passes them).")


class PromotionReport(BaseModel):
    """What one run did."""

    at: datetime
    admitted: list[str]
    decided: dict[str, Any]


@flow(name="promotion")
def promotion(params: PromotionParams = PromotionParams()) -> PromotionReport:
    """Admit the arena's promotions to the sandbox, then decide the sandbox runs whose period is over."""
    site = lifecycle_tasks.open_site(settings_for(params.overrides))
    settings = site.settings
    at = ensure_utc(params.at) if params.at is not None else site.now()
    admitted: list[str] = []
    if params.admit_arena:
        promoted = lifecycle_tasks.arena_promotions(settings)
        if promoted:
            interval = settings.base_interval
            start = latest_closed_bar(at, interval) + interval.timedelta
            admitted = lifecycle_tasks.admit_to_sandbox(site, promoted, at, start, settings.sandbox_days)
    decided = lifecycle_tasks.decide_sandbox_runs(site, at)
    return PromotionReport(at=at, admitted=admitted, decided=decided.to_dict())
