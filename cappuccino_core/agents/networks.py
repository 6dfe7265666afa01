"""Actor-critics: Gaussian policy and value networks over the portfolio observation.

Three architectures (``Architecture``): ``ActorCritic``, separate actor and critic MLPs over the
flat observation (CleanRL's); ``SharedTrunkActorCritic``, the same MLPs sharing their first
layer; and ``AssetEncoderActorCritic``, one small encoder shared by every asset's feature
window, whose per-asset codes feed the same two heads.

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

from cappuccino_core.agents.config import Activation, Architecture
from cappuccino_core.env.protocol import ObservationLayout

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


class _GaussianActorCritic(nn.Module):
    """What both architectures share: a diagonal Normal policy with a free log std, and a critic.

    Subclasses define ``action_mean(obs)`` ``[B, A]`` and ``get_value(obs)`` ``[B]``.
    """

    architecture: Architecture
    actor_logstd: nn.Parameter

    def action_mean(self, obs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def distribution(self, obs: torch.Tensor) -> Normal:
        """Return the policy pi(.|obs): a diagonal Normal with state-independent std."""
        mean = self.action_mean(obs)
        return Normal(mean, self.actor_logstd.expand_as(mean).exp())

    def prepare(self, obs: torch.Tensor) -> torch.Tensor:
        """Return ``obs`` as the network reads it (the same values, maybe reordered; here: ``obs``).

        ``get_action_and_value(..., prepared=True)`` takes this; the PPO update prepares its
        batch once rather than reordering every minibatch again.
        """
        return obs

    def get_action_and_value(
        self,
        obs: torch.Tensor,
        action: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        prepared: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample (or score a given) action; return ``(action, log_prob, entropy, value)``.

        ``log_prob`` and ``entropy`` are summed over action dimensions (``[B]``). ``prepared``:
        ``obs`` is ``prepare(observations)`` (the dense MLP reads observations as they are).
        """
        return self._scored(self.action_mean(obs), self.get_value(obs), action, generator)

    def _scored(
        self, mean: torch.Tensor, value: torch.Tensor, action: torch.Tensor | None, generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(action, log_prob, entropy, value)`` of the policy with ``mean``, sampling when ``action`` is None."""
        dist = Normal(mean, self.actor_logstd.expand_as(mean).exp())
        if action is None:
            # Reparameterised sample with an explicit generator so runs replay exactly.
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
            action = mean + dist.scale * noise
        return action, dist.log_prob(action).sum(-1), dist.entropy().sum(-1), value

    @torch.no_grad()
    def act_deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """Return the evaluation action: the policy mean clipped to [-1, 1], ``[B, A]``."""
        return self.action_mean(obs).clamp(-1.0, 1.0)

    def describe(self) -> dict[str, object]:
        """Return what, besides obs/action dims, hidden sizes and activation, rebuilds the net."""
        return {"kind": str(self.architecture)}


class ActorCritic(_GaussianActorCritic):
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

    architecture = Architecture.MLP

    def action_mean(self, obs: torch.Tensor) -> torch.Tensor:
        """Return the policy mean ``[B, A]``."""
        return self.actor_mean(obs)

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        """Return V(obs) as ``[B]``."""
        return self.critic(obs).squeeze(-1)

    def get_action_and_value(
        self,
        obs: torch.Tensor,
        action: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        prepared: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """As the base class, with the actor's and critic's first layers in one matrix product.

        The first layers read the whole observation and are most of the compute; one product
        with their weights stacked reads ``obs`` once instead of twice (the same function).
        """
        actor_first, critic_first = self.actor_mean[0], self.critic[0]
        hidden = nn.functional.linear(obs, torch.cat([actor_first.weight, critic_first.weight]),
                                      torch.cat([actor_first.bias, critic_first.bias]))
        actor_hidden, critic_hidden = hidden.split([actor_first.out_features, critic_first.out_features], dim=1)
        return self._scored(self.actor_mean[1:](actor_hidden), self.critic[1:](critic_hidden).squeeze(-1),
                            action, generator)


class SharedTrunkActorCritic(_GaussianActorCritic):
    """``ActorCritic`` whose actor and critic share their first layer (the trunk).

    The first layer reads the whole flat observation (obs_dim x hidden_sizes[0] weights), so it
    is nearly all the compute of forward and backward; one trunk feeding both heads does that
    product once instead of twice. The trunk is ``Linear(obs_dim, hidden_sizes[0])`` and the
    activation; the actor and critic are MLPs over its output with the remaining hidden sizes
    (none with a single hidden size: then each head is one Linear). Both losses train the
    trunk. Initialisation as in ``ActorCritic`` (hidden sqrt(2), actor out 0.01, critic out 1).
    """

    architecture = Architecture.SHARED_TRUNK

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
        trunk_width, rest = self.hidden_sizes[0], self.hidden_sizes[1:]
        self.trunk = nn.Sequential(_layer(obs_dim, trunk_width, math.sqrt(2), generator),
                                   _ACTIVATIONS[self.activation]())
        self.critic = _mlp(trunk_width, rest, 1, 1.0, self.activation, generator)
        self.actor_mean = _mlp(trunk_width, rest, action_dim, 0.01, self.activation, generator)
        self.actor_logstd = nn.Parameter(torch.full((1, action_dim), float(init_log_std)))

    def action_mean(self, obs: torch.Tensor) -> torch.Tensor:
        """Return the policy mean ``[B, A]``."""
        return self.actor_mean(self.trunk(obs))

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        """Return V(obs) as ``[B]``."""
        return self.critic(self.trunk(obs)).squeeze(-1)

    def get_action_and_value(
        self,
        obs: torch.Tensor,
        action: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        prepared: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """As ``ActorCritic.get_action_and_value``, running the trunk once for both heads."""
        hidden = self.trunk(obs)
        return self._scored(self.actor_mean(hidden), self.critic(hidden).squeeze(-1), action, generator)


class AssetEncoderActorCritic(_GaussianActorCritic):
    """One encoder shared by every asset, then an actor and a critic MLP over the asset codes.

    Each asset's window (``lookback x num_features`` values, oldest bar first, from the
    bar-major ``ObservationLayout``) goes through the same ``encoder`` (layers of
    ``encoder_sizes``, each followed by the activation; the last width is the size of an
    asset's code), so the first layer is about ``num_assets`` times narrower than a dense one
    over the whole observation and every asset is read by the same weights. Each asset's code
    and its weight in the book, in asset order, feed the actor and critic MLPs
    (``hidden_sizes``), as in ``ActorCritic``; the cash fraction is not read (it is one minus
    the weights). The encoder is shared by actor and critic: it is most of the compute.
    """

    architecture = Architecture.ASSET_ENCODER

    def __init__(
        self,
        layout: ObservationLayout,
        action_dim: int,
        hidden_sizes: tuple[int, ...] = (64, 64),
        activation: Activation | str = Activation.TANH,
        init_log_std: float = 0.0,
        *,
        encoder_sizes: tuple[int, ...] = (16,),
        generator: torch.Generator | None = None,
    ) -> None:
        """Build the networks; ``generator`` makes the initial weights reproducible."""
        super().__init__()
        self.layout = layout
        self.obs_dim = layout.obs_dim
        self.action_dim = action_dim
        self.hidden_sizes = tuple(hidden_sizes)
        self.activation = Activation(activation)
        self.encoder_sizes = tuple(int(w) for w in encoder_sizes)
        layers: list[nn.Module] = []
        width = layout.lookback * layout.num_features
        for size in self.encoder_sizes:
            layers += [_layer(width, size, math.sqrt(2), generator), _ACTIVATIONS[self.activation]()]
            width = size
        self.encoder = nn.Sequential(*layers)
        head_in = layout.num_assets * (width + 1)
        self.critic = _mlp(head_in, self.hidden_sizes, 1, 1.0, self.activation, generator)
        self.actor_mean = _mlp(head_in, self.hidden_sizes, action_dim, 0.01, self.activation, generator)
        self.actor_logstd = nn.Parameter(torch.full((1, action_dim), float(init_log_std)))

    def prepare(self, obs: torch.Tensor) -> torch.Tensor:
        """Return ``[B, A, lookback * num_features + 1]``: each asset's window, then its weight.

        The observation's window is bar-major (``ObservationLayout``); the encoder reads one
        asset at a time, so each asset's values are made contiguous here, once.
        """
        lay = self.layout
        window = obs[:, lay.portfolio_dim :].reshape(-1, lay.lookback, lay.num_assets, lay.num_features)
        weights = obs[:, 1 : lay.portfolio_dim].unsqueeze(2)
        return torch.cat([window.transpose(1, 2).flatten(2), weights], dim=2)

    def features(self, obs: torch.Tensor, *, prepared: bool = False) -> torch.Tensor:
        """Return ``[B, A * (code + 1)]``: each asset's code and weight, in asset order."""
        inputs = obs if prepared else self.prepare(obs)
        # The window columns are a strided view (row stride L * F + 1): the first layer reads it uncopied.
        codes = self.encoder(inputs[:, :, :-1])
        return torch.cat([codes, inputs[:, :, -1:]], dim=2).flatten(1)

    def action_mean(self, obs: torch.Tensor) -> torch.Tensor:
        """Return the policy mean ``[B, A]``."""
        return self.actor_mean(self.features(obs))

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        """Return V(obs) as ``[B]``."""
        return self.critic(self.features(obs)).squeeze(-1)

    def get_action_and_value(
        self,
        obs: torch.Tensor,
        action: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        prepared: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """As ``ActorCritic.get_action_and_value``, encoding the observation once for both heads."""
        feats = self.features(obs, prepared=prepared)
        return self._scored(self.actor_mean(feats), self.critic(feats).squeeze(-1), action, generator)

    def describe(self) -> dict[str, object]:
        """Return the architecture and the layout the encoder reads."""
        return {
            "kind": str(self.architecture), "encoder_sizes": list(self.encoder_sizes),
            "num_assets": self.layout.num_assets, "lookback": self.layout.lookback,
            "num_features": self.layout.num_features,
        }


PolicyNetwork = ActorCritic | SharedTrunkActorCritic | AssetEncoderActorCritic
"""Any architecture: what the trainer, checkpoints and trading policies accept."""


def build_actor_critic(
    architecture: Architecture | str,
    layout: ObservationLayout,
    action_dim: int,
    hidden_sizes: tuple[int, ...],
    activation: Activation | str,
    init_log_std: float = 0.0,
    *,
    encoder_sizes: tuple[int, ...] = (16,),
    generator: torch.Generator | None = None,
) -> PolicyNetwork:
    """Build the actor-critic of ``architecture`` for observations laid out as ``layout``."""
    kind = Architecture(architecture)
    if kind is Architecture.MLP:
        return ActorCritic(layout.obs_dim, action_dim, hidden_sizes, activation, init_log_std, generator=generator)
    if kind is Architecture.SHARED_TRUNK:
        return SharedTrunkActorCritic(layout.obs_dim, action_dim, hidden_sizes, activation, init_log_std,
                                      generator=generator)
    return AssetEncoderActorCritic(layout, action_dim, hidden_sizes, activation, init_log_std,
                                   encoder_sizes=encoder_sizes, generator=generator)
