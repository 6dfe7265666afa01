"""The ``live-gate`` flow: the green light, a person's approval, the move to live, the capital ramp.

1. Decide the green light on the production model's last 2 days of paper trading (alpha >
   0, Sharpe > 0.1, drawdown < 15 %, no errors); the decision is stored and tagged in MLflow.
2. If the configuration does not allow live trading (``live_enabled``, live keys,
   ``live_capital``), a green-lit model waits: the report and a warning alert say what is
   missing. Nothing else happens.
3. Otherwise the flow **pauses** (``pause_flow_run`` with a ``LiveApproval`` input: approve
   yes/no and a note) until a person answers from the Prefect UI ("Resume"), at most
   ``approval_timeout_hours`` (then the run fails, and nothing moves). With
   ``auto_approve`` it does not pause. The answer is stored.
4. Approved: the model moves to live (it keeps production: paper and live trade side by
   side) and trades 25 % of ``live_capital`` first. Rejected: the flow stops there.

When the production model is already live, the run reports its capital ramp step instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, Field

from cappuccino_core.clock import ensure_utc
from cappuccino_core.config import load_settings
from cappuccino_core.operations.live import Approval, GateStatus
from tasks import lifecycle as lifecycle_tasks

AUTO_APPROVER = "auto-approval"
UI_APPROVER = "owner (Prefect UI)"


class LiveApproval(RunInput):
    """The owner's answer in the Prefect UI: may this model trade real money?"""

    approve: bool = Field(False, description="Approve the move to live trading (real money).")
    note: str = Field("", description="Why (recorded with the decision).")


class LiveGateParams(BaseModel):
    """What a run may set."""

    at: datetime | None = Field(None, description="Judge as of this time (UTC); default now.")
    approval_timeout_seconds: int | None = Field(
        None, ge=1, description="How long to wait for approval (default CAPPUCCINO_APPROVAL_TIMEOUT_HOURS).")
    poll_seconds: int = Field(10, ge=1, description="How often the paused run checks whether it was resumed.")


class LiveGateReport(BaseModel):
    """What one run found and did."""

    status: str  # a GateStatus, or "rejected" / "live"
    model_id: str | None
    message: str
    decision: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None
    live: dict[str, Any] | None = None


@flow(name="live-gate")
def live_gate(params: LiveGateParams = LiveGateParams()) -> LiveGateReport:
    """Green light, approval (pause) and the move to live; see the module docstring."""
    site = lifecycle_tasks.open_site(load_settings())
    settings = site.settings
    at = ensure_utc(params.at) if params.at is not None else site.now()
    check = lifecycle_tasks.judge_live_gate(site, at)
    status, model_id, decision = check.status, check.model_id, check.decision
    if status is GateStatus.ALREADY_LIVE:
        return LiveGateReport(status=str(status), model_id=model_id, message=check.message,
                              live=lifecycle_tasks.live_capital_report(site))
    if status is not GateStatus.READY:
        return LiveGateReport(status=str(status), model_id=model_id, message=check.message, decision=decision)
    if settings.auto_approve:
        approval = Approval(True, "automatic approval (CAPPUCCINO_AUTO_APPROVE=true)", AUTO_APPROVER)
    else:
        timeout = params.approval_timeout_seconds or int(settings.approval_timeout_hours * 3600)
        form = LiveApproval.with_initial_data(description=_ask(model_id, decision), approve=False, note="")
        answer = pause_flow_run(wait_for_input=form, timeout=timeout, poll_interval=params.poll_seconds)
        approval = Approval(bool(answer.approve), answer.note, UI_APPROVER)
    decided_at = site.now()
    lifecycle_tasks.record_live_approval(site, model_id, approval, decided_at)
    if not approval.approve:
        return LiveGateReport(status="rejected", model_id=model_id, decision=decision,
                              approval=approval.to_dict(),
                              message=f"{model_id} was not approved for live trading: {approval.note or 'no note'}")
    moved = lifecycle_tasks.move_to_live(site, model_id, approval, decision, decided_at)
    return LiveGateReport(status="live", model_id=model_id, message=f"{model_id} is live", decision=decision,
                          approval=approval.to_dict(), live=moved)


def _ask(model_id: str, decision: dict[str, Any] | None) -> str:
    """The question shown in the Prefect UI, with every rule of the green light and its value."""
    lines = [f"**Move {model_id} to live trading (real money)?**", "", "Green light (all passed):"]
    for rule in (decision or {}).get("rules", []):
        lines.append(f"- {rule['name']}: {rule['value']} {rule['comparison']} {rule['threshold']}")
    lines += ["", "Set *approve* and add a note; leaving *approve* off rejects the move."]
    return "\n".join(lines)
