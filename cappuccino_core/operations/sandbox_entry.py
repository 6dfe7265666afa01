"""Arena → sandbox: a model the arena promoted starts its sandbox run and enters stage ``sandbox``.

The promotion flow reads the arena's promoted models (``arena.service.arena_status``; no arena
yet means nothing to admit), keeps those not yet in the sandbox or beyond
(``waiting_for_sandbox``), and gives each a sandbox run of ``sandbox_days`` starting at the
next bar (``enter_sandbox``). Both steps are idempotent.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from cappuccino_core.config import Settings
from cappuccino_core.operations.site import LifecycleSite
from cappuccino_core.lifecycle.stages import IllegalTransition, Stage
from cappuccino_core.sandbox.runner import Sandbox, SandboxRun

logger = logging.getLogger(__name__)


def enter_sandbox(site: LifecycleSite, sandbox: Sandbox, model_id: str, *, who: str, why: str, at: datetime,
                  start: datetime, period: timedelta) -> SandboxRun:
    """Start the model's sandbox run and record its move into the sandbox (idempotent).

    A model new to the lifecycle or in the arena moves to ``sandbox``; one already there
    keeps its run. The run is started first, so a model that cannot be loaded never enters.

    Raises:
        IllegalTransition: the model is past the sandbox (production, live, retired).
    """
    stage = site.store.stage_of(model_id)
    if stage not in (None, Stage.ARENA, Stage.SANDBOX):
        raise IllegalTransition(f"{model_id} is in stage {stage}; it cannot enter the sandbox")
    run = sandbox.start(model_id, start=start, period=period)
    if stage is not Stage.SANDBOX:
        site.store.move(model_id, Stage.SANDBOX, who=who, why=why, at=at,
                        figures={"sandbox_run": run.trader_id, "start": run.started_at.isoformat(),
                                 "ends": run.ends_at.isoformat()})
    return run


def arena_promotions(settings: Settings) -> list[str]:
    """Return every model the arena promoted, in the arena's order (``waiting_for_sandbox`` filters them).

    Reads ``arena.service.arena_status``; with no arena (not installed, or not started yet)
    there is nothing to admit.
    """
    try:
        from cappuccino_core.arena.service import arena_status
    except ImportError:
        logger.info("no arena module: no arena promotions to admit")
        return []
    try:
        status = arena_status(settings)
    except LookupError as exc:
        logger.info("no arena promotions to admit: %s", exc)
        return []
    return list(status.get("promoted_models", []))


def waiting_for_sandbox(site: LifecycleSite, model_ids: list[str]) -> list[str]:
    """Return the models not yet in the sandbox or beyond (new to the lifecycle, or still in the arena)."""
    return [m for m in model_ids if site.store.stage_of(m) in (None, Stage.ARENA)]
