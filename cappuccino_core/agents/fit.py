"""Fit a PPO agent on a market panel: the training entry point shared by tests, search and the CLI.

The normaliser is fitted on the training rows only and stored with the model. Validation
runs the deterministic policy through the backtester on non-overlapping windows of the
validation panel, and the score is ``evaluation.scoring.excess_sharpe``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from cappuccino_core.agents.checkpoint import ModelCard, check_compatible, library_versions, load_checkpoint, save_checkpoint
from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.agents.networks import PolicyNetwork
from cappuccino_core.agents.ppo import TrainResult, train
from cappuccino_core.clock import ensure_utc
from cappuccino_core.accounting import ACTION_MAPPING
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.env.portfolio_env import PortfolioEnv
from cappuccino_core.evaluation.backtest import EvalReport, PolicyContext, backtest_windows
from cappuccino_core.evaluation.scoring import excess_sharpe, non_overlapping_starts
from cappuccino_core.features.panel import MarketPanel

logger = logging.getLogger(__name__)


class AgentPolicy:
    """A trained actor used as a trading policy: the deterministic (mean) action, clipped to [-1, 1]."""

    def __init__(self, agent: PolicyNetwork, name: str = "ppo") -> None:
        self.agent = agent.eval()
        self.name = name

    def act(self, obs: torch.Tensor, context: PolicyContext) -> torch.Tensor:
        """Return the mean action for each observation."""
        with torch.no_grad():
            return self.agent.act_deterministic(obs)


@dataclass(frozen=True)
class ValidationSet:
    """Where and how a policy is validated.

    Attributes:
        panel: rows to validate on (may start ``lookback - 1`` rows early for the first window's history).
        horizon: steps per window.
        max_windows: cap on the number of windows (earliest first); ``None`` for all that fit.
    """

    panel: MarketPanel
    horizon: int = 168
    max_windows: int | None = None

    def starts(self, lookback: int) -> np.ndarray:
        """Non-overlapping window starts that fit inside one segment."""
        starts = non_overlapping_starts(self.panel.window_starts(lookback, self.horizon), self.horizon, self.max_windows)
        if starts.size == 0:
            raise ValueError(
                f"validation panel of {self.panel.num_bars} rows has no window of {lookback} lookback + {self.horizon} bars"
            )
        return starts


@dataclass(frozen=True)
class FitResult:
    """A trained agent with everything needed to checkpoint, score and reload it."""

    agent: PolicyNetwork
    normalizer: FeatureNormalizer
    env_config: EnvConfig
    ppo_config: PPOConfig
    train: TrainResult
    card: ModelCard
    validation_score: float | None
    validation_reports: tuple[EvalReport, ...]


def evaluate_policy(policy, validation: ValidationSet, normalizer: FeatureNormalizer, env_config: EnvConfig) -> tuple[float | None, list[EvalReport]]:
    """Backtest ``policy`` on the validation windows and return ``(excess_sharpe, reports)``."""
    reports = backtest_windows(policy, validation.panel, normalizer, env_config, validation.starts(env_config.lookback), validation.horizon)
    return excess_sharpe(reports, validation.panel.interval), reports


def fit_agent(
    train_panel: MarketPanel,
    *,
    env_config: EnvConfig,
    ppo_config: PPOConfig,
    seed: int,
    created_at: datetime,
    validation: ValidationSet | None = None,
    callback: Callable[[int, float], None] | None = None,
    study: str | None = None,
    trial: int | None = None,
) -> FitResult:
    """Train PPO on ``train_panel`` and score it on ``validation``.

    ``callback(env_step, score)`` receives the validation score at every evaluation (pruning,
    learning curves); without a validation set it receives the mean training return. An
    undefined validation score (e.g. a flat policy) is reported as ``-inf`` to the callback
    and as ``None`` in the result, never silently dropped.
    """
    if env_config.num_envs != ppo_config.num_envs:
        env_config = EnvConfig.from_dict({**env_config.to_dict(), "num_envs": ppo_config.num_envs})
    normalizer = FeatureNormalizer.fit(train_panel.features)
    env = PortfolioEnv(train_panel, env_config, normalizer, seed=seed)

    evaluate = None
    last: dict[str, object] = {}  # train() evaluates after its last update: that is the final validation
    if validation is not None:
        def evaluate(agent: PolicyNetwork) -> float:
            score, reports = evaluate_policy(AgentPolicy(agent), validation, normalizer, env_config)
            last.update(score=score, reports=reports)
            return float("-inf") if score is None else score

    result = train(ppo_config, env, seed=seed, evaluate=evaluate, callback=callback)
    score, reports = (None, [])
    if validation is not None:
        if last:
            score, reports = last["score"], last["reports"]
        else:
            with _torch_threads(ppo_config.torch_threads):  # as in training: never oversubscribe the cores
                score, reports = evaluate_policy(AgentPolicy(result.agent), validation, normalizer, env_config)
    card = ModelCard(
        feature_spec=train_panel.feature_spec.to_dict(),
        interval=str(train_panel.interval),
        lookback=env_config.lookback,
        symbols=train_panel.symbols,
        normalisation=normalizer.to_dict(),
        action_mapping=dict(ACTION_MAPPING),
        env_config=env_config.to_dict(),
        ppo_config=ppo_config.to_dict(),
        obs_dim=env.obs_dim,
        action_dim=env.action_dim,
        hidden_sizes=ppo_config.hidden_sizes,
        data_hash=train_panel.data_hash,
        seed=seed,
        library_versions=library_versions(),
        created_at=ensure_utc(created_at).isoformat(),
        study=study,
        trial=trial,
        architecture=result.agent.describe(),
    )
    return FitResult(result.agent, normalizer, env_config, ppo_config, result, card, score, tuple(reports))


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def save_fit(fit: FitResult, path: Path) -> ModelCard:
    """Write the checkpoint directory of a fit (weights plus model card)."""
    return save_checkpoint(path, fit.agent, fit.card)


def load_trained_policy(path: Path, panel: MarketPanel) -> tuple[AgentPolicy, FeatureNormalizer, EnvConfig, ModelCard]:
    """Load a checkpoint for trading ``panel``; refuse it if its inputs cannot be rebuilt exactly.

    Raises:
        ModelMismatchError: the panel's feature spec, symbols or interval differ from the card's.
        CheckpointError: the weights are missing, truncated or do not match the card.
    """
    agent, card = load_checkpoint(path)
    check_compatible(card, feature_spec=panel.feature_spec, symbols=panel.symbols, interval=str(panel.interval))
    return (
        AgentPolicy(agent, name=f"ppo:{card.study or 'adhoc'}:{card.trial}"),
        FeatureNormalizer.from_dict(card.normalisation),
        EnvConfig.from_dict(card.env_config),
        card,
    )
