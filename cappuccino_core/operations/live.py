"""The road to live: the green light on the production model's paper record, a person's approval, the move.

``judge_green_light`` looks at the production model and answers with a ``GateCheck``:

* ``no_production`` / ``already_live`` / ``live_taken`` (another model is live: it must be
  demoted or retired first) / ``no_record`` (the production model has not traded yet);
* otherwise it decides the green light on the production trader's journal
  (``green_light.decide_green_light``: the last 2 days, alpha > 0, Sharpe > 0.1, drawdown
  < 15 %, no errors), stores the decision in the database and tags it in MLflow, and says
  ``refused`` (with every failed rule), ``waiting`` (green-lit, but the configuration does
  not allow live trading: the message says what is missing, and a warning alert records it)
  or ``ready``.

A ``ready`` model goes live only with an ``Approval`` (a person through the live-gate flow's
pause, or automatic approval when ``auto_approve`` is set). Every approval or rejection is
stored as a gate decision (``live_approval``). ``go_live`` requires both as values and checks
them against the model's own stored records (the latest green light, passing and recent; the
latest approval, given after it), checks the state again (the wait for approval may have
been long), moves the model to live and mirrors it as one unit (a mirror failure moves it
back), and alerts; its capital starts at the first ramp step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from cappuccino_core.clock import ensure_utc
from cappuccino_core.lifecycle.alerts import AlertLevel
from cappuccino_core.lifecycle.green_light import GATE_NAME, GreenLightConfig, decide_green_light
from cappuccino_core.operations.live_account import allocations
from cappuccino_core.operations.notify import alert_once
from cappuccino_core.operations.production import (
    live_ramp,
    live_record,
    live_trader_id,
    model_interval,
    production_trader_id,
)
from cappuccino_core.operations.track_records import journal_record
from cappuccino_core.operations.site import LifecycleSite, LiveNotAllowed, live_readiness
from cappuccino_core.lifecycle.stages import Role, Stage, TransitionRefused
from cappuccino_core.lifecycle.track_record import TrackRecord

APPROVAL_GATE = "live_approval"
WHO = "live-gate"
GREEN_LIGHT_RULES = ("history", "alpha", "sharpe", "max_drawdown", "errors")  # every one must have passed


class GateStatus(StrEnum):
    """Where the live gate stands for the production model."""

    NO_PRODUCTION = "no_production"
    ALREADY_LIVE = "already_live"
    LIVE_TAKEN = "live_taken"
    NO_RECORD = "no_record"
    REFUSED = "refused"
    WAITING = "waiting"
    READY = "ready"


@dataclass(frozen=True)
class GateCheck:
    """The live gate's answer: status, model, a message for the owner and the green-light decision."""

    status: GateStatus
    model_id: str | None
    message: str
    decision: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the check as a JSON-ready dict."""
        return {"status": str(self.status), "model_id": self.model_id, "message": self.message,
                "decision": self.decision}


@dataclass(frozen=True)
class Approval:
    """A person's (or the automatic) answer to "may this model trade real money?"."""

    approve: bool
    note: str
    who: str

    def to_dict(self) -> dict[str, Any]:
        """Return the approval as a JSON-ready dict."""
        return {"approve": self.approve, "note": self.note, "who": self.who}


def production_record(site: LifecycleSite, model_id: str) -> TrackRecord | None:
    """Return the production model's paper record (its production trader's journal)."""
    return journal_record(site.journal.entries(production_trader_id(model_id)), model_interval(site, model_id))


