"""A registered model backtested on the stored bars of a chosen window, beside the baselines.

The model is loaded through ``registry.loader.load_policy`` and trades bars of its own interval,
symbols and feature spec, built by its study's own path (``search.market.study_panel``'s
``panel_from_store`` from the study's first bar, so every feature equals the one the arena and
training computed for that bar). It trades through the one backtester under the arena's
conditions: ``EnvConfig()``'s fees, slippage, minimum order, cash and risk layers put into the
model's trained config by ``arena.market.trading_env``, as ``arena.service.ArenaSite.markets``
does. The baselines trade the same bars with the same costs and the risk layers off, as in
the arena (``arena.market.baseline_env``).

Window ``[start, end)``: the first bar opening at or after ``start`` is the decision bar (the
model sees its close and the ``lookback - 1`` bars before it); every following bar opening
before ``end`` is one step. The window must lie in the stored bars and not span a gap.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cappuccino_core.arena.market import baseline_env, trading_env
from cappuccino_core.config import Settings
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.store import BarStore, NotStoredError
from cappuccino_core.accounting import ExecutionCosts
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.evaluation.backtest import EXIT_RULES, POLICY_EXIT, END_EXIT, EvalReport, Trade, backtest
from cappuccino_core.evaluation.baselines import default_baselines
from cappuccino_core.features.market import panel_from_store
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.features.spec import FeatureSpec
from cappuccino_core.registry.loader import LoadedPolicy, load_policy
from cappuccino_core.search.location import StudyError, StudyLocation, stored_spec

KING = "king"
"""The shorthand for the arena's king: ``models:/<model name>@king``."""

MIN_STEPS = 2
"""Fewest steps a backtest reports (a Sharpe ratio needs two returns)."""

METRIC_KEYS = ("total_return", "annualised_return", "sharpe", "sortino", "max_drawdown", "alpha",
               "benchmark_total_return", "trade_count", "win_rate_trades", "exposure", "annualised_turnover")
"""The figures shown of each ``PerformanceReport`` (the model's and every baseline's)."""

TRADE_COLUMNS = ("symbol", "side", "entry_time", "exit_time", "bars_held", "entry_notional", "pnl", "pnl_fraction",
                 "fees", "exit_reason", "closed")
"""Columns of the exported trades CSV (times ISO-8601 UTC; money in quote currency)."""


class BacktestRefused(ValueError):
    """The model or the window cannot be backtested; the message says why in one line."""


@dataclass(frozen=True, eq=False)
class ModelBacktest:
    """A model's backtest on one window and the baselines' on the same bars.

    Attributes:
        model: the model as given (``king`` expanded to its alias URI).
        loaded: the loaded policy (version, study, card).
        panel: the bars traded (and the history before them).
        env_config: the config the model traded under.
        report: the model's backtest.
        baselines: each baseline's backtest on the same window.
    """

    model: str
    loaded: LoadedPolicy
    panel: MarketPanel
    env_config: EnvConfig
    report: EvalReport
    baselines: tuple[EvalReport, ...]

    @property
    def start(self) -> datetime:
        """The decision bar's open time."""
        return _utc(int(self.report.timestamps[0]))

    @property
    def end(self) -> datetime:
        """The end of the last bar traded (exclusive)."""
        return _utc(int(self.report.timestamps[-1])) + self.panel.interval.timedelta

    def to_dict(self) -> dict[str, Any]:
        """Everything shown, as JSON-serialisable values."""
        env, risk = self.env_config, self.env_config.effective_risk
        return {
            "model": self.model, "version": self.loaded.model_version, "study": self.loaded.study,
            "interval": str(self.panel.interval), "lookback": env.lookback, "symbols": list(self.panel.symbols),
            "start": self.start.isoformat(), "end": self.end.isoformat(), "steps": len(self.report.returns),
            "conditions": {"initial_cash": env.initial_cash, "fee_rate": env.fee_rate, "slippage_bps": env.slippage_bps,
                           "start_invested": env.start_invested, "risk": risk.to_dict()},
            "metrics": _figures(self.report),
            "pairs": pair_summary(self.report.trades, self.panel.symbols, env.initial_cash),
            "exit_reasons": exit_summary(self.report.trades),
            "risk_triggers": dict(self.report.risk_counts),
            "trades": [trade_row(t, self.panel.interval) for t in self.report.trades],
            "baselines": [{"name": b.policy, "metrics": _figures(b)} for b in self.baselines],
        }


