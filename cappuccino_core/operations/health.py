"""Health, every 5 minutes: traders that missed their bar, catastrophic losses, repeated errors, stale data.

Watched traders: every active sandbox run, the production trader, and the live trader
while live trading is allowed. For each:

* ``missed_bar`` (critical) — it has not processed the bar it should have by now: the latest
  closed bar less ``grace_bars`` (default 1: the trading flows run once the bar is ingested),
  or for a model of a longer interval (4h) the latest bar of its interval closed by then.
  A trader that started after that bar is not expected to have it.
* ``catastrophic_loss`` (emergency) — its return since it started (for the live trader:
  since it went live, capital steps removed) is a loss of at least ``catastrophic_loss``
  (default 15 %).
* ``errors`` (critical) — at least ``max_step_errors`` failed steps (journal status
  ``error``) in the last 24 hours.

And the bars: ``stale_data`` (warning) when the freshness gate fails on the stored bars
(``data.ingest.data_status``), or no bar is stored at all.

Each finding raises an alert (``notify.alert_once``: once an hour per check and subject),
to the log, the database and the notification URLs; alerts are scrubbed of secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cappuccino_core.clock import ensure_utc
from cappuccino_core.config.components import freshness_policy
from cappuccino_core.data.ingest import data_status
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.store import BarStore
from cappuccino_core.evaluation.metrics import total_return
from cappuccino_core.lifecycle.alerts import AlertLevel
from cappuccino_core.operations.notify import alert_once
from cappuccino_core.operations.production import live_record, live_trader_id, model_interval, production_trader_id
from cappuccino_core.operations.track_records import journal_record
from cappuccino_core.operations.site import LifecycleSite, live_readiness
from cappuccino_core.lifecycle.stages import Role, Stage
from cappuccino_core.lifecycle.track_record import TrackRecord
from cappuccino_core.trading.clock import latest_closed_bar
from cappuccino_core.trading.journal import StepStatus

ERROR_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Watched:
    """A trader the health flow expects to trade every bar."""

    trader_id: str
    role: str  # sandbox, production or live
    model_id: str
    since: datetime
    interval: Interval  # the model's bars


@dataclass(frozen=True)
class Finding:
    """One health problem."""

    check: str
    level: AlertLevel
    subject: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Return the finding as a JSON-ready dict."""
        return {"check": self.check, "level": str(self.level), "subject": self.subject, "message": self.message}


def watched_traders(site: LifecycleSite, bar_time: datetime) -> list[Watched]:
    """Return the traders that should trade ``bar_time``: active sandbox runs, production, live (if allowed)."""
    watched = [Watched(run.trader_id, "sandbox", run.model_ref, run.started_at, run.interval)
               for run in site.sandbox().active(bar_time)]
    production = site.store.holder(Role.PRODUCTION)
    if production is not None:
        since = _role_since(site, production, Stage.PRODUCTION)
        watched.append(Watched(production_trader_id(production), "production", production, since,
                               model_interval(site, production)))
    live = site.store.holder(Role.LIVE)
    if live is not None and live_readiness(site.settings).ready:
        watched.append(Watched(live_trader_id(live), "live", live, _role_since(site, live, Stage.LIVE),
                               model_interval(site, live)))
    return watched


def check_health(site: LifecycleSite, *, at: datetime, grace_bars: int = 1, check_data: bool = True) -> dict[str, Any]:
    """Run every health check at ``at``; alert on each finding; return the findings and what was watched."""
    if grace_bars < 0:
        raise ValueError(f"grace_bars must be >= 0, got {grace_bars}")
    at = ensure_utc(at)
    interval = site.settings.base_interval
    expected = latest_closed_bar(at, interval) - grace_bars * interval.timedelta
    traders = watched_traders(site, expected)
    findings: list[Finding] = []
    for trader in traders:
        findings.extend(_trader_findings(site, trader, expected, at))
    if check_data:
        findings.extend(_data_findings(site, at))
    for finding in findings:
        alert_once(site, finding.level, f"health:{finding.check}:{finding.subject}", finding.message, at=at)
    return {"at": at.isoformat(), "expected_bar": expected.isoformat(),
            "watched": [{"trader_id": t.trader_id, "role": t.role, "model_id": t.model_id} for t in traders],
            "findings": [f.to_dict() for f in findings]}


def _trader_findings(site: LifecycleSite, trader: Watched, expected: datetime, at: datetime) -> list[Finding]:
    settings = site.settings
    who = f"{trader.role} trader {trader.trader_id} ({trader.model_id})"
    found = []
    # The latest bar of the trader's own interval closed by the end of the expected base bar.
    expected = latest_closed_bar(expected + settings.base_interval.timedelta, trader.interval)
    last = site.journal.last_bar_time(trader.trader_id)
    if trader.since <= expected and (last is None or last < expected):
        seen = "no bar yet" if last is None else f"last bar {last.isoformat()}"
        found.append(Finding("missed_bar", AlertLevel.CRITICAL, trader.trader_id,
                             f"{who} missed its bar: {seen}, expected {expected.isoformat()}"))
    entries = site.journal.entries(trader.trader_id)
    record: TrackRecord | None
    if trader.role == "live":
        record, _ = live_record(site, trader.model_id, trader.interval)
    else:
        record = journal_record([e for e in entries if e.bar_time >= trader.since], trader.interval)
    total = None if record is None else total_return(record.returns)
    if total is not None and -total >= settings.catastrophic_loss:
        found.append(Finding("catastrophic_loss", AlertLevel.EMERGENCY, trader.trader_id,
                             f"{who} lost {-total:.2%} since it started (limit {settings.catastrophic_loss:.0%})"))
    errors = sum(1 for e in entries if e.status is StepStatus.ERROR and at - ERROR_WINDOW < e.bar_time <= at)
    if errors >= settings.max_step_errors:
        found.append(Finding("errors", AlertLevel.CRITICAL, trader.trader_id,
                             f"{who}: {errors} failed steps in the last 24 h (limit {settings.max_step_errors})"))
    return found


def _data_findings(site: LifecycleSite, at: datetime) -> list[Finding]:
    settings = site.settings
    store = BarStore(settings.bars_dir)
    if not store.entries():
        return [Finding("stale_data", AlertLevel.WARNING, "bars", f"no bars are stored in {store.root}")]
    status = data_status(store, freshness_policy(settings), at)
    if status.ok:
        return []
    return [Finding("stale_data", AlertLevel.WARNING, "bars", f"data is stale or broken: {status.verdict.message}")]


def _role_since(site: LifecycleSite, model_id: str, stage: Stage) -> datetime:
    moves = [t for t in site.store.transitions(model_id) if t.to_stage is stage]
    if not moves:
        raise RuntimeError(f"{model_id} holds {stage} but no move to {stage} is recorded")
    return moves[-1].at
