"""What a match is played on: a holdout panel, the trading conditions, and how players are loaded.

A **market** is one holdout panel plus the conditions every player trades it under (fees,
slippage, minimum order, initial cash and risk layers: ``MARKET_FIELDS`` of its ``EnvConfig``).
A player keeps what it was trained with that shapes its own decisions (lookback, action
dampening, cash reserve, observation clip): ``trading_env`` puts the market's conditions into
the player's trained config. Rule-based baselines trade the market's conditions with the risk
layers off (``baseline_env``; a buy-and-hold that a trailing stop sells never buys back).

A ``MarketSource`` says which market a king and a challenger meet on (``key_for``) and builds it
(``market``). ``FixedMarket`` is one market for every match (tests, benchmarks, a single study);
``study_market.StudyMarkets`` picks the holdout of the two players' studies.

A player that cannot trade a market at all (trained on another bar interval or asset universe)
raises ``CannotTrade`` from the market's loader: it forfeits that match, and the reason is
recorded. Any other loading failure is an error, not a forfeit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.evaluation.backtest import Policy
from cappuccino_core.features.panel import MarketPanel

MARKET_FIELDS = ("initial_cash", "fee_rate", "slippage_bps", "min_order_notional", "start_invested", "risk")
"""``EnvConfig`` fields set by the market, identical for every player (``risk``: when the env has risk layers)."""


class CannotTrade(Exception):
    """A model cannot trade this market (another interval or asset universe); it forfeits the match."""


@dataclass(frozen=True)
class Player:
    """A loaded model, ready to trade.

    Attributes:
        policy: the deterministic policy.
        normalizer: the feature normaliser it was trained with.
        env_config: the environment it was trained in (its lookback, dampening, cash reserve);
            ``None`` for scripted players, which trade the market's config as it is.
    """

    policy: Policy
    normalizer: FeatureNormalizer
    env_config: EnvConfig | None = None


PlayerLoader = Callable[[str], Player]
"""Loads a player by entrant id for one market; raises ``CannotTrade`` when it cannot trade it."""


@dataclass(frozen=True, eq=False)
class ArenaMarket:
    """One market matches are played on.

    Attributes:
        key: stable name of the market (recorded with every match played on it).
        panel: the holdout panel; its first ``env_config.lookback - 1`` rows are history only.
        env_config: the trading conditions; its ``lookback`` is the history every window keeps
            before its decision bar (at least the lookback of any player).
        load: the loader of players for this panel.
        description: what the holdout is, for messages (e.g. its study and period).
    """

    key: str
    panel: MarketPanel
    env_config: EnvConfig
    load: PlayerLoader
    description: str = ""


class MarketSource(Protocol):
    """Chooses and builds the market of each match (deterministically: a resumed run must agree)."""

    def key_for(self, king_id: str, challenger_id: str) -> str:
        """Return the key of the market ``king_id`` and ``challenger_id`` meet on."""
        ...

    def market(self, key: str) -> ArenaMarket:
        """Return the market named ``key``."""
        ...


@dataclass(frozen=True, eq=False)
class FixedMarket:
    """One market for every match."""

    only: ArenaMarket

    def key_for(self, king_id: str, challenger_id: str) -> str:
        """Return the one market's key."""
        return self.only.key

    def market(self, key: str) -> ArenaMarket:
        """Return the one market (``key`` must be its key)."""
        if key != self.only.key:
            raise KeyError(f"no market {key!r}; this source has only {self.only.key!r}")
        return self.only


def trading_env(market: EnvConfig, trained: EnvConfig | None) -> EnvConfig:
    """Return the config a player trades in: its trained config with the market's conditions."""
    if trained is None:
        return market
    conditions = market.to_dict()
    own = trained.to_dict()
    own.update({name: conditions[name] for name in MARKET_FIELDS if name in conditions})
    return EnvConfig.from_dict(own)


def baseline_env(market: EnvConfig) -> EnvConfig:
    """Return the market's config with the risk layers off (rule-based baselines trade without them)."""
    values = market.to_dict()
    if "risk" in values:
        from cappuccino_core.risk.config import RiskConfig

        values["risk"] = RiskConfig.off().to_dict()
        values["action_dampening"] = 1.0
    return EnvConfig.from_dict(values)
