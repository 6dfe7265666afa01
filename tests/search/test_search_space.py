"""Search spaces: every suggestion is a valid config, and params rebuild the same configs."""

from __future__ import annotations

import itertools
from dataclasses import replace

import optuna
import pytest

from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.search.space import HIDDEN_WIDTHS, MINIBATCH_COUNTS, ROLLOUT_CHOICES, configs_from_params, suggest_training
from cappuccino_core.search.spec import MAX_TIMEFRAME_TRIALS, MAX_TRAINING_TRIALS, StudyKind, StudySpec


def _params(width, rollout, minibatches, depth=2):
    return {"hidden_width": width, "hidden_depth": depth, "rollout_steps": rollout, "minibatches": minibatches,
            "learning_rate": 3e-4, "update_epochs": 4, "gamma": 0.99, "gae_lambda": 0.95, "clip_coef": 0.2,
            "ent_coef": 1e-3, "max_grad_norm": 0.5, "reward_scale": 100.0, "min_cash_reserve": 0.1,
            "concentration_penalty": 0.001, "action_dampening": 0.8}


@pytest.mark.parametrize("num_envs", [16, 256])
def test_every_combination_of_discrete_choices_is_a_valid_config(num_envs) -> None:
    base = PPOConfig(num_envs=num_envs, minibatch_size=16, total_steps=10**6)
    for width, rollout, minibatches in itertools.product(HIDDEN_WIDTHS, ROLLOUT_CHOICES, MINIBATCH_COUNTS):
        ppo, env = configs_from_params(_params(width, rollout, minibatches), base, EnvConfig())
        assert ppo.batch_size % ppo.minibatch_size == 0 and ppo.num_minibatches == minibatches
        assert ppo.hidden_sizes == (width, width)


def test_params_rebuild_exactly_the_configs_the_trial_trained() -> None:
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1), direction="maximize")
    trial = study.ask()
    ppo, env = suggest_training(trial, PPOConfig(), EnvConfig())
    assert configs_from_params(trial.params, PPOConfig(), EnvConfig()) == (ppo, env)
    assert env.action_dampening == trial.params["action_dampening"]


def test_bad_hyperparameters_raise_instead_of_being_replaced() -> None:
    with pytest.raises(ValueError, match="update_epochs"), pytest.warns(UserWarning):
        configs_from_params({**_params(32, 16, 2), "update_epochs": 0}, PPOConfig(), EnvConfig())


def test_study_caps_are_bounded_per_phase(small_store) -> None:
    from cappuccino_core.data.intervals import Interval
    from cappuccino_core.search.market import plan_store_split

    split = plan_store_split(small_store, ("BTC/USD",), Interval.H1, holdout_weeks=2)
    base = StudySpec("s", StudyKind.TIMEFRAME, 50, 0, ("BTC/USD",), Interval.H1, split, (Interval.H1,), (10,))
    assert StudySpec.from_json(base.to_json()) == base
    with pytest.raises(ValueError, match="1..100"):
        replace(base, cap=MAX_TIMEFRAME_TRIALS + 1)
    training = replace(base, kind=StudyKind.TRAINING, cap=MAX_TRAINING_TRIALS)
    with pytest.raises(ValueError, match="1..1000"):
        replace(training, cap=MAX_TRAINING_TRIALS + 1)
    with pytest.raises(ValueError, match="exactly one interval"):
        replace(training, intervals=(Interval.H1, Interval.H4))
