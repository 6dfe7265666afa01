"""Trial runs: one parent per (study, phase), child runs with params, curves, undefined metrics, final states."""

from __future__ import annotations

import math

import pytest

from cappuccino_core.tracking.runs import (
    end_run,
    finish_trial_run,
    find_trial_run,
    get_or_create_experiment,
    get_or_create_parent_run,
    log_curve,
    log_metrics,
    reopen_run,
    set_summary,
    start_trial_run,
)
from cappuccino_core.tracking.store import artifact_root, client


@pytest.fixture
def record(store_uri, tmp_path):
    """A fresh SQLite store under tmp_path: (client, experiment id)."""
    mlflow_client = client(store_uri)
    return mlflow_client, get_or_create_experiment(mlflow_client, "study-a", artifact_root(tmp_path), description="study a")


def test_a_parent_run_holds_three_trials_that_end_complete_pruned_and_failed(record) -> None:
    c, experiment = record
    parent = get_or_create_parent_run(c, experiment, study="study-a", phase="training", tags={"cappuccino.cap": "3"})
    runs = {}
    for number, state in enumerate(["COMPLETE", "PRUNED", "FAIL"]):
        runs[state] = start_trial_run(
            c, experiment, parent, trial_number=number, tags={"cappuccino.study": "study-a"},
            params={"learning_rate": 0.001, "hidden_sizes": (64, 64), "anneal_lr": True},
        )
        assert c.get_run(runs[state]).info.status == "RUNNING"
        assert c.get_run(runs[state]).data.tags["cappuccino.state"] == "RUNNING"
    log_curve(c, runs["COMPLETE"], "validation_score", [(4096, 0.1), (8192, 0.25), (12288, 0.4)])
    finish_trial_run(c, runs["COMPLETE"], "COMPLETE")
    finish_trial_run(c, runs["PRUNED"], "PRUNED")
    finish_trial_run(c, runs["FAIL"], "FAIL", error="ValueError: " + "x" * 6000)

    statuses = {state: c.get_run(run_id).info.status for state, run_id in runs.items()}
    assert statuses == {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    for number, (state, run_id) in enumerate(runs.items()):
        run = c.get_run(run_id)
        assert run.info.run_name == f"trial-{number:04d}"
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["cappuccino.trial"] == str(number)
        assert run.data.tags["cappuccino.state"] == state
        assert run.data.params == {"learning_rate": "0.001", "hidden_sizes": "[64, 64]", "anneal_lr": "True"}
        assert find_trial_run(c, experiment, parent, number) == run_id
    assert find_trial_run(c, experiment, parent, 99) is None
    error = c.get_run(runs["FAIL"]).data.tags["cappuccino.error"]
    assert len(error) == 5000 and error.startswith("ValueError: xxx") and error.endswith("[truncated]")
    assert "cappuccino.error" not in c.get_run(runs["PRUNED"]).data.tags

    curve = sorted((m.step, m.value) for m in c.get_metric_history(runs["COMPLETE"], "validation_score"))
    assert curve == [(4096, 0.1), (8192, 0.25), (12288, 0.4)]
    assert c.get_run(parent).info.run_name == "study-a/training"


def test_a_restarted_study_reuses_its_parent_run_and_another_phase_gets_its_own(record) -> None:
    c, experiment = record
    first = get_or_create_parent_run(c, experiment, study="study-a", phase="training", tags={})
    end_run(c, first)
    again = get_or_create_parent_run(c, experiment, study="study-a", phase="training", tags={})
    other = get_or_create_parent_run(c, experiment, study="study-a", phase="candidates", tags={})
    assert again == first and other != first
    assert c.get_run(first).info.status == "FINISHED"  # finding the parent does not reopen it
    reopen_run(c, first)  # the restarted study's trials run under it
    assert c.get_run(first).info.status == "RUNNING"
    end_run(c, first, failed=True)
    info = c.get_run(first).info
    assert info.status == "FAILED" and info.start_time <= info.end_time
    assert get_or_create_experiment(c, "study-a", None, description="study a") == experiment


def test_undefined_metrics_are_recorded_as_tags_not_dropped(record) -> None:
    c, experiment = record
    parent = get_or_create_parent_run(c, experiment, study="study-a", phase="training", tags={})
    run_id = start_trial_run(c, experiment, parent, trial_number=0, tags={}, params={})
    log_metrics(c, run_id, {"score": 0.5, "sharpe": None, "sortino": math.inf, "calmar": None},
                reasons={"calmar": "no drawdown"})
    log_curve(c, run_id, "validation_score", [(1, 0.2), (2, float("-inf")), (3, 0.3)])

    run = c.get_run(run_id)
    assert run.data.metrics == {"score": 0.5, "validation_score": 0.3}
    assert run.data.tags["metric_undefined.sharpe"] == "undefined"
    assert run.data.tags["metric_undefined.sortino"] == "inf"
    assert run.data.tags["metric_undefined.calmar"] == "no drawdown"
    assert run.data.tags["metric_undefined.validation_score"] == "undefined at step:value 2:-inf"
    assert [m.step for m in c.get_metric_history(run_id, "validation_score")] == [1, 3]


def test_parent_summaries_and_long_curves_are_written_in_batches(record) -> None:
    c, experiment = record
    parent = get_or_create_parent_run(c, experiment, study="study-a", phase="training", tags={})
    log_curve(c, parent, "train/return", [(step, step / 2500) for step in range(2500)])
    set_summary(c, parent, metrics={"best_score": 1.25, "trials_complete": 3, "wall_seconds": None},
                tags={"cappuccino.best_trial": "2"})
    run = c.get_run(parent)
    assert len(c.get_metric_history(parent, "train/return")) == 2500
    assert run.data.metrics["best_score"] == 1.25 and run.data.metrics["trials_complete"] == 3
    assert run.data.tags["metric_undefined.wall_seconds"] == "undefined"
    assert run.data.tags["cappuccino.best_trial"] == "2"


def test_a_param_or_tag_over_mlflows_limit_is_refused_not_truncated(record) -> None:
    c, experiment = record
    parent = get_or_create_parent_run(c, experiment, study="study-a", phase="training", tags={})
    with pytest.raises(ValueError, match="'notes' is 6001 characters"):
        start_trial_run(c, experiment, parent, trial_number=0, tags={}, params={"notes": "n" * 6001})
    with pytest.raises(ValueError, match="'cappuccino.note' is 8001 characters"):
        set_summary(c, parent, metrics={}, tags={"cappuccino.note": "n" * 8001})


def test_an_unknown_trial_state_and_a_contradicting_tag_are_refused(record) -> None:
    c, experiment = record
    parent = get_or_create_parent_run(c, experiment, study="study-a", phase="training", tags={})
    run_id = start_trial_run(c, experiment, parent, trial_number=0, tags={}, params={})
    with pytest.raises(ValueError, match="COMPLETE"):
        finish_trial_run(c, run_id, "DONE")
    with pytest.raises(ValueError, match="cappuccino.trial"):
        start_trial_run(c, experiment, parent, trial_number=1, tags={"cappuccino.trial": "7"}, params={})
