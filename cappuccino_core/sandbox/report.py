"""How each sandbox run is doing, from its journal, through the one metrics module.

Per run: start, elapsed bar time, equity, return, alpha against the frictionless equal-weight
buy-and-hold of its symbols from its first traded bar, annualised Sharpe, maximum drawdown,
trades (filled orders), errors and risk events. The equity curve is the journal's equity at
each traded bar (the account at the close, as the backtester values a book); bars that were
skipped have no point, so a return spans the time between two traded bars.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine

from cappuccino_core.db import Base, session_factory
from cappuccino_core.evaluation.metrics import compute_performance
from cappuccino_core.trading.journal import JournalEntry, StepStatus, TradeJournal
from cappuccino_core.sandbox.runs import SandboxRun, SandboxRunRow, load_runs


def equity_curve(entries: list[JournalEntry]) -> tuple[list[datetime], np.ndarray, np.ndarray]:
    """Return the traded bars, their equity and the equal-weight buy-and-hold index (1.0 at the first).

    Raises:
        ValueError: a traded row without equity or prices (a corrupt journal).
    """
    traded = [e for e in entries if e.status is StepStatus.TRADED]
    for e in traded:
        if e.equity is None or not e.prices:
            raise ValueError(f"{e.trader_id}: traded bar {e.bar_time.isoformat()} has no equity or prices")
    if not traded:
        return [], np.empty(0), np.empty(0)
    symbols = list(traded[0].prices)
    closes = np.array([[e.prices[s] for s in symbols] for e in traded], dtype=np.float64)
    index = (closes / closes[0]).mean(axis=1)
    equity = np.array([e.equity for e in traded], dtype=np.float64)
    return [e.bar_time for e in traded], equity, index


def run_report(run: SandboxRun, journal: TradeJournal) -> dict[str, Any]:
    """Return one run's figures as a JSON-ready dict (``None`` where a number is undefined)."""
    entries = journal.entries(run.trader_id)
    bars, equity, index = equity_curve(entries)
    returns = equity[1:] / equity[:-1] - 1.0 if equity.size else np.empty(0)
    bench = index[1:] / index[:-1] - 1.0 if index.size else np.empty(0)
    perf = compute_performance(returns, bench, run.interval)
    last_bar = entries[-1].bar_time if entries else None
    elapsed = 0.0
    if last_bar is not None:
        covered = min(last_bar + run.interval.timedelta, run.ended_at or run.ends_at) - run.started_at
        elapsed = max(covered.total_seconds(), 0.0)
    filled = sum(1 for e in entries for f in e.fills if f["status"] == "filled")
    last_equity = float(equity[-1]) if equity.size else None
    return {
        "trader_id": run.trader_id,
        "model": run.model_ref,
        "state": "ended" if run.ended_at is not None else "active",
        "started_at": run.started_at.isoformat(),
        "ends_at": run.ends_at.isoformat(),
        "elapsed_seconds": elapsed,
        "last_bar": None if last_bar is None else last_bar.isoformat(),
        "bars": len(entries),
        "traded_bars": len(bars),
        "statuses": journal.status_counts(run.trader_id),
        "initial_cash": run.initial_cash,
        "equity": last_equity,
        "return": None if last_equity is None else last_equity / run.initial_cash - 1.0,
        "benchmark_return": perf.benchmark_total_return,
        "alpha": perf.alpha,
        "sharpe": perf.sharpe,
        "max_drawdown": perf.max_drawdown,
        "trades": filled,
        "orders": sum(len(e.orders) for e in entries),
        "risk_events": sum(len(e.risk_events) for e in entries),
        "errors": sum(len(e.errors) for e in entries),
    }


def sandbox_status(engine: Engine) -> dict[str, Any]:
    """Return every sandbox run's report: ``{"runs": [...]}`` (what ``cappuccino sandbox status`` prints)."""
    journal = TradeJournal(engine)
    Base.metadata.create_all(engine, tables=[SandboxRunRow.__table__])
    runs = load_runs(session_factory(engine))
    return {"runs": [run_report(run, journal) for run in runs]}