def model_uri(model: str, model_name: str) -> str:
    """Return the URI ``model`` names (``king`` is the arena king's alias of ``model_name``)."""
    return f"models:/{model_name}@{KING}" if model == KING else model


def backtest_model(settings: Settings, model: str, start: datetime, end: datetime) -> ModelBacktest:
    """Backtest ``model`` (a model URI, or ``king``) on the stored bars of ``[start, end)``.

    Raises:
        BacktestRefused: the model is unknown or cannot be loaded, it has no stored study, or
            the window is empty, outside the stored bars, spans a gap or holds too few bars.
    """
    if end <= start:
        raise BacktestRefused(f"the window is empty: --end {end.isoformat()} is not after --start {start.isoformat()}")
    loc = StudyLocation.from_settings(settings)
    uri = model_uri(model, settings.model_name)
    loaded = _load(uri, loc.tracking_uri)
    card = loaded.card
    spec = stored_spec(loc, loaded.study) if loaded.study else None
    if spec is None:
        raise BacktestRefused(f"{uri}: its study {loaded.study!r} is not in {loc.storage_url}: "
                              "which stored bars it was built from is unknown")
    interval = Interval(card.interval)
    first = spec.split.search_start if start >= spec.split.search_start else None
    try:
        panel = panel_from_store(BarStore(settings.bars_dir), tuple(card.symbols), interval=interval,
                                 base_interval=spec.base_interval, spec=FeatureSpec.from_dict(card.feature_spec),
                                 max_gap_bars=spec.max_gap_bars, start=first, end=end)
    except (NotStoredError, ValueError) as exc:
        raise BacktestRefused(f"{uri}: {exc}") from None
    row, steps = _window(panel, start, end, card.lookback)
    env = trading_env(EnvConfig(), loaded.env_config)  # the arena's conditions (ArenaSite.markets)
    policy_panel_check(loaded, panel)
    report = backtest(loaded.policy, panel, loaded.normalizer, env, start_row=row, bars=steps)
    costs = ExecutionCosts(env.fee_rate, env.slippage_bps, env.min_order_notional, env.min_cash_reserve)
    identity = FeatureNormalizer.identity(panel.num_assets, panel.features.shape[2])
    baselines = tuple(backtest(b, panel, identity, baseline_env(env), start_row=row, bars=steps)
                      for b in default_baselines(costs, panel.symbols))
    return ModelBacktest(uri, loaded, panel, env, report, baselines)


def policy_panel_check(loaded: LoadedPolicy, panel: MarketPanel) -> None:
    """Refuse a panel whose features, symbols or interval differ from the model card (as ``load_trained_policy``)."""
    from cappuccino_core.agents.checkpoint import ModelMismatchError, check_compatible

    try:
        check_compatible(loaded.card, feature_spec=panel.feature_spec, symbols=panel.symbols, interval=str(panel.interval))
    except ModelMismatchError as exc:
        raise BacktestRefused(f"{loaded.uri}: {exc}") from None


def _load(uri: str, tracking_uri: str) -> LoadedPolicy:
    from cappuccino_core.agents.checkpoint import CheckpointError
    from cappuccino_core.registry.loader import ModelNotFoundError

    try:
        return load_policy(uri, None, tracking_uri=tracking_uri)
    except (ModelNotFoundError, CheckpointError, StudyError) as exc:
        raise BacktestRefused(str(exc).splitlines()[0]) from None


