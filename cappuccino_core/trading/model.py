"""A model ready to trade: its policy and everything needed to rebuild its inputs exactly."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from cappuccino_core.agents.checkpoint import ModelCard, load_checkpoint
from cappuccino_core.agents.fit import AgentPolicy
from cappuccino_core.data.intervals import Interval
from cappuccino_core.accounting import ExecutionCosts
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.evaluation.backtest import Policy
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.features.spec import FeatureSpec
from cappuccino_core.risk.layers import RiskConfig


@dataclass(frozen=True, eq=False)
class TradingModel:
    """A policy with its feature normaliser, environment config (costs, lookback, risk layers),
    feature spec, symbols in action order and bar interval.

    ``cappuccino_core.agents.fit.load_trained_policy`` returns the parts; ``from_card`` puts them together.
    """

    model_id: str
    policy: Policy
    normalizer: FeatureNormalizer
    env_config: EnvConfig
    feature_spec: FeatureSpec
    symbols: tuple[str, ...]
    interval: Interval

    @classmethod
    def from_card(
        cls, model_id: str, policy: Policy, normalizer: FeatureNormalizer, env_config: EnvConfig, card: ModelCard
    ) -> TradingModel:
        """Assemble from what ``load_trained_policy`` returns."""
        return cls(model_id, policy, normalizer, env_config, FeatureSpec.from_dict(card.feature_spec),
                   tuple(card.symbols), Interval.parse(card.interval))

    @property
    def costs(self) -> ExecutionCosts:
        """Fees, slippage and minimums of the model's environment (what its broker should charge)."""
        c = self.env_config
        return ExecutionCosts(c.fee_rate, c.slippage_bps, c.min_order_notional, c.min_cash_reserve)

    def with_risk(self, risk: RiskConfig) -> TradingModel:
        """Return the model trading under other risk layers (its dampening is kept)."""
        return replace(self, env_config=self.env_config.with_risk(risk))

    def check_panel(self, panel: MarketPanel) -> None:
        """Raise ``ValueError`` naming every way ``panel`` cannot feed this model."""
        problems = []
        if panel.symbols != self.symbols:
            problems.append(f"symbols {list(panel.symbols)} (model: {list(self.symbols)})")
        if panel.interval != self.interval:
            problems.append(f"interval {panel.interval.value} (model: {self.interval.value})")
        if panel.feature_spec.fingerprint() != self.feature_spec.fingerprint():
            problems.append(f"feature spec {panel.feature_spec.fingerprint()} (model: {self.feature_spec.fingerprint()})")
        if panel.features.shape[1:] != self.normalizer.mean.shape:
            problems.append(f"features {panel.features.shape[1:]} (normaliser: {self.normalizer.mean.shape})")
        if problems:
            raise ValueError(f"model {self.model_id}: the bars do not fit it: " + "; ".join(problems))


def load_checkpoint_model(path: str | Path, *, model_id: str | None = None) -> TradingModel:
    """Load a checkpoint directory (weights plus model card) as a ``TradingModel``.

    Raises:
        CheckpointError: the weights are missing, truncated or do not match the card.
    """
    agent, card = load_checkpoint(Path(path))
    name = model_id or str(path)
    return TradingModel.from_card(
        name, AgentPolicy(agent, name=f"ppo:{card.study or 'adhoc'}:{card.trial}"),
        FeatureNormalizer.from_dict(card.normalisation), EnvConfig.from_dict(card.env_config), card,
    )
