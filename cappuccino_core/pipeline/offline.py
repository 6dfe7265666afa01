"""The pipeline's offline lifecycle: a training study's replay period, its sandbox results and baselines.

``open_study_replay`` opens the replay of the bars after a training study's arena holdout (the
study's own hash-checked panel, so features match training exactly). ``run_results`` reads
each sandbox or production trader's journal through the one metrics module and sets the
baselines beside it: the default rule-based baselines backtested on the same bars, with the
same costs and cash, as the arena does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from cappuccino_core.arena.market import baseline_env
from cappuccino_core.config import Settings
from cappuccino_core.data.store import BarStore
from cappuccino_core.accounting import ExecutionCosts
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.evaluation.backtest import backtest
from cappuccino_core.evaluation.baselines import default_baselines
from cappuccino_core.evaluation.metrics import compute_performance
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.pipeline.replay import ReplayPlan, plan_replay
from cappuccino_core.search import runner
from cappuccino_core.search.market import study_panel
from cappuccino_core.trading.bars_provider import bar_time_ns
from cappuccino_core.trading.clock import ReplayBarClock
from cappuccino_core.sandbox.report import equity_curve


def open_study_replay(settings: Settings, study: str) -> ReplayPlan:
    """Open the replay of training study ``study``'s replay period at its interval.

    Raises:
        ValueError: the study's split has no replay period (``replay_weeks`` was 0 when it was made).
        DataMismatchError: the stored bars no longer hash as the study's.
    """
    loc = runner.StudyLocation.from_settings(settings)
    spec = runner.require_spec(loc, study)
    if not spec.split.has_replay:
        raise ValueError(f"study {study!r} has no replay period (it was prepared with replay_weeks=0)")
    store = BarStore(settings.bars_dir)
    panel = study_panel(store, spec, spec.intervals[0])
    return plan_replay(settings, panel, spec.split.holdout_end, spec.split.replay_end,
                       build=lambda interval: study_panel(store, spec, interval))


def run_results(plan: ReplayPlan, trader_id: str, model_id: str) -> dict[str, Any]:
    """A trader's record on its bars (return, alpha, Sharpe, drawdown) beside each baseline's on the same bars.

    Raises:
        ValueError: the trader traded fewer than two bars (there is no return to compare).
    """
    site = plan.site
    bars, equity, index = equity_curve(site.journal.entries(trader_id))
    if len(bars) < 2:
        raise ValueError(f"{trader_id} traded {len(bars)} bar(s): nothing to compare with the baselines")
    model = site.load_model(model_id)
    interval = model.interval  # the bars it traded (a 4h model's journal holds 4h bars)
    returns = equity[1:] / equity[:-1] - 1.0
    bench = index[1:] / index[:-1] - 1.0
    own = compute_performance(returns, bench, interval)
    baselines = baseline_results(plan.panel, model.env_config, model.costs, bars[0], len(bars) - 1)
    return {
        "trader_id": trader_id, "model_id": model_id, "start": bars[0].isoformat(),
        "end": (bars[-1] + interval.timedelta).isoformat(), "bars": len(bars),
        "metrics": figures(own.to_dict()), "curve": {"bar_times": [b.isoformat() for b in bars],
                                                      "equity": (equity / equity[0]).tolist()},
        "baselines": baselines,
        "beats_every_baseline": all(own.total_return is not None and b["metrics"]["total_return"] is not None
                                    and own.total_return > b["metrics"]["total_return"] for b in baselines),
    }


def baseline_results(panel: MarketPanel, env_config: EnvConfig, costs: ExecutionCosts, first_bar: datetime,
                     steps: int) -> list[dict[str, Any]]:
    """Backtest every default baseline from ``first_bar`` for ``steps`` bars with the model's costs and cash."""
    rows = np.flatnonzero(panel.timestamps == bar_time_ns(first_bar))
    if rows.size != 1:
        raise ValueError(f"bar {first_bar.isoformat()} is not in the panel")
    config = baseline_env(env_config)
    identity = FeatureNormalizer.identity(panel.num_assets, panel.features.shape[2])
    out = []
    for policy in default_baselines(costs, panel.symbols):
        report = backtest(policy, panel, identity, config, start_row=int(rows[0]), bars=steps)
        out.append({"name": policy.name, "metrics": figures(report.metrics.to_dict()),
                    "curve": {"bar_times": [t.isoformat() for t in ReplayBarClock.from_timestamps_ns(
                                  report.timestamps, panel.interval)],
                              "equity": (report.equity / report.equity[0]).tolist()}})
    return out


def figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures a report shows of a ``PerformanceReport.to_dict()``."""
    keep = ("bars", "total_return", "sharpe", "max_drawdown", "alpha", "benchmark_total_return", "trade_count")
    return {k: metrics.get(k) for k in keep}
