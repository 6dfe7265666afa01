"""The actor-critics beside the dense MLP: a first layer shared by both heads, and an encoder shared by every asset."""

from __future__ import annotations

import torch

from cappuccino_core.agents.config import Architecture
from cappuccino_core.agents.networks import ActorCritic, AssetEncoderActorCritic, SharedTrunkActorCritic, build_actor_critic
from cappuccino_core.env.protocol import ObservationLayout

LAYOUT = ObservationLayout(num_assets=3, lookback=4, num_features=5)


def _encoder(seed: int = 0) -> AssetEncoderActorCritic:
    return AssetEncoderActorCritic(LAYOUT, 3, (16,), "tanh", encoder_sizes=(8, 6),
                                   generator=torch.Generator().manual_seed(seed))


def _codes(agent: AssetEncoderActorCritic, obs: torch.Tensor) -> torch.Tensor:
    """The per-asset codes and weights ``[B, A, code + 1]`` the heads read."""
    return agent.features(obs).reshape(obs.shape[0], LAYOUT.num_assets, -1)


def _window(obs: torch.Tensor) -> torch.Tensor:
    """The ``[B, lookback, assets, features]`` view of the window part of ``obs``."""
    return obs[:, LAYOUT.portfolio_dim :].view(-1, LAYOUT.lookback, LAYOUT.num_assets, LAYOUT.num_features)


def test_changing_one_assets_window_changes_only_that_assets_code():
    agent = _encoder()
    obs = torch.randn(4, LAYOUT.obs_dim, generator=torch.Generator().manual_seed(1))
    changed = obs.clone()
    _window(changed)[:, :, 1, :] += 1.0  # every bar of asset 1
    before, after = _codes(agent, obs), _codes(agent, changed)
    assert not torch.allclose(before[:, 1], after[:, 1])
    torch.testing.assert_close(before[:, [0, 2]], after[:, [0, 2]])


def test_every_asset_is_read_by_the_same_encoder_weights():
    agent = _encoder()
    obs = torch.randn(4, LAYOUT.obs_dim, generator=torch.Generator().manual_seed(2))
    swapped = obs.clone()
    _window(swapped)[:, :, [0, 2], :] = _window(obs)[:, :, [2, 0], :]  # assets 0 and 2 trade windows
    swapped[:, [1, 3]] = obs[:, [3, 1]]  # and weights in the book
    torch.testing.assert_close(_codes(agent, swapped), _codes(agent, obs)[:, [2, 1, 0]])


def test_the_encoders_first_layer_is_assets_times_narrower_than_the_dense_one():
    dense = ActorCritic(LAYOUT.obs_dim, 3, (16,))
    shared = _encoder()
    assert dense.actor_mean[0].in_features == LAYOUT.obs_dim
    assert shared.encoder[0].in_features == LAYOUT.lookback * LAYOUT.num_features
    assert shared.encoder[0].in_features * LAYOUT.num_assets == LAYOUT.window_dim


def test_one_forward_pass_gives_the_same_action_value_and_log_prob_as_the_separate_calls():
    agent = _encoder()
    obs = torch.randn(6, LAYOUT.obs_dim, generator=torch.Generator().manual_seed(3))
    action, log_prob, entropy, value = agent.get_action_and_value(obs, generator=torch.Generator().manual_seed(4))
    dist = agent.distribution(obs)
    torch.testing.assert_close(log_prob, dist.log_prob(action).sum(-1))
    torch.testing.assert_close(entropy, dist.entropy().sum(-1))
    torch.testing.assert_close(value, agent.get_value(obs))
    assert agent.act_deterministic(obs).abs().max() <= 1.0


def test_build_gives_the_architecture_asked_for_with_reproducible_weights():
    dense = build_actor_critic(Architecture.MLP, LAYOUT, 3, (16,), "tanh")
    first = build_actor_critic("asset_encoder", LAYOUT, 3, (16,), "tanh", encoder_sizes=(8,),
                               generator=torch.Generator().manual_seed(5))
    second = build_actor_critic("asset_encoder", LAYOUT, 3, (16,), "tanh", encoder_sizes=(8,),
                                generator=torch.Generator().manual_seed(5))
    assert isinstance(dense, ActorCritic) and isinstance(first, AssetEncoderActorCritic)
    assert dense.describe() == {"kind": "mlp"}
    assert first.describe() == {"kind": "asset_encoder", "encoder_sizes": [8], "num_assets": 3,
                                "lookback": 4, "num_features": 5}
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name


