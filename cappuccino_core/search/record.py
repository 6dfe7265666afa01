"""Keep MLflow's record equal to Optuna's: one child run per trial, in the trial's final state.

A worker that crashed mid-trial leaves its run RUNNING in MLflow; once Optuna has failed the
trial (heartbeat), ``reconcile_runs`` closes the run as FAILED with the reason. A trial that
failed before its run was created gets a run now, carrying the recorded error.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from cappuccino_core.search.objective import StudyTracker
from cappuccino_core.tracking.runs import find_trial_run, finish_trial_run, start_trial_run

_FINAL = {TrialState.COMPLETE: "COMPLETE", TrialState.PRUNED: "PRUNED", TrialState.FAIL: "FAIL"}


def reconcile_runs(study: optuna.Study, tracker: StudyTracker, study_name: str) -> dict[str, int]:
    """Close or create runs so every finished trial has exactly one run in its final state.

    Returns counts: ``created`` runs, ``closed`` runs whose state was corrected.
    """
    client = tracker.client
    created = closed = 0
    for trial in study.get_trials(deepcopy=False):
        state = _FINAL.get(trial.state)
        if state is None:
            continue  # running or waiting: its worker owns the run
        error = trial.user_attrs.get("error")
        if state == "FAIL" and error is None:
            error = "the worker stopped during this trial (no heartbeat within the grace period)"
        run_id = trial.user_attrs.get("mlflow_run_id") or find_trial_run(
            client, tracker.experiment_id, tracker.parent_run_id, trial.number)
        if run_id is None:
            run_id = start_trial_run(
                client, tracker.experiment_id, tracker.parent_run_id, trial_number=trial.number,
                tags={"cappuccino.study": study_name, "cappuccino.code_version": tracker.code_version,
                      "cappuccino.note": "run created after the trial ended; the trial had none"},
                params=dict(trial.params),
            )
            finish_trial_run(client, run_id, state, error)
            created += 1
            continue
        recorded = client.get_run(run_id).data.tags.get("cappuccino.state")
        if recorded != state:
            finish_trial_run(client, run_id, state, error if state != "COMPLETE" else None)
            closed += 1
    return {"created": created, "closed": closed}
