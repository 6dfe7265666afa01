"""Scenarios shared by the trader and sandbox tests: scripted policies, a random-walk panel, a desk."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import torch
from sqlalchemy import Engine

from cappuccino_core.clock import FixedClock
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.trading.bars_provider import PanelBarProvider
from cappuccino_core.trading.journal import TradeJournal
from cappuccino_core.trading.model import TradingModel
from cappuccino_core.risk.layers import RiskConfig
from cappuccino_core.trading.sim_broker import SimBroker
from cappuccino_core.trading.trader import Trader
from tests.conftest import make_panel

LOOKBACK = 10


class PhasePolicy:
    """Buys (sizes read from the observation) every sixth bar, sells everything three bars later.

    The book is flat whenever it buys, so no bar both sells and buys: a broker can fund it.
    """

    name = "phase"

    def __init__(self, obs_dim: int, assets: int) -> None:
        self.weights = torch.randn(obs_dim, assets, generator=torch.Generator().manual_seed(4)) * 0.1

    def act(self, obs, context):
        size = 0.2 + 0.4 * torch.sigmoid(obs @ self.weights)
        phase = (context.rows % 6).unsqueeze(1)
        return torch.where(phase == 0, size, torch.where(phase == 3, -torch.ones_like(size), torch.zeros_like(size)))


class LinearPolicy:
    """Buys and sells on the same bar (it rotates), sized from the observation."""

    name = "linear"

    def __init__(self, obs_dim: int, assets: int) -> None:
        self.weights = torch.randn(obs_dim, assets, generator=torch.Generator().manual_seed(0)) * 0.05

    def act(self, obs, context):
        return torch.tanh(obs @ self.weights)


class BuyFirstAndHold:
    """Puts 40% of the cash in each asset on its first bar, then holds."""

    name = "buy-first"

    def __init__(self, obs_dim: int, assets: int) -> None:
        self.assets = assets

    def act(self, obs, context):
        return torch.full((1, self.assets), 0.4 if context.steps == 0 else 0.0)


def walk_panel(bars: int = 200, assets: int = 3, seed: int = 1) -> MarketPanel:
    rng = np.random.default_rng(seed)
    return make_panel(100 * np.exp(np.cumsum(rng.normal(0, 0.01, size=(bars, assets)), axis=0)), seed=seed)


def bar_time(panel: MarketPanel, row: int) -> datetime:
    return datetime.fromtimestamp(int(panel.timestamps[row]) // 1_000_000_000, tz=UTC)


def model_for(panel: MarketPanel, policy_type: Callable = PhasePolicy, risk: RiskConfig | None = None,
              model_id: str = "m") -> TradingModel:
    config = EnvConfig(lookback=LOOKBACK, initial_cash=10_000.0).with_risk(risk if risk is not None else RiskConfig())
    obs_dim = 1 + panel.num_assets + LOOKBACK * panel.num_assets * panel.features.shape[2]
    return TradingModel(model_id, policy_type(obs_dim, panel.num_assets), FeatureNormalizer.fit(panel.features[:100]),
                        config, panel.feature_spec, panel.symbols, panel.interval)


class Desk:
    """One trader on a SimBroker account, with the bar feed the sandbox would give it."""

    def __init__(self, engine: Engine, account: str, model: TradingModel, panel: MarketPanel,
                 provider: PanelBarProvider | None = None, halted: Callable[[], bool] | None = None,
                 min_qty: dict[str, float] | None = None) -> None:
        self.panel = panel
        clock = FixedClock(bar_time(panel, 0))
        self.broker = SimBroker(engine, account, costs=model.costs, initial_cash=model.env_config.initial_cash,
                                clock=clock, min_qty=min_qty)
        self.journal = TradeJournal(engine)
        self.trader = Trader(account, model, self.broker, provider or PanelBarProvider(panel), self.journal,
                             halted=halted, clock=clock)

    def feed(self, row: int) -> None:
        opens = dict(zip(self.panel.symbols, self.panel.open[row].tolist()))
        closes = dict(zip(self.panel.symbols, self.panel.close[row].tolist()))
        self.broker.on_bar(bar_time(self.panel, row), opens, closes)

    def run(self, rows: range) -> list:
        outcomes = []
        for row in rows:
            self.feed(row)
            outcomes.append(self.trader.step(bar_time(self.panel, row)))
        return outcomes
