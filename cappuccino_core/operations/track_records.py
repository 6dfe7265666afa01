"""Track records from trade journals, and the backtester's returns on the same marks.

``journal_record`` turns one trader's journal into the ``TrackRecord`` the gates and monitors
judge: its marks are the traded bars (the account's equity at each bar's close, as the
journal records it), the benchmark is the equal-weight buy-and-hold index of the same bars
(``sandbox_report.equity_curve``), and the errors are the bars whose step failed
(status ``error``). Bars skipped for stale data or a halt leave no mark and are not errors;
the health flow watches for those.

Capital added to an account between two marks (the live capital ramp) is not a return:
``injections`` maps the bar at which money was added to the amount, and the return across
it is ``(equity - added) / previous equity - 1`` (a time-weighted return).

``replay_returns`` backtests a model over the bars between the first and the last of some
marks and returns its per-span returns on exactly those marks, so two records compare bar
for bar (promotion's head-to-head, drift against the backtest).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from cappuccino_core.clock import ensure_utc
from cappuccino_core.data.intervals import Interval
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.lifecycle.track_record import TrackRecord
from cappuccino_core.trading.bars_provider import bar_time_ns
from cappuccino_core.trading.journal import JournalEntry, StepStatus
from cappuccino_core.risk.config import RiskConfig
from cappuccino_core.sandbox.report import equity_curve

if TYPE_CHECKING:  # records are read without models (torch); a replay imports the backtester
    from cappuccino_core.trading.model import TradingModel


def error_times(entries: Sequence[JournalEntry]) -> tuple[datetime, ...]:
    """Return the bars whose step failed (journal status ``error``)."""
    return tuple(e.bar_time for e in entries if e.status is StepStatus.ERROR)


def journal_record(
    entries: Sequence[JournalEntry],
    interval: Interval,
    *,
    since: datetime | None = None,
    injections: Mapping[datetime, float] | None = None,
) -> TrackRecord | None:
    """Return the trader's track record from its journal (``None`` before its first traded bar).

    Args:
        entries: the trader's journal rows, oldest first.
        interval: the bar interval (annualises Sharpe ratios).
        since: only rows at or after this bar count (e.g. since the model went live).
        injections: capital added to the account, by the bar it was added at (before that
            bar's equity was read); removed from the return across it.

    Raises:
        ValueError: a traded row without equity or prices, or an equity that is not a positive number.
    """
    rows = [e for e in entries if since is None or e.bar_time >= ensure_utc(since)]
    times, equity, index = equity_curve(list(rows))
    if not times:
        return None
    errors = error_times(rows)
    if not injections:
        return TrackRecord.from_equity(times, equity, index, interval, errors)
    bad = np.flatnonzero(~np.isfinite(equity) | (equity <= 0))
    if bad.size:
        raise ValueError(f"equity at {times[bad[0]].isoformat()} is {equity[bad[0]]}; marks must be finite and > 0")
    added = np.zeros(len(times))
    for moment, amount in injections.items():
        moment = ensure_utc(moment)
        for i in range(1, len(times)):
            if times[i - 1] < moment <= times[i]:
                added[i] += amount
    returns = (equity[1:] - added[1:]) / equity[:-1] - 1.0
    return TrackRecord(times[0], tuple(times[1:]), returns, index[1:] / index[:-1] - 1.0, interval, errors)


def replay_returns(
    model: TradingModel,
    panel: MarketPanel,
    marks: Sequence[datetime],
    *,
    initial_cash: float,
    risk: RiskConfig | None = None,
) -> np.ndarray:
    """Backtest ``model`` from a flat book at ``marks[0]`` to ``marks[-1]``; return its returns between the marks.

    The backtester trades every bar in between (as a trader that never skipped one would);
    the equity is read at the marks, so the returns span the same bars as a journal record
    with these marks.

    Args:
        model: the model (its costs, lookback and normaliser).
        panel: bars covering the marks and the lookback before the first one.
        marks: bar times, strictly increasing, at least two.
        initial_cash: the starting cash of the replayed account.
        risk: risk layers to trade under (default: the model's own).

    Raises:
        ValueError: fewer than two marks, a mark not in the panel, bars that do not fit the
            model, or marks that span a gap in the bars.
    """
    if len(marks) < 2:
        raise ValueError(f"a replay needs at least two marks, got {len(marks)}")
    model.check_panel(panel)
    rows = np.array([_row(panel, t) for t in marks])
    if np.any(np.diff(rows) <= 0):
        raise ValueError("replay marks must be strictly increasing")
    traded = model if risk is None else model.with_risk(risk)
    config = replace(traded.env_config, initial_cash=initial_cash, start_invested=False)  # an account starts in cash
    from cappuccino_core.evaluation.backtest import backtest

    report = backtest(traded.policy, panel, traded.normalizer, config, start_row=int(rows[0]),
                      bars=int(rows[-1] - rows[0]))
    equity = report.equity[rows - rows[0]]
    return equity[1:] / equity[:-1] - 1.0


def _row(panel: MarketPanel, moment: datetime) -> int:
    ns = bar_time_ns(moment)
    row = int(np.searchsorted(panel.timestamps, ns))
    if row >= panel.num_bars or int(panel.timestamps[row]) != ns:
        raise ValueError(f"bar {ensure_utc(moment).isoformat()} is not in the bars to replay")
    return row


def bar_times(panel: MarketPanel) -> list[datetime]:
    """Return the panel's bar open times as UTC datetimes."""
    return [datetime.fromtimestamp(int(ns) // 1_000_000_000, tz=UTC) for ns in panel.timestamps]
