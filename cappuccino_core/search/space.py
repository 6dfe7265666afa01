"""The hyperparameters each phase searches, as Optuna suggestions over the base configs.

Phase 2 searches only the bar interval and the lookback (everything else at the base config,
with the reduced training budget). Phase 3 fixes those two and searches PPO and environment
hyperparameters. Choices are chosen so every combination is a valid config (minibatch sizes
divide every batch), so a config error is a bug and is raised, never swallowed.
"""

from __future__ import annotations

from dataclasses import replace

import optuna

from cappuccino_core.agents.budget import BudgetError, envs_for_budget
from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.env.config import EnvConfig

HIDDEN_WIDTHS: tuple[int, ...] = (32, 64, 128)
ROLLOUT_CHOICES: tuple[int, ...] = (16, 32, 64)
MINIBATCH_COUNTS: tuple[int, ...] = (2, 4, 8)


def suggest_timeframe(trial: optuna.Trial, intervals: tuple[str, ...], lookbacks: tuple[int, ...]) -> tuple[str, int]:
    """Phase 2: one interval and one lookback (bars)."""
    return trial.suggest_categorical("interval", list(intervals)), int(trial.suggest_categorical("lookback", list(lookbacks)))


def feasible_rollouts(base_ppo: PPOConfig) -> tuple[int, ...]:
    """The rollout lengths with which the budget still gives ``MIN_PPO_UPDATES`` updates.

    Raises:
        BudgetError: no rollout length does (the budget is too small for any trial to learn).
    """
    feasible = []
    for rollout in ROLLOUT_CHOICES:
        try:
            envs_for_budget(base_ppo.total_steps, rollout, base_ppo.num_envs)
        except BudgetError:
            continue
        feasible.append(rollout)
    if not feasible:
        envs_for_budget(base_ppo.total_steps, ROLLOUT_CHOICES[0], base_ppo.num_envs)  # raises, saying by how much
    return tuple(feasible)


def suggest_training(trial: optuna.Trial, base_ppo: PPOConfig, base_env: EnvConfig) -> tuple[PPOConfig, EnvConfig]:
    """Phase 3: PPO and environment hyperparameters around the base configs.

    ``total_steps`` (the budget) stays at the base value. ``num_envs`` is the base value scaled
    down (``budget.envs_for_budget``) so that every suggestion gets at least ``MIN_PPO_UPDATES``
    updates; rollouts that cannot are not offered. Batch = num_envs x rollout, and the minibatch
    size is the batch over the searched number of minibatches (``PPOConfig`` checks that it divides).
    """
    width = trial.suggest_categorical("hidden_width", list(HIDDEN_WIDTHS))
    depth = trial.suggest_int("hidden_depth", 1, 3)
    rollout = trial.suggest_categorical("rollout_steps", list(feasible_rollouts(base_ppo)))
    num_envs = envs_for_budget(base_ppo.total_steps, rollout, base_ppo.num_envs)
    # Searched as minibatches per epoch so every choice divides every batch; the size follows.
    minibatch = num_envs * rollout // trial.suggest_categorical("minibatches", list(MINIBATCH_COUNTS))
    ppo = replace(
        base_ppo,
        learning_rate=trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        hidden_sizes=(width,) * depth,
        minibatch_size=minibatch,
        update_epochs=trial.suggest_int("update_epochs", 2, 8),
        rollout_steps=rollout,
        num_envs=num_envs,
        gamma=trial.suggest_float("gamma", 0.9, 0.999),
        gae_lambda=trial.suggest_float("gae_lambda", 0.8, 0.99),
        clip_coef=trial.suggest_float("clip_coef", 0.1, 0.3),
        ent_coef=trial.suggest_float("ent_coef", 1e-5, 1e-2, log=True),
        max_grad_norm=trial.suggest_float("max_grad_norm", 0.3, 1.0),
    )
    env = replace(
        base_env,
        reward_scale=trial.suggest_float("reward_scale", 10.0, 300.0, log=True),
        min_cash_reserve=trial.suggest_float("min_cash_reserve", 0.0, 0.3),
        concentration_penalty=trial.suggest_float("concentration_penalty", 0.0, 0.005),
        action_dampening=trial.suggest_float("action_dampening", 0.3, 1.0),
    )
    return ppo, env


def configs_from_params(params: dict, base_ppo: PPOConfig, base_env: EnvConfig) -> tuple[PPOConfig, EnvConfig]:
    """Rebuild a trial's configs from its recorded params (for retraining the best trials)."""
    return suggest_training(optuna.trial.FixedTrial(params), base_ppo, base_env)