def _window(panel: MarketPanel, start: datetime, end: datetime, lookback: int) -> tuple[int, int]:
    """``(decision row, steps)`` of ``[start, end)`` in ``panel``; refuse what does not fit."""
    if panel.num_bars == 0:
        raise BacktestRefused(f"no {panel.interval} bars stored before {end.isoformat()}")
    times = panel.timestamps
    first_bar, last_bar = _utc(int(times[0])), _utc(int(times[-1]))
    row = int(np.searchsorted(times, _ns(start)))
    stop = int(np.searchsorted(times, _ns(end)))  # rows [row, stop) open inside the window
    stored = f"stored {panel.interval} bars with features run {first_bar:%Y-%m-%d %H:%M} .. {last_bar:%Y-%m-%d %H:%M} UTC"
    if end > last_bar + panel.interval.timedelta:
        raise BacktestRefused(f"the window ends at {end.isoformat()}, after the stored bars: {stored}")
    if row >= panel.num_bars or stop <= row:
        raise BacktestRefused(f"the window {start.isoformat()} .. {end.isoformat()} holds no bar: {stored}")
    if row < lookback - 1:
        raise BacktestRefused(f"the model observes {lookback} bars, so its first decision bar is "
                              f"{_utc(int(times[lookback - 1])).isoformat()} or later: {stored}")
    steps = stop - 1 - row
    if steps < MIN_STEPS:
        raise BacktestRefused(f"too few bars: the window holds {steps + 1} {panel.interval} bar(s), "
                              f"at least {MIN_STEPS + 1} are needed")
    segments = panel.segment[row - lookback + 1 : stop]
    if segments[0] != segments[-1]:
        gap = row - lookback + 1 + int(np.flatnonzero(np.diff(segments))[0])
        raise BacktestRefused(f"the window spans a gap in the stored bars after {_utc(int(times[gap])).isoformat()}: "
                              "choose a window on one side of it")
    return row, steps


def pair_summary(trades: Iterable[Trade], symbols: Iterable[str], initial_cash: float) -> list[dict[str, Any]]:
    """Per pair: trades, closed wins, P&L (quote currency and fraction of the starting cash), the closed win rate."""
    out = []
    for symbol in symbols:
        own = [t for t in trades if t.symbol == symbol]
        closed = [t for t in own if t.closed]
        pnl = float(sum(t.pnl for t in own))
        out.append({"symbol": symbol, "trades": len(own), "closed": len(closed),
                    "wins": sum(1 for t in closed if t.pnl > 0), "pnl": pnl, "pnl_fraction": pnl / initial_cash,
                    "win_rate": None if not closed else sum(1 for t in closed if t.pnl > 0) / len(closed)})
    return out


def exit_summary(trades: Iterable[Trade]) -> list[dict[str, Any]]:
    """Per exit reason (the policy, each risk rule, still open at the end): trades, wins, P&L; reasons never seen omitted."""
    trades = list(trades)
    out = []
    for reason in (POLICY_EXIT, *(str(r) for r in EXIT_RULES), END_EXIT):
        own = [t for t in trades if t.exit_reason == reason]
        if own:
            out.append({"reason": reason, "risk_layer": reason not in (POLICY_EXIT, END_EXIT), "trades": len(own),
                        "wins": sum(1 for t in own if t.pnl > 0), "pnl": float(sum(t.pnl for t in own))})
    return out


def trade_row(trade: Trade, interval: Interval) -> dict[str, Any]:
    """One trade as a row of ``TRADE_COLUMNS``."""
    return {"symbol": trade.symbol, "side": "long" if trade.side > 0 else "short",
            "entry_time": _utc(trade.entry_ns).isoformat(), "exit_time": _utc(trade.exit_ns).isoformat(),
            "bars_held": (trade.exit_ns - trade.entry_ns) // (interval.seconds * 1_000_000_000),
            "entry_notional": trade.entry_notional, "pnl": trade.pnl, "pnl_fraction": trade.pnl_fraction,
            "fees": trade.fees, "exit_reason": trade.exit_reason, "closed": trade.closed}


def write_trades_csv(result: ModelBacktest, path: Path) -> int:
    """Write the model's trades to ``path`` as CSV (``TRADE_COLUMNS``); return how many rows."""
    rows = [trade_row(t, result.panel.interval) for t in result.report.trades]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TRADE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def _figures(report: EvalReport) -> dict[str, Any]:
    metrics = report.metrics.to_dict()
    return {k: metrics.get(k) for k in METRIC_KEYS}


def _ns(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000


def _utc(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC)
