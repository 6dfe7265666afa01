"""GAE against a plain reference loop and hand-worked cases."""

from __future__ import annotations

import pytest
import torch

from cappuccino_core.agents.ppo import compute_gae


def reference_gae(rewards, values, dones, next_value, next_done, gamma, lam):
    """Plain Python GAE, one env at a time, scalars only.

    ``dones[t]`` = 1 means ``obs[t]`` starts a new episode, so step ``t`` bootstraps from
    step ``t + 1`` only when ``dones[t + 1]`` is 0.
    """
    num_steps, num_envs = len(rewards), len(rewards[0])
    advantages = [[0.0] * num_envs for _ in range(num_steps)]
    for env in range(num_envs):
        running = 0.0
        for t in range(num_steps - 1, -1, -1):
            if t == num_steps - 1:
                following_value, following_done = next_value[env], next_done[env]
            else:
                following_value, following_done = values[t + 1][env], dones[t + 1][env]
            if following_done:
                delta = rewards[t][env] - values[t][env]
                running = delta
            else:
                delta = rewards[t][env] + gamma * following_value - values[t][env]
                running = delta + gamma * lam * running
            advantages[t][env] = running
    returns = [[advantages[t][e] + values[t][e] for e in range(num_envs)]
               for t in range(num_steps)]
    return advantages, returns


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.0), (1.0, 1.0), (0.5, 0.7)])
def test_gae_matches_a_plain_reference_loop_on_random_data(gamma, lam):
    gen = torch.Generator().manual_seed(3)
    num_steps, num_envs = 17, 9
    rewards = torch.randn(num_steps, num_envs, generator=gen, dtype=torch.float64)
    values = torch.randn(num_steps, num_envs, generator=gen, dtype=torch.float64)
    dones = (torch.rand(num_steps, num_envs, generator=gen) < 0.2).double()
    next_value = torch.randn(num_envs, generator=gen, dtype=torch.float64)
    next_done = (torch.rand(num_envs, generator=gen) < 0.3).double()

    advantages, returns = compute_gae(rewards, values, dones, next_value, next_done, gamma, lam)
    ref_adv, ref_ret = reference_gae(rewards.tolist(), values.tolist(), dones.tolist(),
                                     next_value.tolist(), next_done.tolist(), gamma, lam)

    assert dones.sum() > 0 and next_done.sum() > 0  # the random data really has episode ends
    torch.testing.assert_close(advantages, torch.tensor(ref_adv, dtype=torch.float64))
    torch.testing.assert_close(returns, torch.tensor(ref_ret, dtype=torch.float64))


def test_gae_of_a_three_step_episode_worked_by_hand():
    # gamma 0.5, lambda 0.5, one env, values all 1, next obs starts a new episode.
    rewards = torch.tensor([[1.0], [2.0], [4.0]])
    values = torch.ones(3, 1)
    dones = torch.zeros(3, 1)
    advantages, returns = compute_gae(rewards, values, dones, torch.tensor([10.0]),
                                      torch.tensor([1.0]), gamma=0.5, lam=0.5)
    # delta_2 = 4 - 1 = 3 (episode ends, V=10 ignored); A_2 = 3
    # delta_1 = 2 + 0.5*1 - 1 = 1.5; A_1 = 1.5 + 0.25*3 = 2.25
    # delta_0 = 1 + 0.5*1 - 1 = 0.5; A_0 = 0.5 + 0.25*2.25 = 1.0625
    torch.testing.assert_close(advantages, torch.tensor([[1.0625], [2.25], [3.0]]))
    torch.testing.assert_close(returns, torch.tensor([[2.0625], [3.25], [4.0]]))


def test_gae_with_lambda_one_gives_bootstrapped_discounted_returns():
    gen = torch.Generator().manual_seed(0)
    rewards = torch.randn(6, 1, generator=gen, dtype=torch.float64)
    values = torch.randn(6, 1, generator=gen, dtype=torch.float64)
    next_value = torch.tensor([2.5], dtype=torch.float64)
    _, returns = compute_gae(rewards, values, torch.zeros(6, 1, dtype=torch.float64),
                             next_value, torch.zeros(1, dtype=torch.float64), 0.9, 1.0)
    expected = [sum(0.9 ** (k - t) * float(rewards[k]) for k in range(t, 6)) + 0.9 ** (6 - t) * 2.5
                for t in range(6)]
    torch.testing.assert_close(returns[:, 0], torch.tensor(expected, dtype=torch.float64))


def test_gae_with_lambda_zero_is_the_one_step_td_error():
    gen = torch.Generator().manual_seed(1)
    rewards = torch.randn(5, 4, generator=gen)
    values = torch.randn(5, 4, generator=gen)
    next_value = torch.randn(4, generator=gen)
    advantages, _ = compute_gae(rewards, values, torch.zeros(5, 4), next_value,
                                torch.zeros(4), 0.8, 0.0)
    following = torch.cat([values[1:], next_value[None]])
    torch.testing.assert_close(advantages, rewards + 0.8 * following - values)
