"""The batched-environment protocol the PPO learner trains against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class ObservationLayout:
    """How a flat observation vector is laid out, so a network can treat assets alike.

    The observation of one episode is ``[cash_fraction, holding_fraction_1..A, window]``
    where ``window`` is ``lookback x num_assets x num_features`` values in that
    (row-major) order, oldest bar first.
    """

    num_assets: int
    lookback: int
    num_features: int

    @property
    def portfolio_dim(self) -> int:
        """Length of the portfolio part (cash fraction plus one holding fraction per asset)."""
        return 1 + self.num_assets

    @property
    def window_dim(self) -> int:
        """Length of the flattened feature window."""
        return self.lookback * self.num_assets * self.num_features

    @property
    def obs_dim(self) -> int:
        """Length of one observation."""
        return self.portfolio_dim + self.window_dim


@dataclass(frozen=True)
class StepResult:
    """What one batched step returns. All tensors have the environment's batch size ``N`` first.

    Attributes:
        obs: ``[N, obs_dim]`` float32. For episodes that ended this step it is already the
            first observation of their next episode (auto-reset).
        reward: ``[N]`` float32.
        terminated: ``[N]`` bool: the episode ended for a reason inside the MDP (no bootstrap).
        truncated: ``[N]`` bool: the episode hit its time limit (bootstrap from ``final_obs``).
        final_obs: ``[N, obs_dim]`` float32: the last observation of episodes that ended this
            step (rows of other episodes are undefined).
    """

    obs: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_obs: torch.Tensor


class VecEnv(Protocol):
    """N episodes stepped together as tensors.

    Contract: deterministic for a seed; ``reset`` clears every accumulator; actions are
    ``[N, action_dim]`` float tensors in ``[-1, 1]`` (values outside are clipped);
    episodes auto-reset; not thread-safe.
    """

    num_envs: int
    obs_dim: int
    action_dim: int
    layout: ObservationLayout

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start ``N`` fresh episodes and return their observations ``[N, obs_dim]``."""
        ...

    def step(self, actions: torch.Tensor) -> StepResult:
        """Apply ``actions`` to every episode and advance one bar."""
        ...
