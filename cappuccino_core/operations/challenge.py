"""Sandbox → production: a sandbox model that finished its period meets the production model head-to-head.

**The match.** Both models are judged on the same bars: the marks of the sandbox run's
journal (each traded bar of its period). The sandbox model's returns are its journal's, what
it really did on its virtual account. The production model is *replayed* by the backtester
over exactly those bars, from a flat book with the sandbox run's starting cash and risk
layers (``records.replay_returns``) — the account it would have had in that sandbox run. Its
own paper journal is not used: it may trade the Alpaca paper account (other fills), may
have become production in the middle of the period, and starts the period with a book.
The backtester fills like the sandbox's ``SimBroker`` (``tests.trading.parity`` checks it), so
both sides trade under the same rules on the same prices.

**The rule** is the arena's: the score is ``scoring.excess_sharpe`` (annualised Sharpe ratio
of the per-bar returns in excess of the equal-weight buy and hold of the same bars); the
sandbox model takes production only if its score is higher; a tie (scores within
``TIE_TOLERANCE``) keeps the incumbent; an undefined score ranks lowest. The winner holds
production, the loser is retired (a replaced production model is retired by the same
transaction; one that is also live keeps live).

**No production model.** Among the runs being decided, those with a *positive alpha* over
their own period (total return minus the equal-weight buy and hold's on the same bars,
``metrics.alpha``) qualify; the qualifying one with the best score becomes production (ties:
the run that ended first). The others then meet it head-to-head; if none qualifies, all
are retired and production stays empty.

Runs are decided once: when their period is over and their model is still in stage
``sandbox``. A run whose model never entered the lifecycle is reported, not decided
(``sandbox_entry.enter_sandbox`` is how a model enters the sandbox).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from cappuccino_core.clock import ensure_utc
from cappuccino_core.evaluation.metrics import alpha
from cappuccino_core.evaluation.scoring import excess_sharpe
from cappuccino_core.lifecycle.alerts import AlertLevel
from cappuccino_core.operations.track_records import journal_record, replay_returns
from cappuccino_core.operations.site import LifecycleSite
from cappuccino_core.lifecycle.stages import Role, Stage
from cappuccino_core.lifecycle.track_record import TrackRecord
from cappuccino_core.sandbox.runner import Sandbox, SandboxRun

logger = logging.getLogger(__name__)

WHO = "flow:promotion"
TIE_TOLERANCE = 1e-9
"""Scores this close (relative, at least absolute) are a tie: a journal and a replay of the same
policy on the same bars agree only to float rounding (``tests.trading.parity``)."""


@dataclass(frozen=True)
class _Leg:
    """Per-bar returns and the benchmark's on the same bars (what ``excess_sharpe`` reads)."""

    returns: np.ndarray
    benchmark_returns: np.ndarray


@dataclass(frozen=True)
class RunResult:
    """A sandbox run's own record over its period: score, alpha and size."""

    trader_id: str
    model_id: str
    bars: int
    score: float | None
    alpha: float | None
    errors: int

    @property
    def qualifies(self) -> bool:
        """True when its alpha against the equal-weight buy and hold is positive."""
        return self.alpha is not None and self.alpha > 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-ready dict."""
        return {"trader_id": self.trader_id, "model_id": self.model_id, "bars": self.bars, "score": self.score,
                "alpha": self.alpha, "errors": self.errors, "qualifies": self.qualifies}


@dataclass(frozen=True)
class HeadToHead:
    """One sandbox model against the production model on the same bars."""

    contender: str
    incumbent: str
    start: datetime
    end: datetime
    bars: int
    contender_score: float | None
    incumbent_score: float | None
    contender_alpha: float | None
    incumbent_alpha: float | None

    @property
    def contender_wins(self) -> bool:
        """The contender's score is higher beyond ``TIE_TOLERANCE`` (a tie or an undefined contender keeps the incumbent)."""
        if self.contender_score is None:
            return False
        if self.incumbent_score is None:
            return True
        margin = TIE_TOLERANCE * max(1.0, abs(self.incumbent_score))
        return self.contender_score > self.incumbent_score + margin

    @property
    def winner(self) -> str:
        """The model that holds production after the match."""
        return self.contender if self.contender_wins else self.incumbent

    def to_dict(self) -> dict[str, Any]:
        """Return the match as a JSON-ready dict (the figures recorded with the transition)."""
        return {"rule": "excess_sharpe, higher wins, a tie keeps the incumbent", "contender": self.contender,
                "incumbent": self.incumbent, "start": self.start.isoformat(), "end": self.end.isoformat(),
                "bars": self.bars, "contender_score": self.contender_score, "incumbent_score": self.incumbent_score,
                "contender_alpha": self.contender_alpha, "incumbent_alpha": self.incumbent_alpha,
                "winner": self.winner}


