"""A study stops when more trials stop paying, and stays stopped for every later worker."""

from __future__ import annotations

from datetime import datetime, timedelta

import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from cappuccino_core.study import (
    DiminishingReturns,
    StopReason,
    load_study,
    prepare_study,
    run_worker,
    study_status,
)
from cappuccino_core.study.early_stop import mark_stopped

T0 = datetime(2024, 1, 1)


def trial(number: int, value: float | None, state: TrialState = TrialState.COMPLETE, done_at: int | None = None) -> FrozenTrial:
    """A finished trial completing ``done_at`` seconds after T0 (default: its number)."""
    return FrozenTrial(
        number=number, state=state, value=value, values=None,
        datetime_start=T0, datetime_complete=T0 + timedelta(seconds=number if done_at is None else done_at),
        params={}, distributions={}, user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=number,
    )


def trials(*values: float) -> list[FrozenTrial]:
    """Complete trials with these values, completing in order."""
    return [trial(i, v) for i, v in enumerate(values)]


MAX = StudyDirection.MAXIMIZE
MIN = StudyDirection.MINIMIZE


def test_an_improvement_of_exactly_min_delta_counts_as_improvement():
    rule = DiminishingReturns(patience=2, min_delta=0.5, min_trials=1)
    assert rule.check(trials(1.0, 0.0, 1.5, 1.0), MAX) is None  # window best 1.5 = 1.0 + 0.5


def test_an_improvement_just_below_min_delta_stops():
    rule = DiminishingReturns(patience=2, min_delta=0.5, min_trials=1)
    reason = rule.check(trials(1.0, 0.0, 1.25, 1.0), MAX)
    assert reason is not None and "0.25" in reason and "last 2 complete trials" in reason


def test_a_plateau_does_not_stop_before_min_trials():
    rule = DiminishingReturns(patience=2, min_delta=0.1, min_trials=5)
    assert rule.check(trials(1.0, 1.0, 1.0, 1.0), MAX) is None
    assert rule.check(trials(1.0, 1.0, 1.0, 1.0, 1.0), MAX) is not None  # exactly min_trials


def test_there_must_be_trials_before_the_window():
    rule = DiminishingReturns(patience=3, min_delta=0.1, min_trials=1)
    assert rule.check(trials(1.0, 1.0, 1.0), MAX) is None
    assert rule.check(trials(1.0, 1.0, 1.0, 1.0), MAX) is not None


def test_minimising_studies_improve_downwards():
    rule = DiminishingReturns(patience=2, min_delta=0.5, min_trials=1)
    assert rule.check(trials(2.0, 1.5, 1.5), MIN) is None  # 2.0 -> 1.5 is an improvement of 0.5
    assert rule.check(trials(2.0, 1.75, 3.0), MIN) is not None
    assert rule.check(trials(2.0, 1.5, 1.5), MAX) is not None  # same values, maximising: no gain


def test_pruned_and_failed_trials_do_not_count():
    rule = DiminishingReturns(patience=2, min_delta=0.5, min_trials=1)
    history = [
        trial(0, 1.0), trial(1, None, TrialState.FAIL), trial(2, 2.0),
        trial(3, None, TrialState.PRUNED), trial(4, None, TrialState.FAIL),
    ]
    # Complete trials are 0 and 2 only: nothing before a 2-trial window yet.
    assert rule.check(history, MAX) is None
    assert rule.check([*history, trial(5, 2.0)], MAX) is None  # window (2.0, 2.0) vs before 1.0
    assert rule.check([*history, trial(5, 2.0), trial(6, 2.0)], MAX) is not None


def test_the_window_is_the_last_trials_to_complete_not_the_highest_numbers():
    rule = DiminishingReturns(patience=1, min_delta=0.5, min_trials=1)
    # Trial 1 (value 5.0) completed last: it is the window, and it improved on 1.0.
    late_gain = [trial(0, 1.0, done_at=0), trial(1, 5.0, done_at=9), trial(2, 1.0, done_at=2)]
    assert rule.check(late_gain, MAX) is None
    early_gain = [trial(0, 1.0, done_at=0), trial(1, 5.0, done_at=1), trial(2, 1.0, done_at=9)]
    assert rule.check(early_gain, MAX) is not None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"patience": 0, "min_delta": 0.1, "min_trials": 1}, "patience"),
    ({"patience": 1, "min_delta": 0.0, "min_trials": 1}, "min_delta"),
    ({"patience": 1, "min_delta": 0.1, "min_trials": 0}, "min_trials"),
])
def test_a_rule_with_meaningless_settings_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DiminishingReturns(**kwargs)


def plateau_objective(trial: optuna.Trial) -> float:
    """0, 1, 2, 3, 4, then 4 forever: the best stops improving after trial 4."""
    trial.suggest_float("x", 0.0, 1.0)
    return float(min(trial.number, 4))


def test_a_study_that_stops_improving_stops_early_and_stays_stopped(sqlite_place):
    url, name = sqlite_place.url, sqlite_place.name
    prepare_study(url, name, sampler_seed=0, cap=50, attrs={})
    rule = DiminishingReturns(patience=3, min_delta=0.5, min_trials=5)

    first = run_worker(load_study(url, name, sampler_seed=0), plateau_objective, early_stop=rule)
    # After 8 trials the window (4, 4, 4) does not beat the best before it (4).
    assert first.stop_reason == StopReason.EARLY_STOP
    assert first.trials_by_state == {"COMPLETE": 8}
    assert "diminishing returns" in first.detail

    status = study_status(url, name)
    assert status.stopped_early is True
    assert status.stop_reason == first.detail

    second = run_worker(load_study(url, name, sampler_seed=0), plateau_objective, early_stop=rule, max_trials=5)
    assert second.stop_reason == StopReason.ALREADY_STOPPED
    assert second.n_trials == 0
    assert second.detail == first.detail
    assert study_status(url, name).total == 8


def test_a_running_worker_follows_a_stop_decided_by_another_worker(sqlite_place):
    url, name = sqlite_place.url, sqlite_place.name
    prepare_study(url, name, sampler_seed=0, cap=50, attrs={})
    never_fires = DiminishingReturns(patience=100, min_delta=1.0, min_trials=100)

    def objective(trial: optuna.Trial) -> float:
        if trial.number == 2:  # stands in for another worker deciding to stop meanwhile
            mark_stopped(trial.study, "decided elsewhere")
        return float(trial.number)

    report = run_worker(load_study(url, name, sampler_seed=0), objective, early_stop=never_fires, max_trials=20)
    assert report.stop_reason == StopReason.EARLY_STOP
    assert report.n_trials == 3
    assert report.detail == "decided elsewhere"


def test_the_first_recorded_stop_reason_wins(sqlite_place):
    prepare_study(sqlite_place.url, sqlite_place.name, sampler_seed=0, cap=5, attrs={})
    study = load_study(sqlite_place.url, sqlite_place.name, sampler_seed=0)
    assert mark_stopped(study, "first") == "first"
    assert mark_stopped(study, "second") == "first"
    assert study.user_attrs["stop_reason"] == "first"
