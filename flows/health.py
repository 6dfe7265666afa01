"""The ``health`` flow, every 5 minutes: missed bars, catastrophic losses, repeated errors, stale data.

It also marks Crashed the flow runs of the home whose process was killed (``tasks.flow_runs``).

Each finding is an alert (log, database, notification URLs; never a secret), raised once an
hour while it lasts (``cappuccino_core.operations.health``). The run itself succeeds when it
could check: its findings are in its report, in the alerts and in the markdown artifact
``health`` of the run (the Prefect UI shows the latest under Artifacts).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow
from pydantic import BaseModel, Field

from cappuccino_core.clock import ensure_utc
from cappuccino_core.config import load_settings
from cappuccino_core.views.flow_markdown import health_headline, health_markdown
from tasks import lifecycle as lifecycle_tasks
from tasks.artifacts import publish_markdown
from tasks.flow_runs import close_dead_runs

ARTIFACT_KEY = "health"


class HealthParams(BaseModel):
    """What a run may set."""

    at: datetime | None = Field(None, description="Check as of this time (UTC); default now.")
    grace_bars: int = Field(1, ge=0, description="Bars a trader may lag behind the latest closed bar.")


class HealthReport(BaseModel):
    """What the health check found."""

    at: datetime
    expected_bar: datetime
    watched: list[dict[str, Any]]
    findings: list[dict[str, Any]]
    crashed_flow_runs: list[str] = Field(default_factory=list, description="Flow runs whose process died, marked Crashed.")


@flow(name="health")
def health(params: HealthParams = HealthParams()) -> HealthReport:
    """Run every health check and alert on each finding."""
    site = lifecycle_tasks.open_site(load_settings())
    at = ensure_utc(params.at) if params.at is not None else site.now()
    found = lifecycle_tasks.check_trading_health(site, at, params.grace_bars)
    crashed = close_dead_runs(site.settings.home)  # a killed study's flow run ends Crashed within 5 minutes
    publish_markdown(ARTIFACT_KEY, health_markdown(found), health_headline(found))
    return HealthReport(**found, crashed_flow_runs=crashed)