def test_a_prepared_batch_scores_actions_exactly_as_the_raw_observations():
    agent = _encoder()
    obs = torch.randn(5, LAYOUT.obs_dim, generator=torch.Generator().manual_seed(6))
    actions = torch.randn(5, 3, generator=torch.Generator().manual_seed(7))
    raw = agent.get_action_and_value(obs, actions)
    prepared = agent.get_action_and_value(agent.prepare(obs), actions, prepared=True)
    for a, b in zip(raw, prepared):
        torch.testing.assert_close(a, b)
    assert agent.prepare(obs).shape == (5, LAYOUT.num_assets, LAYOUT.lookback * LAYOUT.num_features + 1)


# --- the shared trunk ---------------------------------------------------------------------------

def _trunk(seed: int = 0, hidden: tuple[int, ...] = (16, 8)) -> SharedTrunkActorCritic:
    return SharedTrunkActorCritic(LAYOUT.obs_dim, 3, hidden, "tanh", generator=torch.Generator().manual_seed(seed))


def test_the_shared_trunk_reads_the_observation_once_for_both_heads():
    agent = _trunk()
    dense = ActorCritic(LAYOUT.obs_dim, 3, (16, 8))
    reading_obs = [m for m in agent.modules() if isinstance(m, torch.nn.Linear) and m.in_features == LAYOUT.obs_dim]
    assert reading_obs == [agent.trunk[0]] and agent.trunk[0].out_features == 16
    assert agent.actor_mean[0].in_features == agent.critic[0].in_features == 16
    dense_params = sum(p.numel() for p in dense.parameters())
    assert dense_params - sum(p.numel() for p in agent.parameters()) == LAYOUT.obs_dim * 16 + 16


def test_both_the_policy_and_the_value_loss_train_the_shared_trunk():
    obs = torch.randn(8, LAYOUT.obs_dim, generator=torch.Generator().manual_seed(1))
    for loss_of in (lambda a: a.action_mean(obs).sum(), lambda a: a.get_value(obs).sum()):
        agent = _trunk()
        loss_of(agent).backward()
        assert agent.trunk[0].weight.grad is not None and agent.trunk[0].weight.grad.abs().sum() > 0


def test_the_shared_trunk_gives_the_same_action_value_and_log_prob_in_one_pass_as_separately():
    agent = _trunk()
    obs = torch.randn(6, LAYOUT.obs_dim, generator=torch.Generator().manual_seed(3))
    action, log_prob, entropy, value = agent.get_action_and_value(obs, generator=torch.Generator().manual_seed(4))
    dist = agent.distribution(obs)
    torch.testing.assert_close(log_prob, dist.log_prob(action).sum(-1))
    torch.testing.assert_close(entropy, dist.entropy().sum(-1))
    torch.testing.assert_close(value, agent.get_value(obs))
    assert agent.act_deterministic(obs).abs().max() <= 1.0


def test_a_shared_trunk_of_one_hidden_layer_has_linear_heads():
    agent = _trunk(hidden=(16,))
    assert len(agent.actor_mean) == len(agent.critic) == 1
    assert agent.get_value(torch.zeros(2, LAYOUT.obs_dim)).shape == (2,)


def test_build_gives_the_shared_trunk_with_reproducible_weights():
    first = build_actor_critic("shared_trunk", LAYOUT, 3, (16,), "tanh", generator=torch.Generator().manual_seed(5))
    second = build_actor_critic(Architecture.SHARED_TRUNK, LAYOUT, 3, (16,), "tanh",
                                generator=torch.Generator().manual_seed(5))
    assert isinstance(first, SharedTrunkActorCritic) and first.describe() == {"kind": "shared_trunk"}
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name


def test_the_dense_mlp_gives_the_same_action_value_and_log_prob_in_one_pass_as_separately():
    agent = ActorCritic(LAYOUT.obs_dim, 3, (16, 8), generator=torch.Generator().manual_seed(0))
    obs = torch.randn(6, LAYOUT.obs_dim, generator=torch.Generator().manual_seed(3))
    action, log_prob, entropy, value = agent.get_action_and_value(obs, generator=torch.Generator().manual_seed(4))
    dist = agent.distribution(obs)
    torch.testing.assert_close(log_prob, dist.log_prob(action).sum(-1))
    torch.testing.assert_close(entropy, dist.entropy().sum(-1))
    torch.testing.assert_close(value, agent.get_value(obs))
