"""The validation protocol: purged walk-forward folds, one score definition, nothing dropped."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cappuccino_core.agents.fit import fit_agent
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.search.protocol import (
    ProtocolConfig, UndefinedScoreError, fold_validation, plan_folds, trial_score, validate_trial,
)
from tests.search.conftest import TINY_PPO

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_training_rows_end_a_purge_of_lookback_plus_horizon_before_each_validation_block(random_walk_panel) -> None:
    protocol = ProtocolConfig(n_folds=3, min_train_fraction=0.4, window_hours=24)
    folds = plan_folds(random_walk_panel, lookback=10, protocol=protocol)
    assert len(folds) == 3
    for fold in folds:
        assert fold.validation.start - fold.train.stop == 11  # lookback 10 + label horizon 1
        validation = fold_validation(random_walk_panel, fold, 10, protocol)
        # The first observation's history begins after the last training row.
        first_history = int(validation.panel.timestamps[0])
        assert first_history > int(random_walk_panel.timestamps[fold.train.stop - 1])
    # Validation blocks are consecutive and end at the last row.
    assert [f.validation.stop for f in folds][-1] == random_walk_panel.num_bars
    assert all(a.validation.stop == b.validation.start for a, b in zip(folds, folds[1:]))


def test_window_length_follows_the_interval_with_a_floor() -> None:
    from cappuccino_core.data.intervals import Interval

    protocol = ProtocolConfig(window_hours=168, min_window_bars=5)
    assert protocol.window_bars(Interval.H1) == 168
    assert protocol.window_bars(Interval.H4) == 42
    assert protocol.window_bars(Interval.D1) == 7
    assert ProtocolConfig(window_hours=48).window_bars(Interval.D1) == 5


def test_trial_score_is_the_mean_fold_score_penalised_by_dispersion() -> None:
    assert trial_score([1.0, 3.0], 0.5) == pytest.approx(2.0 - 0.5 * 1.0)
    assert trial_score([2.0, 2.0, 2.0], 1.0) == pytest.approx(2.0)
    with pytest.raises(UndefinedScoreError):
        trial_score([1.0, float("nan")], 0.5)


def test_a_trial_trains_one_agent_per_fold_and_reports_each_fold(random_walk_panel) -> None:
    env = EnvConfig(lookback=8, episode_bars=32, num_envs=TINY_PPO.num_envs)
    seen = []
    result = validate_trial(random_walk_panel, env_config=env, ppo_config=TINY_PPO, seed=1,
                            protocol=ProtocolConfig(n_folds=2, window_hours=24, min_train_rows=100), created_at=NOW,
                            progress=lambda fold, step, score: seen.append((fold, step)))
    assert len(result.folds) == 2 and len(result.fold_scores) == 2
    assert {fold for fold, _ in seen} == {0, 1}
    assert result.score == pytest.approx(trial_score(list(result.fold_scores), 0.5))
    n_bars = sum(len(f.fit.validation_reports) * 24 for f in result.folds)
    assert result.excess_returns.size == n_bars


def test_an_undefined_fold_score_fails_the_trial_rather_than_being_dropped(random_walk_panel) -> None:
    def fit_without_score(*args, **kwargs):
        fitted = fit_agent(*args, **kwargs)
        return type(fitted)(**{**fitted.__dict__, "validation_score": None})

    env = EnvConfig(lookback=8, episode_bars=32, num_envs=TINY_PPO.num_envs)
    with pytest.raises(UndefinedScoreError, match="fold 0"):
        validate_trial(random_walk_panel, env_config=env, ppo_config=TINY_PPO, seed=1,
                       protocol=ProtocolConfig(n_folds=2, window_hours=24, min_train_rows=100), created_at=NOW, fit=fit_without_score)


def test_episodes_shrink_to_fit_a_short_fold_and_too_few_rows_are_refused() -> None:
    from cappuccino_core.search.protocol import fold_env_config

    env = EnvConfig(lookback=12, episode_bars=256)
    assert fold_env_config(env, 1000) is env
    assert fold_env_config(env, 151).episode_bars == 151 - 12 - 1
    with pytest.raises(ValueError, match="at least 16"):
        fold_env_config(env, 12 + 16)
