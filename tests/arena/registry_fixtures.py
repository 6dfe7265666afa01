"""Real registered candidates, cheaply: stored training studies and untrained (random) policies (not a test module).

The arena's registry path is under test, not learning: each candidate is a random actor whose
output layer is scaled so it trades, saved as a real checkpoint with a model card, logged as a
pyfunc model by a run of its study's experiment and registered with ``register_candidate``,
so ``load_policy(..., expected_study=...)`` loads it exactly like a retrained candidate.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from mlflow import MlflowClient

from cappuccino_core.agents.checkpoint import ModelCard, library_versions, save_checkpoint
from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.agents.networks import ActorCritic
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.store import BarStore
from cappuccino_core.accounting import ACTION_MAPPING
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.registry.models import register_candidate
from cappuccino_core.registry.pyfunc import log_policy_model
from cappuccino_core.search import runner
from cappuccino_core.search.market import PanelCache, plan_store_split
from cappuccino_core.search.spec import StudyKind, StudySpec
from cappuccino_core.tracking.runs import get_or_create_experiment
from cappuccino_core.tracking.store import experiment_artifact_location

SYMBOLS = ("BTC/USD", "ETH/USD", "LTC/USD")
CREATED = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Registry:
    """A home's study storage, MLflow store and bar store."""

    loc: runner.StudyLocation
    bars: BarStore

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.loc.tracking_uri, self.loc.tracking_uri)


def training_study(reg: Registry, name: str, *, holdout_weeks: float, lookback: int = 8,
                   interval: Interval = Interval.H1, model_name: str = "cappuccino-ppo") -> StudySpec:
    """Store a training study (spec, data hashes, parent run) whose holdout is the last ``holdout_weeks``."""
    split = plan_store_split(reg.bars, SYMBOLS, Interval.H1, holdout_weeks=holdout_weeks)
    spec = StudySpec(name=name, kind=StudyKind.TRAINING, cap=1, seed=0, symbols=SYMBOLS, base_interval=Interval.H1,
                     split=split, intervals=(interval,), lookbacks=(lookback,), model_name=model_name)
    return runner.prepare(spec, reg.loc, reg.bars)


def register_random_candidate(reg: Registry, spec: StudySpec, trial: int, *, seed: int, scale: float = 200.0,
                              tags: dict[str, str] | None = None) -> str:
    """Register an untrained policy as a candidate of ``spec`` (trial ``trial``, model ``spec.model_name``); return its version."""
    panel = PanelCache(reg.bars, spec).search(spec.interval)
    assets, features = len(SYMBOLS), panel.features.shape[2]
    env = EnvConfig(lookback=spec.lookback, action_dampening=0.8)
    obs_dim = 1 + assets + spec.lookback * assets * features
    agent = ActorCritic(obs_dim, assets, (16,), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        agent.actor_mean[-1].weight.mul_(scale)  # an untrained actor barely moves; this one trades
    card = ModelCard(
        feature_spec=panel.feature_spec.to_dict(), interval=str(spec.interval), lookback=spec.lookback, symbols=SYMBOLS,
        normalisation=FeatureNormalizer.fit(panel.features).to_dict(), action_mapping=dict(ACTION_MAPPING),
        env_config=env.to_dict(), ppo_config=PPOConfig(hidden_sizes=(16,)).to_dict(), obs_dim=obs_dim,
        action_dim=assets, hidden_sizes=(16,), data_hash=panel.data_hash, seed=seed,
        library_versions=library_versions(), created_at=CREATED.isoformat(), study=spec.name, trial=trial,
    )
    client = reg.client
    experiment = get_or_create_experiment(client, spec.name, experiment_artifact_location(reg.loc.tracking_uri, reg.loc.home),
                                          description="arena test study")
    run_id = client.create_run(experiment, run_name=f"candidate-{trial}").info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp) / "checkpoint", agent, card)
        model_uri = log_policy_model(client, run_id, Path(tmp) / "checkpoint")
    client.set_terminated(run_id)
    return register_candidate(client, model_uri=model_uri, run_id=run_id, study=spec.name, trial=trial,
                              feature_spec_version=panel.feature_spec.version, data_hash=panel.data_hash,
                              model_name=spec.model_name, extra_tags={"interval": str(spec.interval), "lookback": str(spec.lookback), **(tags or {})})
