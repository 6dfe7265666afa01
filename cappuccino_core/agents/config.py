"""PPOConfig: every hyperparameter of the PPO learner, typed, documented and checked once."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any


class Activation(StrEnum):
    """Hidden-layer non-linearity of the actor and critic MLPs."""

    TANH = "tanh"
    RELU = "relu"


class Architecture(StrEnum):
    """Which actor-critic network reads the observation (``agents.networks``)."""

    MLP = "mlp"  # separate actor and critic MLPs over the flat observation
    ASSET_ENCODER = "asset_encoder"  # one encoder shared by every asset's window, then the two MLPs
    SHARED_TRUNK = "shared_trunk"  # one first layer over the flat observation feeding both heads


@dataclass(frozen=True)
class PPOConfig:
    """Hyperparameters of PPO (Schulman et al. 2017) with GAE (Schulman et al. 2016).

    Defaults favour learning per second of CPU with a batched environment: many parallel
    episodes, short rollouts, large minibatches and few epochs, because the update, not the
    environment, dominates the time (its cost grows with obs width x hidden size x passes), and
    the update's matrix products run in bfloat16 (``bf16_update``). The default budget is the
    default trial, and it beats buy-and-hold on held-out bars of the planted-signal market
    (tests/agents/test_learning.py); speeds live in the benchmarks (``make bench``).
    ``batch_size`` is ``num_envs * rollout_steps`` env steps per update.
    """

    total_steps: int = 150_000
    """Env steps summed over all parallel episodes; rounded down to whole updates."""
    num_envs: int = 256
    """Parallel episodes; must equal the environment's ``num_envs``."""
    rollout_steps: int = 32
    """Steps per episode collected before each update."""
    learning_rate: float = 1e-3
    """Adam learning rate (start value when annealed)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to zero over the updates."""
    gamma: float = 0.99
    """Discount factor, in (0, 1]."""
    gae_lambda: float = 0.95
    """GAE lambda, in [0, 1]."""
    minibatch_size: int = 2048
    """Samples per gradient step; must divide ``batch_size``."""
    update_epochs: int = 4
    """Passes over each batch."""
    clip_coef: float = 0.2
    """Surrogate clipping epsilon (also the value clip when ``clip_vloss``)."""
    clip_vloss: bool = True
    """Clip the value-function update like the policy (CleanRL default)."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value-loss coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    target_kl: float | None = None
    """Stop the epochs of an update once approx KL exceeds this; None = never."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden-layer widths of both the actor and the critic MLP."""
    activation: Activation = Activation.TANH
    """Hidden-layer non-linearity."""
    architecture: Architecture = Architecture.MLP
    """The network: a dense MLP over the whole observation, the same with one first layer shared by both heads, or a per-asset encoder."""
    encoder_sizes: tuple[int, ...] = (16,)
    """Layer widths of the per-asset encoder shared by all assets (the last is each asset's code); asset_encoder only."""
    # The first layer's products over the wide observation are most of the update; bfloat16
    # halves their cost on CPUs with native bfloat16 (AVX512-BF16, AMX) and is emulated, slower,
    # elsewhere: turn it off there. The learning tests run with it on.
    bf16_update: bool = True
    """Run the update's forward pass under bfloat16 autocast (weights, Adam and the rollout stay float32)."""
    init_log_std: float = -0.5
    """Initial log standard deviation of the Gaussian policy."""
    eval_every_updates: int = 10
    """Call ``evaluate``/``callback`` every this many updates (and after the last)."""
    torch_threads: int = 1
    """Intra-op torch threads; 1 = two trials share 2 cores, and 2 collapses under CPU contention."""

    def __post_init__(self) -> None:
        """Check every field; raise ValueError naming the first bad one."""
        # Coerce JSON-ish inputs (lists from a model card, strings from a form) to declared types.
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        object.__setattr__(self, "encoder_sizes", tuple(self.encoder_sizes))
        object.__setattr__(self, "activation", Activation(self.activation))
        object.__setattr__(self, "architecture", Architecture(self.architecture))
        positive_ints = ("total_steps", "num_envs", "rollout_steps", "minibatch_size",
                         "update_epochs", "eval_every_updates", "torch_threads")
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        _require(self.learning_rate > 0, "learning_rate", "must be > 0", self.learning_rate)
        _require(0 < self.gamma <= 1, "gamma", "must be in (0, 1]", self.gamma)
        _require(0 <= self.gae_lambda <= 1, "gae_lambda", "must be in [0, 1]", self.gae_lambda)
        _require(self.clip_coef > 0, "clip_coef", "must be > 0", self.clip_coef)
        _require(self.ent_coef >= 0, "ent_coef", "must be >= 0", self.ent_coef)
        _require(self.vf_coef > 0, "vf_coef", "must be > 0", self.vf_coef)
        _require(self.max_grad_norm > 0, "max_grad_norm", "must be > 0", self.max_grad_norm)
        _require(math.isfinite(self.init_log_std), "init_log_std", "must be finite",
                 self.init_log_std)
        if self.target_kl is not None:
            _require(self.target_kl > 0, "target_kl", "must be > 0 or None", self.target_kl)
        if not self.hidden_sizes or any(
            isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden_sizes
        ):
            raise ValueError(f"hidden_sizes must be positive integers, got {self.hidden_sizes!r}")
        if not self.encoder_sizes or any(
            isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.encoder_sizes
        ):
            raise ValueError(f"encoder_sizes must be positive integers, got {self.encoder_sizes!r}")
        if self.norm_adv and self.minibatch_size < 2:
            raise ValueError("minibatch_size must be >= 2 when norm_adv is on (std of one sample)")
        if self.minibatch_size > self.batch_size:
            raise ValueError(
                f"minibatch_size ({self.minibatch_size}) is larger than the batch "
                f"(num_envs x rollout_steps = {self.batch_size})"
            )
        if self.batch_size % self.minibatch_size:
            raise ValueError(
                f"minibatch_size ({self.minibatch_size}) must divide the batch ({self.batch_size})"
            )
        if self.total_steps < self.batch_size:
            raise ValueError(
                f"total_steps ({self.total_steps}) is smaller than one batch ({self.batch_size})"
            )

    @property
    def batch_size(self) -> int:
        """Env steps collected per update (``num_envs * rollout_steps``)."""
        return self.num_envs * self.rollout_steps

    @property
    def num_minibatches(self) -> int:
        """Gradient steps per epoch."""
        return self.batch_size // self.minibatch_size

    @property
    def num_updates(self) -> int:
        """Updates in a run (``total_steps`` rounded down to whole batches)."""
        return self.total_steps // self.batch_size

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (for model cards and experiment logs)."""
        data = asdict(self)
        data["hidden_sizes"] = list(self.hidden_sizes)
        data["encoder_sizes"] = list(self.encoder_sizes)
        data["activation"] = str(self.activation)
        data["architecture"] = str(self.architecture)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PPOConfig:
        """Rebuild a config from ``to_dict`` output; unknown keys raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown PPOConfig fields: {unknown}")
        return cls(**data)


def _require(ok: bool, name: str, rule: str, value: object) -> None:
    if not ok:
        raise ValueError(f"{name} {rule}, got {value!r}")