@dataclass
class PromotionReport:
    """What one promotion pass decided."""

    at: datetime
    promoted: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    matches: list[dict[str, Any]] = field(default_factory=list)
    first_production: dict[str, Any] | None = None
    not_in_lifecycle: list[str] = field(default_factory=list)
    production: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {"at": self.at.isoformat(), "promoted": self.promoted, "retired": self.retired,
                "matches": self.matches, "first_production": self.first_production,
                "not_in_lifecycle": self.not_in_lifecycle, "production": self.production}


def run_record(site: LifecycleSite, run: SandboxRun) -> TrackRecord | None:
    """Return the run's record over its period (``None`` before its first traded bar)."""
    end = run.ended_at or run.ends_at
    entries = [e for e in site.journal.entries(run.trader_id) if e.bar_time < end]
    return journal_record(entries, run.interval)


def run_result(site: LifecycleSite, run: SandboxRun) -> RunResult:
    """Return the run's own score and alpha over its period."""
    record = run_record(site, run)
    if record is None or record.returns.size == 0:
        return RunResult(run.trader_id, run.model_ref, 0, None, None, 0 if record is None else len(record.error_times))
    leg = _Leg(record.returns, record.benchmark_returns)
    return RunResult(run.trader_id, run.model_ref, int(record.returns.size), excess_sharpe([leg], run.interval),
                     alpha(record.returns, record.benchmark_returns), len(record.error_times))


def head_to_head(site: LifecycleSite, run: SandboxRun, incumbent_id: str) -> HeadToHead:
    """Play the sandbox run's model against ``incumbent_id`` on the run's bars (see the module docstring).

    Raises:
        ValueError: the production model cannot trade these bars (other symbols, interval or
            features, or the period spans a gap).
    """
    record = run_record(site, run)
    if record is None or record.returns.size == 0:
        start = run.started_at if record is None else record.start
        return HeadToHead(run.model_ref, incumbent_id, start, start, 0, None, None, None, None)
    marks = [record.start, *record.times]
    panel = site.bars.at(run.interval).panel_until(marks[-1])  # the bars the run traded
    incumbent = site.load_model(incumbent_id)
    replayed = replay_returns(incumbent, panel, marks, initial_cash=run.initial_cash, risk=run.risk)
    bench = record.benchmark_returns
    return HeadToHead(
        contender=run.model_ref, incumbent=incumbent_id, start=record.start, end=record.end,
        bars=int(record.returns.size),
        contender_score=excess_sharpe([_Leg(record.returns, bench)], run.interval),
        incumbent_score=excess_sharpe([_Leg(replayed, bench)], run.interval),
        contender_alpha=alpha(record.returns, bench), incumbent_alpha=alpha(replayed, bench),
    )


def decidable_runs(site: LifecycleSite, sandbox: Sandbox, at: datetime) -> tuple[list[SandboxRun], list[str]]:
    """End the runs that are due at ``at``; return the ended runs whose model is still in the sandbox
    (in the order they ended) and the ids of ended runs whose model is not in the lifecycle."""
    sandbox.end_due(at)
    ended = sorted((r for r in sandbox.runs() if r.ended_at is not None), key=lambda r: (r.ended_at, r.trader_id))
    decide, unknown = [], []
    for run in ended:
        stage = site.store.stage_of(run.model_ref)
        if stage is Stage.SANDBOX:
            decide.append(run)
        elif stage is None:
            unknown.append(run.trader_id)
    return decide, unknown


