"""Scripted players and synthetic holdout markets for the arena tests (not a test module).

Every policy here is stateless per decision row (its action depends only on the row, the step
and the book), so its results do not depend on how windows are batched.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import torch

from cappuccino_core.arena.config import ArenaConfig
from cappuccino_core.arena.store import ArenaStore
from cappuccino_core.arena.tournament import Arena
from cappuccino_core.clock import FixedClock
from cappuccino_core.data.synthetic import SyntheticMarketConfig, generate_bars, simulate_market
from cappuccino_core.db import create_schema, make_engine, session_factory
from cappuccino_core.accounting import ExecutionCosts, actions_for_target_weights
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.risk.config import RiskConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.evaluation.backtest import PolicyContext
from cappuccino_core.evaluation.baselines import EqualWeightBuyAndHold
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.features.panel_builder import build_panel

SYMBOLS = ("BTC/USD", "ETH/USD", "LTC/USD")
ENV = EnvConfig(lookback=8, risk=RiskConfig.off())  # the rules under test, not the risk layers
COSTS = ExecutionCosts(ENV.fee_rate, ENV.slippage_bps, ENV.min_order_notional, ENV.min_cash_reserve)
T0 = datetime(2024, 6, 1, tzinfo=UTC)


@dataclass(frozen=True, eq=False)
class Market:
    """A synthetic holdout panel with the hidden trend states of the path it was built from."""

    config: SyntheticMarketConfig
    panel: MarketPanel
    trend_state: np.ndarray  # [path bars, A]: +1 up, 0 flat, -1 down


def make_market(seed: int, plant_strength: float, bars: int = 1200, symbols: Sequence[str] = SYMBOLS) -> Market:
    """Simulate ``bars`` hourly bars (plus indicator warm-up) and build the holdout panel."""
    config = SyntheticMarketConfig(seed=seed, symbols=tuple(symbols), plant_strength=plant_strength)
    total = bars + 40
    panel = build_panel(generate_bars(config, config.origin, config.origin + timedelta(hours=total)),
                        interval=config.interval)
    return Market(config, panel, simulate_market(config, total).trend_state)


def _uniform(seed: int, blocks: np.ndarray, width: int) -> np.ndarray:
    """Hash ``(seed, block, column)`` to ``U[0, 1)`` ``[N, width]`` (splitmix64; per row, batch-independent)."""
    with np.errstate(over="ignore"):
        x = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
             + blocks.astype(np.uint64)[:, None] * np.uint64(0xBF58476D1CE4E5B9)
             + np.arange(1, width + 1, dtype=np.uint64)[None, :] * np.uint64(0x94D049BB133111EB))
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / 2.0**53


def _to_actions(context: PolicyContext, target: np.ndarray) -> torch.Tensor:
    return actions_for_target_weights(
        context.cash, context.holdings, context.close, torch.from_numpy(target), COSTS
    ).to(torch.float32)


@dataclass(frozen=True)
class DoNothing:
    """Stays in cash."""

    name: str = "do_nothing"

    def act(self, obs: torch.Tensor, context: PolicyContext) -> torch.Tensor:
        """Return zero actions."""
        return torch.zeros(context.holdings.shape)


@dataclass(frozen=True)
class RandomWeights:
    """Every ``hold`` bars, rebalance to random weights (random cash share too); pure noise plus fees."""

    seed: int
    hold: int = 6
    name: str = "random"

    def act(self, obs: torch.Tensor, context: PolicyContext) -> torch.Tensor:
        """Rebalance on the policy's schedule, hold in between."""
        rows = context.rows.numpy()
        n, a = context.holdings.shape
        due = (rows % self.hold == 0) | (context.steps == 0)
        if not due.any():
            return torch.zeros(n, a)
        u = _uniform(self.seed, rows // self.hold, a + 1)
        target = u[:, :a] / u[:, :a].sum(axis=1, keepdims=True) * (0.2 + 0.8 * u[:, a:])
        actions = _to_actions(context, target)
        return torch.where(torch.from_numpy(due)[:, None], actions, torch.zeros_like(actions))


@dataclass(frozen=True)
class HoldRandomMix:
    """Buys one fixed random mix of the assets on the first step, then holds: low-turnover noise."""

    seed: int
    name: str = "hold_mix"

    def act(self, obs: torch.Tensor, context: PolicyContext) -> torch.Tensor:
        """Buy the mix on step 0, do nothing afterwards."""
        n, a = context.holdings.shape
        if context.steps > 0:
            return torch.zeros(n, a)
        u = _uniform(self.seed, np.zeros(1, dtype=np.int64), a)
        return _to_actions(context, np.repeat(u / u.sum() * 0.99, n, axis=0))


@dataclass(frozen=True, eq=False)
class Oracle:
    """Holds the assets whose hidden trend is up at the decision bar (a scripted test player, not a model).

    It reads the synthetic path's ``trend_state`` at the decision row only (never later) and
    rebalances only when the set of up-trending assets changes.
    """

    market: Market
    name: str = "oracle"

    def _up(self, rows: np.ndarray) -> np.ndarray:
        panel, cfg = self.market.panel, self.market.config
        origin_ns = int(cfg.origin.timestamp()) * 1_000_000_000
        index = (panel.timestamps[rows] - origin_ns) // (cfg.interval.seconds * 1_000_000_000)
        return self.market.trend_state[index] == 1

    def act(self, obs: torch.Tensor, context: PolicyContext) -> torch.Tensor:
        """Rebalance into the up-trending assets when that set changes."""
        rows = context.rows.numpy()
        up, before = self._up(rows), self._up(rows - 1)
        changed = (up != before).any(axis=1) | (context.steps == 0)
        count = up.sum(axis=1, keepdims=True)
        target = np.where(count > 0, up / np.maximum(count, 1), 0.0) * 0.99
        actions = _to_actions(context, target)
        return torch.where(torch.from_numpy(changed)[:, None], actions, torch.zeros_like(actions))


@dataclass
class Slow:
    """Wraps a policy and sleeps on every call (gives a subprocess time to be killed mid-match)."""

    inner: object
    seconds: float
    name: str = "slow"

    def act(self, obs: torch.Tensor, context: PolicyContext) -> torch.Tensor:
        """Sleep, then act like the wrapped policy."""
        time.sleep(self.seconds)
        return self.inner.act(obs, context)


@dataclass
class PolicyBook:
    """Candidate id -> scripted policy; ``load`` is the arena's ``load_policy``. Counts loads."""

    policies: dict[str, object]
    loads: list[str] = field(default_factory=list)

    def load(self, candidate_id: str) -> tuple[object, FeatureNormalizer]:
        """Return the candidate's policy with an identity normaliser."""
        self.loads.append(candidate_id)
        return self.policies[candidate_id], FeatureNormalizer.identity(len(SYMBOLS), 11)


def rules_players(market: Market, randoms: int = 22) -> dict[str, object]:
    """Entrants for the rules tests, in registration order: 2 noise players, the oracle, then noise."""
    players: dict[str, object] = {"random-00": RandomWeights(seed=100, hold=3), "do-nothing": DoNothing(),
                                  "oracle": Oracle(market)}
    for i in range(1, randoms + 1):
        players[f"random-{i:02d}"] = RandomWeights(seed=100 + i, hold=(3, 6, 12)[i % 3])
    return players


def register_all(arena: Arena, ids: Sequence[str]) -> None:
    """Register ``ids`` in order, one minute apart from ``T0``."""
    for i, candidate in enumerate(ids):
        arena.register(candidate, registered_at=T0 + timedelta(minutes=i))


RESUME_CONFIG = ArenaConfig(promotion_streak=4, windows_per_match=4, window_bars=48, seed=7, n_bootstrap=500,
                            prefetch_matches=3)


def resume_players(market: Market) -> dict[str, object]:
    """A mix that produces king changes, ties, a rejection and a promotion with ``RESUME_CONFIG``."""
    players: dict[str, object] = {"twin-a": HoldRandomMix(seed=9), "twin-b": HoldRandomMix(seed=9)}
    for i in range(4):
        players[f"r{i}"] = RandomWeights(seed=500 + i, hold=(2, 6, 24)[i % 3])
    players["bh-clone"] = EqualWeightBuyAndHold(COSTS, name="bh_clone")  # wins on low fees, has no edge
    for i in range(4, 10):
        players[f"r{i}"] = RandomWeights(seed=500 + i, hold=1)
    players["oracle"] = Oracle(market)
    for i in range(10, 16):
        players[f"r{i}"] = RandomWeights(seed=500 + i, hold=3)
    return players


def child_main(url: str, sleep: float) -> None:
    """Play the resume scenario on ``url`` with slowed policies (run in a subprocess, then killed)."""
    market = make_market(seed=7, plant_strength=1.0)
    players = {k: Slow(p, sleep) for k, p in resume_players(market).items()}
    engine = make_engine(url)
    create_schema(engine)
    arena = Arena(ArenaStore(session_factory(engine)), "resume", RESUME_CONFIG, clock=FixedClock(T0))
    register_all(arena, list(players))
    arena.play_pending(PolicyBook(players).load, market.panel, ENV)


if __name__ == "__main__":
    child_main(sys.argv[1], float(sys.argv[2]))
