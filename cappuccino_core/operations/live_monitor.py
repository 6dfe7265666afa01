"""The monitor, every bar: live limits and drift against the backtest, and what follows from them.

**Live.** The live model's record since it went live (``production.live_record``: capital
steps removed) is checked against the live limits (``monitor.evaluate_limits``: drawdown,
rolling Sharpe, daily loss, losing days, errors, and the catastrophic loss at
``catastrophic_loss``) and against what the backtester predicts on the same bars
(``drift.compare_with_backtest``: tracking error and shortfall; the model is replayed from a
flat book with the equity it started live with). Both verdicts' checks make one verdict,
and ``demotion.enforce_verdict`` acts on it: a critical level demotes the model back to paper
(flattening the live account when ``demote_flatten``; a model that held both roles keeps
production), an emergency also pulls the kill switch. Every level above ``ok`` raises an
alert at that level (a lasting one at most every 6 hours).

If the demotion is recorded but the live account cannot be flattened, trading is halted, an
emergency alert says to flatten by hand (``cappuccino kill``), and ``FlattenFailed`` is
raised (not retried: the model is already out of live).

**Paper.** The production model's paper record is compared with its backtest the same way;
the levels are raised as alerts only. Paper drift does not demote anything, and does not
halt trading: an Alpaca paper account shared by successive production models starts each
one with the previous one's book, which the flat replay cannot know.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from cappuccino_core.clock import ensure_utc
from cappuccino_core.lifecycle.alerts import AlertLevel
from cappuccino_core.lifecycle.demotion import DemotionConfig, enforce_verdict
from cappuccino_core.lifecycle.drift import DriftConfig, compare_with_backtest
from cappuccino_core.operations.live import production_record
from cappuccino_core.lifecycle.limits import MonitorConfig, evaluate_limits
from cappuccino_core.operations.notify import alert_once
from cappuccino_core.operations.production import live_record, live_trader_id, production_trader_id
from cappuccino_core.operations.track_records import replay_returns
from cappuccino_core.operations.site import LifecycleSite
from cappuccino_core.lifecycle.stages import Role
from cappuccino_core.lifecycle.track_record import TrackRecord
from cappuccino_core.lifecycle.verdict import Level, MonitorVerdict, verdict
from cappuccino_core.trading.broker import Broker, BrokerError
from cappuccino_core.trading.journal import StepStatus
from cappuccino_core.risk.layers import RiskConfig

logger = logging.getLogger(__name__)

WHO = "monitor"
REPEAT_QUIET = timedelta(hours=6)  # a lasting warning is repeated at most this often


class FlattenFailed(RuntimeError):
    """The live model was demoted but its live account could not be flattened (trading is halted)."""


def backtest_drift(site: LifecycleSite, model_id: str, trader_id: str, record: TrackRecord, *, at: datetime,
                   config: DriftConfig | None = None) -> MonitorVerdict:
    """Compare the record with the model's backtest on the same marks, from a flat book with its first equity.

    The backtest trades under the owner's default risk layers, as the production and live traders do.
    """
    marks = [record.start, *record.times]
    if len(marks) < 2:
        return compare_with_backtest(np.empty(0), np.empty(0), record.interval, as_of=at, config=config)
    first = next(e for e in site.journal.entries(trader_id)
                 if e.bar_time == record.start and e.status is StepStatus.TRADED)
    assert first.equity is not None  # a traded mark has equity (journal_record checked it)
    model = site.load_model(model_id)
    panel = site.bars.at(model.interval).panel_until(marks[-1])  # the bars of the model's interval
    replayed = replay_returns(model, panel, marks, initial_cash=first.equity,
                              risk=RiskConfig())  # the risk layers both traders trade under
    return compare_with_backtest(record.returns, replayed, record.interval, as_of=at, config=config)


def monitor_live(site: LifecycleSite, *, at: datetime, limits: MonitorConfig | None = None,
                 drift: DriftConfig | None = None) -> dict[str, Any]:
    """Check the live model and enforce the verdict (module docstring); return what was found and done.

    Raises:
        FlattenFailed: demoted, but the live account could not be flattened.
    """
    at = ensure_utc(at)
    model_id = site.store.holder(Role.LIVE)
    if model_id is None:
        return {"live": None}
    record, since = live_record(site, model_id)
    if record is None:
        return {"live": model_id, "since": None if since is None else since.isoformat(), "verdict": None,
                "message": "no traded live bar yet"}
    limits = limits or MonitorConfig(catastrophic_loss=site.settings.catastrophic_loss)
    checks = evaluate_limits(record, as_of=at, config=limits).checks
    drifted = backtest_drift(site, model_id, live_trader_id(model_id), record, at=at, config=drift)
    combined = verdict(checks + drifted.checks, at)
    out: dict[str, Any] = {"live": model_id, "since": None if since is None else since.isoformat(),
                           "verdict": combined.to_dict(), "demotion": None}
    if not combined.demote:
        _alert_levels(site, "monitor:live", model_id, combined)
        return out
    broker, config = _demotion_broker(site)
    try:
        result = enforce_verdict(site.store, combined, switch=site.switch, who=WHO, broker=broker, config=config)
    except BrokerError as exc:
        if site.store.holder(Role.LIVE) == model_id:
            raise
        site.switch.halt(reason=f"{model_id} demoted but the live account could not be flattened", who=WHO, at=at)
        site.alert(AlertLevel.EMERGENCY, "monitor:live",
                   f"{model_id} was demoted but flattening the live account failed ({type(exc).__name__}); "
                   "trading is halted: flatten it with `cappuccino kill`", at=at)
        site.mirror()
        raise FlattenFailed(f"{model_id} demoted; the live account could not be flattened: {exc}") from exc
    assert result is not None  # the verdict demotes
    out["demotion"] = result.to_dict()
    site.mirror()
    level = AlertLevel.EMERGENCY if combined.stop_trading else AlertLevel.CRITICAL
    site.alert(level, "monitor:live", f"{model_id} demoted to {result.transition.to_stage}"
               + (" and trading halted" if combined.stop_trading else "") + ": " + "; ".join(combined.reasons()),
               at=at)
    return out


def monitor_paper(site: LifecycleSite, *, at: datetime, drift: DriftConfig | None = None) -> dict[str, Any]:
    """Compare the production model's paper record with its backtest; alert on every level above ok."""
    at = ensure_utc(at)
    model_id = site.store.holder(Role.PRODUCTION)
    if model_id is None:
        return {"production": None}
    record = production_record(site, model_id)
    if record is None:
        return {"production": model_id, "verdict": None, "message": "no traded paper bar yet"}
    found = backtest_drift(site, model_id, production_trader_id(model_id), record, at=at, config=drift)
    _alert_levels(site, "monitor:paper", model_id, found)
    return {"production": model_id, "verdict": found.to_dict()}


def _alert_levels(site: LifecycleSite, source: str, model_id: str, found: MonitorVerdict) -> None:
    """Alert at the verdict's level (once per quiet period per model and level: the monitor runs every bar)."""
    if found.level is Level.OK:
        return
    alert_once(site, AlertLevel.from_level(found.level), f"{source}:{model_id}",
               f"{model_id}: " + "; ".join(found.reasons()), at=found.as_of, quiet=REPEAT_QUIET)


def _demotion_broker(site: LifecycleSite) -> tuple[Broker | None, DemotionConfig]:
    """The live account to flatten on demotion, and the demotion settings."""
    if not site.settings.demote_flatten:
        return None, DemotionConfig(flatten=False)
    if not site.settings.has_live_keys:
        site.alert(AlertLevel.EMERGENCY, "monitor:live",
                   "a live model is being demoted but no live keys are configured: its positions cannot be "
                   "flattened by Cappuccino; close them at the broker")
        return None, DemotionConfig(flatten=False)
    return site.live_account(), DemotionConfig(flatten=True)
