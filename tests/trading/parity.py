"""Parity: replay the backtester over the bars a trader traded and report where they differ.

The backtester runs the training environment from the trader's first traded bar with the
trader's model, environment config (costs, risk layers, initial cash) and the same panel
rows. Both should take the same actions and follow the same equity curve: the env fills at
the next bar's open exactly as the ``SimBroker`` does. Known sources of divergence, all
reported rather than hidden: a bar the trader skipped (stale data, halt), buys cut because a
broker does not lend against unfilled sells (a journal note), features of a live panel built
from a shorter history than the backtest panel, and float rounding of the ledger (~1e-12).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from cappuccino_core.evaluation.backtest import backtest
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.trading.bars_provider import bar_time_ns
from cappuccino_core.trading.journal import JournalEntry, StepStatus
from cappuccino_core.trading.model import TradingModel


@dataclass(frozen=True)
class ParityReport:
    """How a trader's journal compares with the backtester over the same bars.

    Attributes:
        trader_id: the trader.
        bars: decisions compared.
        max_abs_action_diff: largest difference of a policy action (any bar, any asset).
        max_abs_executed_diff: largest difference of an action after the risk layers.
        max_rel_equity_diff: largest ``|journal / backtest - 1|`` of equity relative to the start.
        first_divergent_bar: the first bar beyond a tolerance, or not traded; None if none.
        reason: why that bar diverges.
        action_tolerance, equity_tolerance: the tolerances applied.
    """

    trader_id: str
    bars: int
    max_abs_action_diff: float
    max_abs_executed_diff: float
    max_rel_equity_diff: float
    first_divergent_bar: datetime | None
    reason: str | None
    action_tolerance: float
    equity_tolerance: float

    @property
    def within_tolerance(self) -> bool:
        """True when no bar diverged."""
        return self.first_divergent_bar is None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "trader_id": self.trader_id, "bars": self.bars, "max_abs_action_diff": self.max_abs_action_diff,
            "max_abs_executed_diff": self.max_abs_executed_diff, "max_rel_equity_diff": self.max_rel_equity_diff,
            "first_divergent_bar": None if self.first_divergent_bar is None else self.first_divergent_bar.isoformat(),
            "reason": self.reason, "within_tolerance": self.within_tolerance,
            "action_tolerance": self.action_tolerance, "equity_tolerance": self.equity_tolerance,
        }


def replay_parity(
    entries: list[JournalEntry],
    model: TradingModel,
    panel: MarketPanel,
    *,
    action_tolerance: float = 1e-4,
    equity_tolerance: float = 1e-4,
) -> ParityReport:
    """Backtest ``model`` over the bars of ``entries`` (one trader's journal) and compare.

    Args:
        entries: the trader's journal rows (``TradeJournal.entries``), oldest first.
        model: the model as the trader traded it (``model.env_config`` with its risk layers
            and the account's initial cash).
        panel: bars covering the traded period and the lookback before it.
        action_tolerance: largest action difference that is not a divergence.
        equity_tolerance: largest relative equity difference that is not a divergence.

    Raises:
        ValueError: no traded bar, a traded bar missing from ``panel``, or fewer than two bars to replay.
    """
    traded = [e for e in entries if e.status is StepStatus.TRADED]
    if not traded:
        raise ValueError("the journal has no traded bar to replay")
    trader_id = traded[0].trader_id
    by_time = {bar_time_ns(e.bar_time): e for e in entries}
    start = _row(panel, traded[0].bar_time)
    last = _row(panel, traded[-1].bar_time)
    horizon = min(last + 1, panel.num_bars - 1) - start
    if horizon < 1:
        raise ValueError(f"{trader_id}: need a bar after {traded[0].bar_time.isoformat()} in the panel to replay")
    # A trader's account starts in cash, whatever book the model's evaluation windows start from.
    in_cash = replace(model.env_config, start_invested=False)
    report = backtest(model.policy, panel, model.normalizer, in_cash, start_row=start, bars=horizon)
    executed = report.executed_actions if report.executed_actions is not None else report.actions
    base = traded[0].equity
    action_diff = executed_diff = equity_diff = 0.0
    divergent: tuple[datetime, str] | None = None
    compared = 0
    for step in range(min(horizon, last - start) + 1):
        entry = by_time.get(int(panel.timestamps[start + step]))
        if entry is None or entry.status is not StepStatus.TRADED:
            if divergent is None:
                status = "no journal row" if entry is None else entry.status.value
                divergent = (_utc(panel, start + step), f"not traded ({status})")
            continue
        problems = []
        rel = abs(float((entry.equity / base) / report.equity[step]) - 1.0)
        equity_diff = max(equity_diff, rel)
        if rel > equity_tolerance:
            problems.append(f"equity differs by {rel:.3g} (relative)")
        if step < horizon:
            compared += 1
            diff = float(np.max(np.abs(np.asarray(entry.policy_actions) - report.actions[step])))
            done = float(np.max(np.abs(np.asarray(entry.executed_actions) - executed[step])))
            action_diff, executed_diff = max(action_diff, diff), max(executed_diff, done)
            if diff > action_tolerance or done > action_tolerance:
                problems.append(f"actions differ by {max(diff, done):.3g}")
        if problems and divergent is None:
            divergent = (entry.bar_time, "; ".join(problems))
    return ParityReport(
        trader_id=trader_id, bars=compared, max_abs_action_diff=action_diff, max_abs_executed_diff=executed_diff,
        max_rel_equity_diff=equity_diff, first_divergent_bar=None if divergent is None else divergent[0],
        reason=None if divergent is None else divergent[1], action_tolerance=action_tolerance,
        equity_tolerance=equity_tolerance,
    )


def _row(panel: MarketPanel, bar_time: datetime) -> int:
    ns = bar_time_ns(bar_time)
    row = int(np.searchsorted(panel.timestamps, ns))
    if row >= panel.num_bars or int(panel.timestamps[row]) != ns:
        raise ValueError(f"bar {bar_time.isoformat()} is not in the panel")
    return row


def _utc(panel: MarketPanel, row: int) -> datetime:
    return datetime.fromtimestamp(int(panel.timestamps[row]) // 1_000_000_000, tz=UTC)
