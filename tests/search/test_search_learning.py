"""A small training study learns the planted edge, and claims nothing where there is none.

Three trials with the default budget (150k steps), one walk-forward fold, on a year of a
7-asset synthetic market: planted edge on, then off.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from cappuccino_core.clock import FixedClock
from cappuccino_core.config import Settings
from cappuccino_core.data.intervals import Interval
from cappuccino_core.search import runner
from cappuccino_core.search.objective import decode_returns
from cappuccino_core.search.protocol import ProtocolConfig
from cappuccino_core.search.spec import PrunerConfig, StudyKind
from tests.search.conftest import fill_store

SEVEN = ("BTC/USD", "ETH/USD", "LTC/USD", "BCH/USD", "LINK/USD", "UNI/USD", "AAVE/USD")


def _small_study(tmp_path, plant: float):
    home = tmp_path / "home"
    loc = runner.StudyLocation(f"sqlite:///{home}/optuna/studies.db", f"sqlite:///{home}/mlflow/mlflow.db", home)
    store = fill_store(home / "store", days=365, plant=plant, seed=11, symbols=SEVEN)
    settings = Settings(home=home, symbols=SEVEN, holdout_weeks=4)
    spec = runner.timeframe_spec(settings, store, "learn", trials=3)
    spec = replace(spec, kind=StudyKind.TRAINING, intervals=(Interval.H1,), lookbacks=(20,),
                   protocol=ProtocolConfig(n_folds=1, min_train_fraction=0.7), pruner=PrunerConfig(enabled=False),
                   env=replace(spec.env, episode_bars=128), ppo=replace(spec.ppo, eval_every_updates=10**6))
    runner.prepare(spec, loc, store)
    runner.run_worker_here(loc, "learn", store, clock=FixedClock(datetime(2026, 1, 1, tzinfo=UTC)))
    summary = runner.finish(loc, "learn")
    best = runner.read_study(loc, "learn").trials[summary.best_trial]
    return summary, decode_returns(best.user_attrs["excess_returns"])


@pytest.mark.slow
def test_a_small_study_on_the_planted_market_finds_a_candidate_with_positive_validation_alpha(tmp_path) -> None:
    summary, excess = _small_study(tmp_path, plant=1.0)
    weekly_alpha = excess.mean() * 168
    assert summary.trials_by_state["COMPLETE"] >= 2
    assert summary.best_value > 0 and weekly_alpha > 0.005, f"best {summary.best_value}, weekly alpha {weekly_alpha:+.4f}"


@pytest.mark.slow
def test_on_a_market_without_an_edge_the_best_trial_is_not_significant_after_deflation(tmp_path) -> None:
    summary, excess = _small_study(tmp_path, plant=0.0)
    assert summary.dsr is not None, summary.dsr_reason
    assert summary.dsr < 0.95, f"DSR {summary.dsr:.3f} of the best of {summary.dsr_tests} trials on a market with no edge"
    assert np.isfinite(excess).all()
