"""The training budget is counted in PPO updates: a trial below the floor is refused, never trained."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest

from cappuccino_core.agents.budget import MIN_ENVS, MIN_PPO_UPDATES, BudgetError, check_updates, completed_episodes, envs_for_budget
from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.search.space import feasible_rollouts, suggest_training

ONE_UPDATE = PPOConfig(total_steps=30_000, num_envs=256, rollout_steps=64, minibatch_size=2048)  # the old demo's trials


def test_a_one_update_budget_is_refused_naming_the_updates_it_gives() -> None:
    assert ONE_UPDATE.num_updates == 1
    with pytest.raises(BudgetError, match=r"gives 1 PPO update.*at least 20 are needed"):
        check_updates(ONE_UPDATE)
    check_updates(replace(ONE_UPDATE, total_steps=20 * ONE_UPDATE.batch_size))  # exactly the floor passes


def test_parallel_episodes_scale_down_with_the_budget_to_keep_the_floor() -> None:
    assert envs_for_budget(40_960, 32, 256) == 64  # 40960 / (64 x 32) = 20 updates
    assert envs_for_budget(10_000_000, 32, 256) == 256  # a large budget keeps every episode
    assert envs_for_budget(40_960, 16, 100) == 64  # a power of two at most max_envs
    with pytest.raises(BudgetError, match="raise the steps to 5120"):
        envs_for_budget(2_000, 32, 256)  # even 8 episodes give 7 updates
    assert MIN_ENVS == 8


def test_the_training_search_space_never_proposes_a_trial_below_the_floor() -> None:
    base = PPOConfig(total_steps=40_960, num_envs=256, rollout_steps=32, minibatch_size=2048)
    assert feasible_rollouts(base) == (16, 32, 64)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    updates = []
    for _ in range(200):
        ppo, _env = suggest_training(study.ask(), base, EnvConfig())
        updates.append(ppo.num_updates)
    assert min(updates) >= MIN_PPO_UPDATES
    small = replace(base, total_steps=8 * 64 * 20 - 1)  # rollout 64 cannot reach 20 updates even with 8 episodes
    assert 64 not in feasible_rollouts(small)
    with pytest.raises(BudgetError):
        feasible_rollouts(replace(base, num_envs=8, minibatch_size=64, total_steps=1_000))


def test_completed_episodes_count_the_fixed_length_episodes_that_finish() -> None:
    ppo = PPOConfig(total_steps=40_960, num_envs=64, rollout_steps=32, minibatch_size=512)
    assert completed_episodes(ppo, episode_bars=256) == 64 * (20 * 32 // 256)
    assert completed_episodes(ppo, episode_bars=1_000) == 0
