"""The status board: the whole pipeline on one page (``cappuccino status [--json]``).

Sections: data freshness; the current (latest) training and timeframe studies and their
progress; the arena's king and streak; the sandbox runs; the production model; the live
model and its capital; the kill switch; the last transitions and alerts. A stage that has
not started yet says so (``{"status": "not started", ...}``); the board reads, it never
trades or moves a model (it creates the project database's tables if they are missing).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cappuccino_core.clock import SystemClock, ensure_utc
from cappuccino_core.config import Settings
from cappuccino_core.config.components import freshness_policy
from cappuccino_core.data.ingest import data_status
from cappuccino_core.data.store import BarStore
from cappuccino_core.evaluation.metrics import alpha, max_drawdown, total_return
from cappuccino_core.operations.site import LifecycleSite, live_readiness
from cappuccino_core.lifecycle.stages import Role
from cappuccino_core.lifecycle.track_record import TrackRecord
from cappuccino_core.search.location import StudyError, StudyLocation, latest_study, study_state
from cappuccino_core.study.status import study_status
from cappuccino_core.study.storage import StudyNotFound

# The traders' modules (torch, MLflow) are imported only by the sections that have a trader to
# show: on a home without one, `cappuccino status` reads the database and nothing more.

NOT_STARTED = "not started"


def status_board(settings: Settings, *, now: datetime | None = None, site: LifecycleSite | None = None,
                 last: int = 10) -> dict[str, Any]:
    """Return the board as a JSON-ready dict (``last``: how many transitions and alerts)."""
    now = ensure_utc(now) if now is not None else SystemClock().now()
    site = site or LifecycleSite.from_settings(settings)
    return {
        "generated_at": now.isoformat(),
        "data": data_section(settings, now),
        "study": study_section(settings),
        "arena": arena_section(settings),
        "sandbox": sandbox_section(site),
        "production": production_section(site),
        "live": live_section(site),
        "halt": halt_section(site),
        "transitions": [t.to_dict() for t in site.store.transitions(last=last)],
        "alerts": [{"level": str(a.level), "source": a.source, "message": a.message, "at": a.at.isoformat()}
                   for a in site.alerts.recent(last=last)],
    }


def data_section(settings: Settings, now: datetime) -> dict[str, Any]:
    """Freshness of the stored bars."""
    store = BarStore(settings.bars_dir)
    if not store.entries():
        return {"status": NOT_STARTED, "message": f"no bars stored in {store.root}: run `cappuccino data ingest`"}
    status = data_status(store, freshness_policy(settings), now)
    last_bars = [r.last_bar for r in status.reports.values() if r.last_bar is not None]
    return {"status": "fresh" if status.ok else "stale", "message": status.verdict.message,
            "series": len(status.reports), "stale": len(status.verdict.stale), "broken": len(status.verdict.broken),
            "last_bar": max(last_bars).isoformat() if last_bars else None}


def study_section(settings: Settings) -> dict[str, Any]:
    """The latest training study (the current one) and the latest timeframe search, with progress."""
    loc = StudyLocation.from_settings(settings)
    out: dict[str, Any] = {}
    for kind in ("training", "timeframe"):
        try:
            name = latest_study(loc, kind)
            status = study_status(loc.storage_url, name)
        except (StudyError, StudyNotFound) as exc:
            out[kind] = {"status": NOT_STARTED, "message": str(exc)}
            continue
        finished = sum(v for k, v in status.trials_by_state.items() if k in ("COMPLETE", "PRUNED", "FAIL"))
        running = status.trials_by_state.get("RUNNING", 0)
        out[kind] = {"status": study_state(loc, name, running=running, stopped_early=status.stopped_early), "name": name,
                     "trials": status.total, "finished": finished, "cap": status.cap,
                     "progress": None if not status.cap else finished / status.cap,
                     "running": running, "best_value": status.best_value,
                     "best_trial": status.best_trial, "stop_reason": status.stop_reason}
    return out


def arena_section(settings: Settings) -> dict[str, Any]:
    """The arena's king and streak, or ``not started`` when there is no arena (or no arena module)."""
    try:
        from cappuccino_core.arena.standing import arena_status
    except ImportError as exc:
        return {"status": NOT_STARTED, "message": f"the arena is not available: {exc}"}
    try:
        status = arena_status(settings)
    except LookupError as exc:
        return {"status": NOT_STARTED, "message": str(exc)}
    keys = ("arena", "king", "king_study", "streak", "matches_played", "waiting", "eliminated", "promoted")
    return {"status": "running", **{k: status.get(k) for k in keys}}


def sandbox_section(site: LifecycleSite) -> list[dict[str, Any]]:
    """Every sandbox run with its figures and its model's stage."""
    keys = ("trader_id", "model", "state", "started_at", "ends_at", "traded_bars", "equity", "return", "alpha",
            "sharpe", "max_drawdown", "trades", "errors")
    from cappuccino_core.sandbox.report import sandbox_status

    runs = sandbox_status(site.engine)["runs"]
    return [{**{k: r[k] for k in keys}, "stage": _stage(site, r["model"])} for r in runs]


def production_section(site: LifecycleSite) -> dict[str, Any]:
    """The production model, its paper account and record, and its last green-light decision."""
    model_id = site.store.holder(Role.PRODUCTION)
    if model_id is None:
        return {"model_id": None, "message": "no production model"}
    from cappuccino_core.operations.live import production_record
    from cappuccino_core.operations.production import production_trader_id

    decisions = site.store.gate_decisions(gate="green_light", model_id=model_id)
    last = decisions[-1] if decisions else None
    return {"model_id": model_id, "account": site.paper_mode, "trader_id": production_trader_id(model_id),
            **_figures(production_record(site, model_id)),
            "green_light": None if last is None else {
                "allowed": last.allowed, "decided_at": last.decided_at.isoformat(),
                "failed": [r["detail"] for r in last.decision["rules"] if not r["passed"]]}}


def live_section(site: LifecycleSite) -> dict[str, Any]:
    """The live model, its capital step and record, and whether live trading is allowed."""
    readiness = live_readiness(site.settings)
    model_id = site.store.holder(Role.LIVE)
    base = {"allowed": readiness.ready, "message": readiness.message}
    if model_id is None:
        return {"model_id": None, **base}
    from cappuccino_core.operations.live import live_capital
    from cappuccino_core.operations.production import live_record

    record, _ = live_record(site, model_id)
    return {"model_id": model_id, **base, "capital": live_capital(site), **_figures(record)}


def halt_section(site: LifecycleSite) -> dict[str, Any]:
    """The kill switch."""
    state = site.switch.state()
    return {"halted": state.halted, "reason": state.reason, "who": state.who,
            "since": None if state.since is None else state.since.isoformat()}


def _figures(record: TrackRecord | None) -> dict[str, Any]:
    if record is None or record.returns.size == 0:
        return {"bars": 0, "return": None, "alpha": None, "max_drawdown": None, "last_bar": None}
    return {"bars": int(record.returns.size), "return": total_return(record.returns),
            "alpha": alpha(record.returns, record.benchmark_returns), "max_drawdown": max_drawdown(record.returns),
            "last_bar": record.end.isoformat()}


def _stage(site: LifecycleSite, model_id: str) -> str | None:
    stage = site.store.stage_of(model_id)
    return None if stage is None else str(stage)
