"""Scenarios of the lifecycle tests (not a test module): a market with a known edge, scripted models, a site.

The market: asset ``A0/USD`` zig-zags every bar between 100 (even rows) and ``100 + swing``
(odd rows); ``A1/USD`` and ``A2/USD`` stay flat. A decision at a bar's close fills at the
next bar's open (the previous close), so:

* ``Rhythm(buy_on=0)`` ("good") buys A0 at the low and sells at the high: it earns on every
  cycle, far more than the equal-weight buy and hold;
* ``Rhythm(buy_on=1)`` ("bad") buys at the high and sells at the low: it loses on every cycle;
* ``Flat`` never trades (its excess return is minus the benchmark's).

Policies read only ``context.rows`` (the decision row, the same in the trader and in the
backtester), never a future price, so journals replay exactly in the backtester.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import torch
from sqlalchemy import Engine

from cappuccino_core.clock import FixedClock
from cappuccino_core.config import Settings, load_settings
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.lifecycle.green_light import GATE_NAME, GreenLightConfig, GreenLightDecision, RuleOutcome
from cappuccino_core.operations.live import Approval, record_approval
from cappuccino_core.operations.site import LifecycleSite
from cappuccino_core.lifecycle.thresholds import Comparison
from cappuccino_core.trading.bars_provider import PanelBarProvider
from cappuccino_core.trading.model import TradingModel
from tests.conftest import make_panel

LOOKBACK = 4
HOUR = timedelta(hours=1)


class Rhythm:
    """Buys all it may of A0 on rows of parity ``buy_on`` and sells all of it on the others."""

    def __init__(self, buy_on: int) -> None:
        self.buy_on = buy_on
        self.name = f"rhythm-{buy_on}"

    def act(self, obs, context):
        n, assets = context.rows.shape[0], context.panel.num_assets
        buy = (context.rows % 2 == self.buy_on).to(torch.float64)
        actions = torch.zeros((n, assets), dtype=torch.float64)
        actions[:, 0] = 2.0 * buy - 1.0
        return actions


class Flat:
    """Never trades."""

    name = "flat"

    def act(self, obs, context):
        return torch.zeros((context.rows.shape[0], context.panel.num_assets), dtype=torch.float64)


def zigzag_panel(bars: int = 160, swing: float = 20.0) -> MarketPanel:
    """A0 alternates 100 / 100 + swing (even / odd rows); A1 and A2 are flat at 50 and 20."""
    close = np.empty((bars, 3))
    close[:, 0] = np.where(np.arange(bars) % 2 == 0, 100.0, 100.0 + swing)
    close[:, 1], close[:, 2] = 50.0, 20.0
    return make_panel(close)


def bar_time(panel: MarketPanel, row: int) -> datetime:
    return datetime.fromtimestamp(int(panel.timestamps[row]) // 1_000_000_000, tz=UTC)


def scripted_model(panel: MarketPanel, policy, model_id: str) -> TradingModel:
    """A model trading ``policy`` on ``panel``'s symbols with the default costs."""
    return TradingModel(model_id, policy, FeatureNormalizer.fit(panel.features), EnvConfig(lookback=LOOKBACK),
                        panel.feature_spec, panel.symbols, panel.interval)


def lifecycle_settings(home, **overrides) -> Settings:
    """Settings of a temporary home trading the zig-zag panel's symbols (no Alpaca keys unless given)."""
    return load_settings(home=home, symbols="A0/USD,A1/USD,A2/USD", **overrides)


@dataclass
class Scene:
    """A site on the zig-zag market with scripted models under lifecycle ids."""

    site: LifecycleSite
    panel: MarketPanel
    clock: FixedClock

    def at(self, row: int) -> datetime:
        return bar_time(self.panel, row)

    def move_clock(self, row: int) -> None:
        """Put the clock just after bar ``row`` closed."""
        self.clock.set(self.at(row) + HOUR + timedelta(minutes=1))


def make_scene(engine: Engine, settings: Settings, models: dict[str, object], *, panel: MarketPanel | None = None,
               tracking: str | None = None) -> Scene:
    """A site on ``engine``: bars from ``panel`` (default the zig-zag), ``models`` = lifecycle id -> policy."""
    panel = panel if panel is not None else zigzag_panel()
    loaded = {model_id: scripted_model(panel, policy, model_id) for model_id, policy in models.items()}
    clock = FixedClock(bar_time(panel, 0))

    def load(ref: str) -> TradingModel:
        return loaded[ref]

    site = LifecycleSite(settings, engine, PanelBarProvider(panel), load, clock, tracking)
    return Scene(site, panel, clock)


GOOD, BAD, FLAT = "models:/zigzag/1", "models:/zigzag/2", "models:/zigzag/3"
POLICIES = {GOOD: Rhythm(0), BAD: Rhythm(1), FLAT: Flat()}


def grant_live(site: LifecycleSite, model_id: str, at: datetime,
               approval: Approval | None = None) -> tuple[Approval, dict]:
    """Store a passing green light and an approval for ``model_id`` at ``at``, as the live gate would.

    For tests of what happens once a model is live; the gate itself is tested on real paper records.
    Returns ``(approval, decision)`` for ``go_live``.
    """
    rules = tuple(RuleOutcome(name, 1.0, Comparison.AT_LEAST, 0.0, True, "granted by the test")
                  for name in ("history", "alpha", "sharpe", "max_drawdown", "errors"))
    decision = GreenLightDecision(model_id, at, True, rules, at, at, 48, GreenLightConfig()).to_dict()
    site.store.record_gate_decision(GATE_NAME, model_id, allowed=True, decided_at=at, decision=decision)
    approval = approval or Approval(True, "test", "owner")
    record_approval(site, model_id, approval, at=at)
    return approval, decision
