"""Arena benchmark: a tournament over 1,000 candidates with 20 evaluation windows each.

    python -m benchmarks.arena_bench        # prints one JSON object of named figures

The candidates are **scripted, cheap policies** (no neural network): each holds a fixed random
mix of the assets or rebalances to random weights on its own schedule, so the figure measures
the arena itself (backtesting every candidate on every window through the real environment in
batches, the match logic, the edge tests, the SQLite state and evaluation cache) and not PPO
inference; a trained candidate adds one small MLP forward pass per bar and loading its
checkpoint from the registry. The market is a synthetic 3-asset 1h panel cut into exactly
20 match windows of one week (168 bars) plus the edge test's confirmation windows; the rules
are the defaults (``ArenaConfig(window_bars=168)``: 20 wins to promote, 20 windows a match,
prefetch of 16 challengers per batch, one torch thread). ``arena_evaluations_per_model_window``
shows the cache at work: about 1 evaluation per model per window, however many matches.

Two runs: ``arena_1000x20_seconds``, where every candidate trades the market's config, so the
king and 16 challengers share one backtest batch; and ``arena_1000x20_own_env_seconds``, where
each candidate brings its own trained config (its own action dampening and cash reserve, as
trial-tuned candidates do), so each is backtested in its own batch of 20 windows: the realistic
figure for registered candidates, before loading their checkpoints (~0.1 s each from a local
MLflow store, not included). Peak memory is the whole process's peak resident set over both
runs (run it in its own process; imports and the panel alone take ~370 MB).
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import torch

from cappuccino_core.arena.config import ArenaConfig
from cappuccino_core.arena.market import ArenaMarket, FixedMarket, Player
from cappuccino_core.arena.match import holdout_windows
from cappuccino_core.arena.store import ArenaStore
from cappuccino_core.arena.tournament import Arena
from cappuccino_core.clock import FixedClock
from cappuccino_core.data.synthetic import SyntheticMarketConfig, generate_bars
from cappuccino_core.db import create_schema, make_engine, session_factory
from cappuccino_core.accounting import ExecutionCosts, actions_for_target_weights
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.evaluation.backtest import PolicyContext
from cappuccino_core.features.panel_builder import build_panel

CANDIDATES = 1000
CONFIG = ArenaConfig(window_bars=168, windows_per_match=20)
ENV = EnvConfig(lookback=20)
SYMBOLS = ("BTC/USD", "ETH/USD", "LTC/USD")
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class _Scripted:
    """Targets fixed random weights; ``hold=0`` buys once and holds, else rebalances every ``hold`` bars."""

    weights: np.ndarray
    hold: int
    costs: ExecutionCosts
    name: str = "scripted"

    def act(self, obs: torch.Tensor, context: PolicyContext) -> torch.Tensor:
        n, assets = context.holdings.shape
        due = (context.steps == 0) | (self.hold > 0 and context.steps % max(self.hold, 1) == 0)
        if not due:
            return torch.zeros(n, assets)
        target = np.repeat(self.weights[None, :], n, axis=0)
        return actions_for_target_weights(context.cash, context.holdings, context.close, torch.from_numpy(target),
                                          self.costs).to(torch.float32)


def _panel():
    """A 1h panel holding exactly the tiles for 20 match windows plus the confirmation windows."""
    market = SyntheticMarketConfig(seed=5, symbols=SYMBOLS, plant_strength=1.0)
    tiles = 29  # round(29 * 0.3) = 9 go to the edge test, 20 to matches
    rows = ENV.lookback - 1 + tiles * CONFIG.window_bars + 1
    bars = generate_bars(market, market.origin, market.origin + timedelta(hours=rows + 200))
    panel = build_panel(bars, interval=market.interval)
    return panel.rows(panel.num_bars - rows, panel.num_bars)


def _players(count: int) -> dict[str, _Scripted]:
    rng = np.random.default_rng(0)
    costs = ExecutionCosts(ENV.fee_rate, ENV.slippage_bps, ENV.min_order_notional, ENV.min_cash_reserve)
    players = {}
    for i in range(count):
        raw = rng.random(len(SYMBOLS))
        weights = raw / raw.sum() * rng.uniform(0.2, 0.99)
        players[f"candidate-{i:04d}"] = _Scripted(weights, int(rng.choice([0, 0, 6, 24, 72])), costs)
    return players


def _tournament(players: dict[str, _Scripted], envs: dict[str, EnvConfig] | None, panel) -> tuple[float, Arena, list]:
    """Register ``players`` and play the whole tournament; return (seconds, arena, matches)."""
    identity = FeatureNormalizer.identity(panel.num_assets, panel.features.shape[2])
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'arena.db'}")
        create_schema(engine)
        arena = Arena(ArenaStore(session_factory(engine)), "bench", CONFIG, clock=FixedClock(T0))
        for i, candidate in enumerate(players):
            arena.register(candidate, registered_at=T0 + timedelta(seconds=i))
        market = ArenaMarket("holdout", panel, ENV,
                             lambda c: Player(players[c], identity, None if envs is None else envs[c]))
        started = time.perf_counter()
        played = arena.play(FixedMarket(market))
        seconds = time.perf_counter() - started
        arena.status()  # read back once (what a status command does)
        engine.dispose()
    return seconds, arena, played


def bench_arena() -> dict:
    """Run the 1,000-candidate tournament twice (shared and own configs); return times, peak RSS, counts."""
    torch.set_num_threads(1)
    panel = _panel()
    windows = holdout_windows(panel, lookback=ENV.lookback, window_bars=CONFIG.window_bars,
                              confirmation_fraction=CONFIG.confirmation_fraction, windows_per_match=CONFIG.windows_per_match)
    players = _players(CANDIDATES)
    seconds, arena, played = _tournament(players, None, panel)
    rng = np.random.default_rng(1)
    own = {c: replace(ENV, action_dampening=float(rng.uniform(0.3, 1.0)), min_cash_reserve=float(rng.uniform(0.0, 0.3)))
           for c in players}
    own_seconds, own_arena, _ = _tournament(players, own, panel)
    model_windows = CANDIDATES * windows.match_rows.size
    return {
        "arena_1000x20_seconds": round(seconds, 1),
        "arena_1000x20_own_env_seconds": round(own_seconds, 1),
        "arena_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "arena_candidates": CANDIDATES,
        "arena_match_windows": int(windows.match_rows.size),
        "arena_window_bars": CONFIG.window_bars,
        "arena_matches": len(played),
        "arena_evaluations": arena.evaluations,
        "arena_evaluations_per_model_window": round(arena.evaluations / model_windows, 3),
        "arena_own_env_evaluations_per_model_window": round(own_arena.evaluations / model_windows, 3),
        "arena_edge_tests": sum(r.edge_test is not None for r in played),
    }


if __name__ == "__main__":
    print(json.dumps(bench_arena()))
