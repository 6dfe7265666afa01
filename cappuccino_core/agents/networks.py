"""ActorCritic: separate Gaussian-policy and value MLPs, initialised as in CleanRL.

Action distribution: a diagonal Normal over R^A with a state-independent log std. Actions sent
to the environment are the raw samples; the environment clips them to [-1, 1] (VecEnv contract).
The clip is part of the environment's dynamics, so the log-probabilities of the raw samples are
exactly the policy's and the PPO ratio stays correct; the entropy is analytic. (Tanh squashing
would need a Jacobian correction and has no closed-form entropy, for no gain here.)
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Normal

from cappuccino_core.agents.config import Activation

_ACTIVATIONS: dict[Activation, type[nn.Module]] = {
    Activation.TANH: nn.Tanh,
    Activation.RELU: nn.ReLU,
}


def _layer(
    in_dim: int, out_dim: int, std: float, generator: torch.Generator | None
) -> nn.Linear:
    """Return a Linear layer with orthogonal weights (gain ``std``) and zero bias (CleanRL)."""
    layer = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(layer.weight, gain=std, generator=generator)
    nn.init.zeros_(layer.bias)
    return layer


def _mlp(
    in_dim: int,
    hidden_sizes: tuple[int, ...],
    out_dim: int,
    out_std: float,
    activation: Activation,
    generator: torch.Generator | None,
) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_dim
    for hidden in hidden_sizes:
        layers += [_layer(width, hidden, math.sqrt(2), generator), _ACTIVATIONS[activation]()]
        width = hidden
    layers.append(_layer(width, out_dim, out_std, generator))
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Actor (Gaussian mean MLP + free log std) and critic (value MLP) over flat observations.

    Its ``state_dict`` plus the constructor arguments (kept in the model card) are the whole
    model. Output layers use orthogonal gains 0.01 (actor: near-zero initial mean) and 1.0
    (critic), hidden layers sqrt(2), as in CleanRL's ppo_continuous_action.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_sizes: tuple[int, ...] = (64, 64),
        activation: Activation | str = Activation.TANH,
        init_log_std: float = 0.0,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        """Build the networks; ``generator`` makes the initial weights reproducible."""
        super().__init__()
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.hidden_sizes = tuple(hidden_sizes)
        self.activation = Activation(activation)
        self.critic = _mlp(obs_dim, self.hidden_sizes, 1, 1.0, self.activation, generator)
        self.actor_mean = _mlp(
            obs_dim, self.hidden_sizes, action_dim, 0.01, self.activation, generator
        )
        self.actor_logstd = nn.Parameter(torch.full((1, action_dim), float(init_log_std)))

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        """Return V(obs) as ``[B]``."""
        return self.critic(obs).squeeze(-1)

    def distribution(self, obs: torch.Tensor) -> Normal:
        """Return the policy pi(.|obs): a diagonal Normal with state-independent std."""
        mean = self.actor_mean(obs)
        return Normal(mean, self.actor_logstd.expand_as(mean).exp())

    def get_action_and_value(
        self,
        obs: torch.Tensor,
        action: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample (or score a given) action; return ``(action, log_prob, entropy, value)``.

        ``log_prob`` and ``entropy`` are summed over action dimensions (``[B]``).
        """
        dist = self.distribution(obs)
        if action is None:
            # Reparameterised sample with an explicit generator so runs replay exactly.
            noise = torch.randn(dist.loc.shape, generator=generator, dtype=dist.loc.dtype)
            action = dist.loc + dist.scale * noise
        return (
            action,
            dist.log_prob(action).sum(-1),
            dist.entropy().sum(-1),
            self.get_value(obs),
        )

    @torch.no_grad()
    def act_deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """Return the evaluation action: the policy mean clipped to [-1, 1], ``[B, A]``."""
        return self.actor_mean(obs).clamp(-1.0, 1.0)