def judge_green_light(site: LifecycleSite, *, at: datetime, config: GreenLightConfig | None = None) -> GateCheck:
    """Decide the green light for the production model and say whether it may go live now (module docstring)."""
    at = ensure_utc(at)
    model_id = site.store.holder(Role.PRODUCTION)
    if model_id is None:
        return GateCheck(GateStatus.NO_PRODUCTION, None, "no production model")
    live = site.store.holder(Role.LIVE)
    if live == model_id:
        return GateCheck(GateStatus.ALREADY_LIVE, model_id, f"{model_id} is already live")
    if live is not None:
        return GateCheck(GateStatus.LIVE_TAKEN, model_id,
                         f"{live} is live; {model_id} can go live only once it is demoted or retired")
    record = production_record(site, model_id)
    if record is None:
        return GateCheck(GateStatus.NO_RECORD, model_id, f"{model_id} has not traded on paper yet")
    decision = decide_green_light(record, model_id=model_id, decided_at=at, config=config)
    figures = decision.to_dict()
    site.store.record_gate_decision(GATE_NAME, model_id, allowed=decision.allowed, decided_at=at, decision=figures)
    client = site.mlflow()
    if client is not None:
        from cappuccino_core.operations.registry_mirror import mirror_gate_decision  # MLflow: only to mirror a decision

        mirror_gate_decision(client, model_id, figures)
    if not decision.allowed:
        return GateCheck(GateStatus.REFUSED, model_id, "no green light: " + "; ".join(decision.reasons), figures)
    readiness = live_readiness(site.settings)
    if not readiness.ready:
        message = f"{model_id} has the green light but waits: {readiness.message}"
        alert_once(site, AlertLevel.WARNING, "live_gate", message, at=at)
        return GateCheck(GateStatus.WAITING, model_id, message, figures)
    return GateCheck(GateStatus.READY, model_id, f"{model_id} has the green light; live trading is configured", figures)


def record_approval(site: LifecycleSite, model_id: str, approval: Approval, *, at: datetime) -> int:
    """Store the approval or rejection as a ``live_approval`` gate decision; return its id."""
    return site.store.record_gate_decision(APPROVAL_GATE, model_id, allowed=approval.approve,
                                           decided_at=ensure_utc(at), decision=approval.to_dict())


class LiveGateRefused(RuntimeError):
    """``go_live`` found no passing green-light decision or no approval of its own record for the model."""


class LiveMirrorFailed(RuntimeError):
    """The move to live could not be mirrored to MLflow; ``reverted`` says whether the model was moved back.

    ``reverted`` True: the model is where it was (production, not live) and nothing traded live.
    False: moving it back failed too; the model is live in the database and the next mirror
    (every lifecycle flow run mirrors) repairs MLflow.
    """

    def __init__(self, message: str, *, reverted: bool) -> None:
        super().__init__(message)
        self.reverted = reverted


def check_live_grant(site: LifecycleSite, model_id: str, approval: Approval, decision: Mapping[str, Any]) -> None:
    """Check that ``decision`` and ``approval`` are this model's own stored, passing, in-order records.

    The green light must be the model's latest stored ``green_light`` decision, allowed with
    every rule passed (a newer refusal voids an older green light); the approval must be the
    model's latest stored ``live_approval``, approving, by someone, and stored after that
    green light.

    Raises:
        LiveGateRefused: which of these does not hold.
    """
    if decision.get("model_id") != model_id:
        raise LiveGateRefused(f"the green-light decision given is for {decision.get('model_id')!r}, not {model_id}")
    rules = decision.get("rules") or []
    if (not decision.get("allowed") or {r.get("name") for r in rules} != set(GREEN_LIGHT_RULES)
            or not all(r.get("passed") for r in rules)):
        raise LiveGateRefused(f"{model_id} has no passing green-light decision: {model_id} was not moved to live")
    lights = site.store.gate_decisions(gate=GATE_NAME, model_id=model_id)
    if not lights or lights[-1].decision != _as_stored(decision) or not lights[-1].allowed:
        raise LiveGateRefused(f"the green-light decision given is not {model_id}'s latest stored one "
                              "(judge_green_light): it was not moved to live")
    approvals = site.store.gate_decisions(gate=APPROVAL_GATE, model_id=model_id)
    if not approval.approve or not approval.who.strip():
        raise LiveGateRefused(f"{model_id} was not approved for live trading")
    if not approvals or approvals[-1].decision != _as_stored(approval.to_dict()) or not approvals[-1].allowed:
        raise LiveGateRefused(f"the approval given is not {model_id}'s latest stored approval (record_approval): "
                              "it was not moved to live")
    if approvals[-1].id < lights[-1].id:  # stored before the green light it would approve
        raise LiveGateRefused(f"{model_id}'s approval was given before its latest green light: "
                              "it was not moved to live")


