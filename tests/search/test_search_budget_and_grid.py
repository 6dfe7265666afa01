"""A study refuses budgets that cannot learn, and its timeframe search is a grid on common time spans."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import optuna
import pytest

from cappuccino_core.agents.budget import BudgetError
from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.clock import FixedClock
from cappuccino_core.config import Settings
from cappuccino_core.data.intervals import Interval
from cappuccino_core.search import runner
from cappuccino_core.search.market import PanelCache
from cappuccino_core.search.objective import StudyObjective
from cappuccino_core.search.protocol import ProtocolConfig, plan_folds
from tests.search.conftest import SYMBOLS, tiny

CLOCK = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))


def _settings(home, **extra) -> Settings:
    return Settings(**{"home": home, "symbols": SYMBOLS, "holdout_weeks": 2, "train_folds": 1, **extra})


@pytest.fixture
def loc(tmp_path) -> runner.StudyLocation:
    home = tmp_path / "home"
    return runner.StudyLocation(f"sqlite:///{home}/optuna/studies.db", f"sqlite:///{home}/mlflow/mlflow.db", home)


def test_a_trial_whose_config_gives_one_ppo_update_fails_before_any_training(tmp_path, small_store) -> None:
    spec = runner.timeframe_spec(_settings(tmp_path), small_store, "tf", trials=1)
    one_update = replace(spec, ppo=PPOConfig(total_steps=30_000, num_envs=256, rollout_steps=64, minibatch_size=2048))
    fitted = []
    objective = StudyObjective(one_update, PanelCache(small_store, one_update), tracker=None, clock=CLOCK,
                               fit=lambda *args, **kwargs: fitted.append(1))
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"interval": "1h", "lookback": 10})
    with pytest.raises(BudgetError, match="gives 1 PPO update"):
        objective(study.ask())
    assert fitted == []


def test_a_study_budget_too_small_for_the_floor_is_refused_at_once(tmp_path, small_store) -> None:
    with pytest.raises(runner.StudyError, match="training budget too small.*raise the steps to 5120"):
        runner.timeframe_spec(_settings(tmp_path, timeframe_steps=2_000), small_store, "tf")
    spec = runner.timeframe_spec(_settings(tmp_path, timeframe_steps=40_960), small_store, "tf")
    assert spec.ppo.num_updates >= 20 and spec.ppo.num_envs == 64


def test_the_timeframe_search_queues_every_cell_in_turn_up_to_the_cap(loc, small_store) -> None:
    spec = tiny(runner.timeframe_spec(_settings(loc.home), small_store, "grid", trials=6))
    spec = runner.prepare(replace(spec, intervals=(Interval.H4, Interval.H1), lookbacks=(12, 8)), loc, small_store)
    fixed = [t.system_attrs["fixed_params"] for t in runner.read_study(loc, "grid").get_trials()]  # waiting trials
    queued = [(p["interval"], p["lookback"]) for p in fixed]
    cells = [("1h", 8), ("1h", 12), ("4h", 8), ("4h", 12)]
    assert queued == cells + cells[:2]  # each cell once, then again: seeds at most one apart
    runner.prepare(spec, loc, small_store)  # a resumed study keeps its queue
    assert len(runner.read_study(loc, "grid").get_trials()) == 6


def test_every_interval_is_validated_on_the_same_spans_of_time(tmp_path, small_store) -> None:
    spec = runner.timeframe_spec(_settings(tmp_path, train_folds=2), small_store, "tf")
    panels = PanelCache(small_store, spec)
    protocol = ProtocolConfig(n_folds=2, min_train_rows=1)
    spans = {}
    for interval in (Interval.H1, Interval.H4):
        panel = panels.search(interval)
        bar = interval.seconds * 1_000_000_000
        spans[interval] = [(int(panel.timestamps[f.validation.start]), int(panel.timestamps[f.validation.stop - 1]) + bar)
                           for f in plan_folds(panel, 12, protocol, period_start=spec.split.search_start)]
    assert spans[Interval.H1] == spans[Interval.H4]
    day = 86_400 * 1_000_000_000
    assert all(start % day == 0 for start, _ in spans[Interval.H1])