def promote_finished_runs(site: LifecycleSite, sandbox: Sandbox, *, at: datetime, who: str = WHO) -> PromotionReport:
    """Decide every sandbox run whose period is over (see the module docstring); mirror and alert.

    Raises:
        ValueError: the production model cannot be replayed on a run's bars (nothing is
            decided for that run or the ones after it).
        TransitionRefused: the lifecycle changed concurrently (runs decided before stay decided).
    """
    at = ensure_utc(at)
    report = PromotionReport(at)
    runs, report.not_in_lifecycle = decidable_runs(site, sandbox, at)
    for trader_id in report.not_in_lifecycle:
        logger.warning("sandbox run %s: its model never entered the lifecycle; not decided", trader_id)
    if runs and site.store.holder(Role.PRODUCTION) is None:
        runs = _fill_empty_production(site, runs, report, at, who)
    for run in runs:
        incumbent = site.store.holder(Role.PRODUCTION)
        assert incumbent is not None  # filled above, and a promotion never empties it
        match = head_to_head(site, run, incumbent)
        report.matches.append(match.to_dict())
        figures = {"head_to_head": match.to_dict(), "sandbox_run": run.trader_id}
        if match.contender_wins:
            why = (f"beat production model {incumbent} on its sandbox bars: excess Sharpe "
                   f"{_fmt(match.contender_score)} vs {_fmt(match.incumbent_score)} over {match.bars} bars")
            site.store.move(run.model_ref, Stage.PRODUCTION, who=who, why=why, at=at, figures=figures)
            report.promoted.append(run.model_ref)
            site.alert(AlertLevel.INFO, "promotion", f"{run.model_ref} is the production model: {why}", at=at)
        else:
            why = (f"did not beat production model {incumbent} on its sandbox bars: excess Sharpe "
                   f"{_fmt(match.contender_score)} vs {_fmt(match.incumbent_score)} over {match.bars} bars "
                   "(a tie keeps the incumbent)")
            site.store.move(run.model_ref, Stage.RETIRED, who=who, why=why, at=at, figures=figures)
            report.retired.append(run.model_ref)
            site.alert(AlertLevel.INFO, "promotion", f"{run.model_ref} retired: {why}", at=at)
    report.production = site.store.holder(Role.PRODUCTION)
    if report.promoted or report.retired:
        site.mirror()
    return report


def _fill_empty_production(site: LifecycleSite, runs: list[SandboxRun], report: PromotionReport, at: datetime,
                           who: str) -> list[SandboxRun]:
    """Make the best qualifying run's model production (or retire every run); return the runs left to play."""
    results = [run_result(site, run) for run in runs]
    qualifying = [(r, run) for r, run in zip(results, runs, strict=True) if r.qualifies]
    figures = {"rule": "no production model: the qualifying run (alpha > 0) with the best excess Sharpe",
               "candidates": [r.to_dict() for r in results]}
    report.first_production = figures
    if not qualifying:
        for result in results:
            why = (f"no production model to meet and alpha {_fmt(result.alpha)} over {result.bars} bars "
                   "is not positive: does not qualify")
            site.store.move(result.model_id, Stage.RETIRED, who=who, why=why, at=at, figures=figures)
            report.retired.append(result.model_id)
            site.alert(AlertLevel.INFO, "promotion", f"{result.model_id} retired: {why}", at=at)
        return []
    best, best_run = qualifying[0]
    for result, run in qualifying[1:]:
        if result.score is not None and (best.score is None or result.score > best.score):
            best, best_run = result, run
    why = (f"no production model: best qualifying sandbox model (alpha {_fmt(best.alpha)}, excess Sharpe "
           f"{_fmt(best.score)} over {best.bars} bars)")
    site.store.move(best.model_id, Stage.PRODUCTION, who=who, why=why, at=at, figures=figures)
    report.promoted.append(best.model_id)
    site.alert(AlertLevel.INFO, "promotion", f"{best.model_id} is the production model: {why}", at=at)
    return [run for run in runs if run is not best_run]


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4g}"