def go_live(site: LifecycleSite, model_id: str, approval: Approval, decision: Mapping[str, Any], *,
            at: datetime) -> dict[str, Any]:
    """Move the approved, green-lit production model to live; return the transition and its first capital step.

    The green light and the approval are checked against the model's own stored records
    (``check_live_grant``), never taken on the caller's word. The move and its MLflow mirror
    are one unit: when the mirror fails the model is moved back to production and
    ``LiveMirrorFailed`` says so (or, if that fails too, that the next mirror repairs it).
    Idempotent: for a model already live it returns the move that made it live.

    Raises:
        LiveGateRefused: no passing green light or no approval of the model's own (see above).
        LiveNotAllowed: the configuration no longer allows live trading.
        TransitionRefused: the model no longer holds production, or another model went live meanwhile.
        LiveMirrorFailed: MLflow could not be updated (``reverted`` says where the model is).
    """
    at = ensure_utc(at)
    if site.store.holder(Role.LIVE) == model_id:  # a repeated call (a retried task): already done
        moved = [t for t in site.store.transitions(model_id) if t.to_stage is Stage.LIVE][-1]
        return {"transition": moved.to_dict(), "capital": moved.figures.get("capital")}
    check_live_grant(site, model_id, approval, decision)
    readiness = live_readiness(site.settings)
    if not readiness.ready:
        raise LiveNotAllowed(readiness.message)
    if site.store.holder(Role.PRODUCTION) != model_id:
        raise TransitionRefused(f"{model_id} no longer holds production; it was not moved to live")
    first = live_ramp(site, None)
    why = f"green light and approval by {approval.who}" + (f": {approval.note}" if approval.note else "")
    transition = site.store.move(model_id, Stage.LIVE, who=approval.who, why=why, at=at,
                                 figures={"green_light": dict(decision), "approval": approval.to_dict(),
                                          "capital": first.to_dict()})
    _mirror_or_revert(site, model_id, at)
    site.alert(AlertLevel.WARNING, "live_gate",
               f"{model_id} is LIVE: trades {first.capital:.2f} of real money (step 1 of the ramp); {why}", at=at)
    return {"transition": transition.to_dict(), "capital": first.to_dict()}


def _as_stored(value: Mapping[str, Any]) -> Any:
    """``value`` as the store reads it back (JSON: tuples become lists)."""
    return json.loads(json.dumps(dict(value), sort_keys=True))


def _mirror_or_revert(site: LifecycleSite, model_id: str, at: datetime) -> None:
    """Mirror the move to live; on failure move the model back to production and raise ``LiveMirrorFailed``."""
    try:
        site.mirror()
    except Exception as exc:  # noqa: BLE001 - any mirror failure undoes the move; re-raised as LiveMirrorFailed
        cause = f"{type(exc).__name__}: {exc}"
        try:
            site.store.move(model_id, Stage.PRODUCTION, who=WHO, at=at,
                            why=f"the move to live could not be mirrored to MLflow ({cause}); moved back")
        except Exception as undo:  # noqa: BLE001 - reported with the original cause below
            site.alert(AlertLevel.CRITICAL, "live_gate", f"{model_id} is live but MLflow was not updated ({cause}) "
                       f"and moving it back failed ({type(undo).__name__}); the next mirror repairs MLflow", at=at)
            raise LiveMirrorFailed(f"{model_id} is live, but MLflow was not updated ({cause}); moving it back failed "
                                   f"({type(undo).__name__}: {undo}); the next lifecycle run repairs the mirror",
                                   reverted=False) from exc
        site.alert(AlertLevel.CRITICAL, "live_gate",
                   f"{model_id} was not moved to live: MLflow could not be updated ({cause}); it stays in production",
                   at=at)
        raise LiveMirrorFailed(f"{model_id} was not moved to live: MLflow could not be updated ({cause}); "
                               "it was moved back to production and traded nothing live", reverted=True) from exc


def live_capital(site: LifecycleSite) -> dict[str, Any] | None:
    """Return the live model's ramp step and allocations (``None`` when no model is live)."""
    model_id = site.store.holder(Role.LIVE)
    if model_id is None:
        return None
    record, since = live_record(site, model_id)
    out: dict[str, Any] = {"model_id": model_id, "since": None if since is None else since.isoformat()}
    if site.settings.live_capital is None:
        out["ramp"] = None
        out["message"] = "live_capital is not set"
    else:
        out["ramp"] = live_ramp(site, record).to_dict()
    out["allocations"] = [] if since is None else [
        a.to_dict() for a in allocations(site.engine, live_trader_id(model_id), since)]
    return out
