"""A model's equity on its study's arena holdout, beside the baselines on the same bars.

The arena scores models on weekly windows of the holdout; this trades the whole holdout (its
longest gap-free stretch, when bars are missing) as one window, through the arena's own market (``arena.service.ArenaSite.markets``: the study's
hash-checked holdout panel, the arena's trading conditions and loader) and the one backtester,
so the report can draw the king even when nothing reached the sandbox. The baselines trade
the same bars with the same costs (risk layers off, as in the arena).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from cappuccino_core.arena.market import trading_env
from cappuccino_core.arena.service import DEFAULT_ARENA, ArenaSite
from cappuccino_core.config import Settings
from cappuccino_core.accounting import ExecutionCosts
from cappuccino_core.evaluation.backtest import backtest
from cappuccino_core.pipeline.offline import baseline_results, figures


def holdout_results(settings: Settings, study: str, model_id: str | None, *,
                    arena_id: str = DEFAULT_ARENA) -> dict[str, Any]:
    """Trade ``model_id`` over its study's whole arena holdout; its record and the baselines' (as ``run_results``).

    With no model (nothing entered the arena) the baselines alone trade ``study``'s holdout, so
    the report still shows what the market did; ``model_id``, ``metrics`` and ``curve`` are then None.

    Raises:
        LookupError: the model is not an entrant of the arena (its study is unknown).
        arena.market.CannotTrade: the model cannot trade its own study's holdout.
    """
    site = ArenaSite.from_settings(settings)
    markets = site.markets(site.store(), arena_id)
    if model_id is not None:
        study = markets.study_of(model_id)
    market = markets.market(study)
    env = market.env_config
    start, steps = _longest_stretch(market.panel.segment, env.lookback)
    first = _bar_time(int(market.panel.timestamps[start]))
    out: dict[str, Any] = {
        "model_id": model_id, "study": study, "market": f"holdout of study {study}, {market.panel.interval} bars", "start": first.isoformat(),
        "end": (_bar_time(int(market.panel.timestamps[start + steps])) + market.panel.interval.timedelta).isoformat(),
        "bars": steps + 1, "gaps": int(np.unique(market.panel.segment).size) - 1, "metrics": None, "curve": None,
    }
    if model_id is not None:
        player = market.load(model_id)
        report = backtest(player.policy, market.panel, player.normalizer, trading_env(env, player.env_config),
                          start_row=start, bars=steps)
        out["metrics"] = figures(report.metrics.to_dict())
        out["curve"] = {"bar_times": [_bar_time(int(ns)).isoformat() for ns in report.timestamps],
                        "equity": (report.equity / report.equity[0]).tolist()}
    costs = ExecutionCosts(env.fee_rate, env.slippage_bps, env.min_order_notional, env.min_cash_reserve)
    out["baselines"] = baseline_results(market.panel, env, costs, first, steps)
    return out


def _longest_stretch(segment: np.ndarray, lookback: int) -> tuple[int, int]:
    """``(decision row, steps)`` of the longest gap-free stretch of the holdout (the latest of equal ones).

    A window must not span a gap (``MarketPanel.segment``); its first ``lookback - 1`` rows are
    history only, as in every match window.

    Raises:
        ValueError: no stretch holds the lookback and one step.
    """
    ids, first, counts = np.unique(segment, return_index=True, return_counts=True)
    best = max(range(ids.size), key=lambda i: (counts[i], first[i]))
    start, steps = int(first[best]) + lookback - 1, int(counts[best]) - lookback
    if steps < 1:
        raise ValueError(f"the holdout's longest gap-free stretch has {counts[best]} bars: too few for a lookback of "
                         f"{lookback} and one step")
    return start, steps


def _bar_time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC)
