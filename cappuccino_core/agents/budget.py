"""The training budget in PPO updates: the floor below which a trial cannot have learned.

A budget in env steps says little by itself: ``total_steps // (num_envs * rollout_steps)`` is
the number of PPO updates, and a policy trained with one or two updates is its random
initialisation. A study trial must get at least ``MIN_PPO_UPDATES`` updates; the search space
scales the number of parallel episodes down with the budget to keep it there
(``envs_for_budget``), and a configuration that still falls short is refused
(``check_updates``), never trained.
"""

from __future__ import annotations

from cappuccino_core.agents.config import PPOConfig

MIN_PPO_UPDATES = 20
"""Fewest PPO updates a study trial may train with."""
MIN_ENVS = 8
"""Fewest parallel episodes the budget may scale down to (fewer makes each update's batch too small to trust)."""


class BudgetError(ValueError):
    """A training budget gives too few PPO updates (the message says how to fix it)."""


def check_updates(ppo: PPOConfig, floor: int = MIN_PPO_UPDATES) -> None:
    """Refuse a config whose budget gives fewer than ``floor`` PPO updates.

    Raises:
        BudgetError: naming the updates it gives and the settings that decide them.
    """
    if ppo.num_updates < floor:
        raise BudgetError(
            f"the budget gives {ppo.num_updates} PPO update(s) ({ppo.total_steps} steps / ({ppo.num_envs} episodes x "
            f"{ppo.rollout_steps} rollout steps)); at least {floor} are needed: raise the steps or lower the episodes"
        )


def envs_for_budget(total_steps: int, rollout_steps: int, max_envs: int, floor: int = MIN_PPO_UPDATES) -> int:
    """Return the most parallel episodes (a power of two, at most ``max_envs``) that still give ``floor`` updates.

    Raises:
        BudgetError: even ``MIN_ENVS`` episodes give fewer than ``floor`` updates.
    """
    envs = 1 << max(int(max_envs).bit_length() - 1, 0)
    while envs > MIN_ENVS and total_steps // (envs * rollout_steps) < floor:
        envs //= 2
    if total_steps // (envs * rollout_steps) < floor:
        raise BudgetError(
            f"{total_steps} steps give {total_steps // (envs * rollout_steps)} PPO update(s) even with {envs} episodes "
            f"of {rollout_steps} rollout steps; at least {floor} are needed: raise the steps to "
            f"{floor * envs * rollout_steps} or more"
        )
    return envs


def completed_episodes(ppo: PPOConfig, episode_bars: int) -> int:
    """Return how many training episodes finish within the budget (episodes are fixed-length, never terminated)."""
    return ppo.num_envs * ((ppo.num_updates * ppo.rollout_steps) // episode_bars)
