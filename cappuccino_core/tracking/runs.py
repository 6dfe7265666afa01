"""Runs of the MLflow record: one parent run per (study, phase), one child run per trial.

Everything goes through an ``MlflowClient`` with explicit run ids: no ``mlflow.start_run``,
no active-run or active-experiment globals, so worker threads and processes can record trials
side by side. Values are written in as few ``log_batch`` calls as MLflow's limits allow.

Undefined numbers are recorded, never dropped: a metric whose value is ``None``, NaN or
infinite is not logged as a metric (MLflow would store NaN, and clamp infinities to the
largest float); instead the run gets the tag ``metric_undefined.<name>`` with the reason.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from enum import Enum
from numbers import Real
from pathlib import Path

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE
from mlflow.utils.validation import (
    MAX_ENTITIES_PER_BATCH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

STUDY_TAG = "cappuccino.study"
PHASE_TAG = "cappuccino.phase"
RUN_TYPE_TAG = "cappuccino.run_type"
TRIAL_TAG = "cappuccino.trial"
STATE_TAG = "cappuccino.state"
ERROR_TAG = "cappuccino.error"
UNDEFINED_PREFIX = "metric_undefined."
MAX_ERROR_CHARS = 5000
TRUNCATED_MARKER = "[truncated]"

NOTE_TAG = MLFLOW_RUN_NOTE
"""The tag MLflow's UI shows as the description of an experiment, a run (``mlflow.note.content``)."""
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
"""The tag MLflow 3's UI reads to choose an experiment's view (its GenAI view when unset)."""
MODEL_TRAINING_KIND = "custom_model_development"
"""The experiment kind of classic model training (the UI's runs table, charts and models)."""
FINISHED = RunStatus.to_string(RunStatus.FINISHED)
FAILED = RunStatus.to_string(RunStatus.FAILED)
RUNNING = RunStatus.to_string(RunStatus.RUNNING)

#: Trial state -> MLflow run status.
TRIAL_STATES: dict[str, str] = {
    "COMPLETE": RunStatus.to_string(RunStatus.FINISHED),
    "PRUNED": RunStatus.to_string(RunStatus.KILLED),
    "FAIL": RunStatus.to_string(RunStatus.FAILED),
}


def get_or_create_experiment(client: MlflowClient, name: str, artifact_location: str | None, *,
                             description: str) -> str:
    """Return the id of experiment ``name``, creating it (race-safe) if it does not exist.

    The experiment carries ``description`` (``mlflow.note.content``, the UI's description) and
    is marked as a model-training experiment (``mlflow.experimentKind`` =
    ``custom_model_development``), so MLflow 3's UI opens it on its runs rather than its GenAI
    view. An existing experiment that lacks either tag, or has another description, gets them.

    Raises:
        ValueError: the experiment exists but is deleted (restore it or choose another name).
    """
    wanted = {NOTE_TAG: description, EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND}
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location, tags=wanted)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)  # another worker created it first
            if experiment is None:
                raise
    if experiment.lifecycle_stage != "active":
        raise ValueError(f"MLflow experiment {name!r} ({experiment.experiment_id}) is deleted: restore it or use another name")
    for key, value in wanted.items():
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def get_or_create_parent_run(
    client: MlflowClient, experiment_id: str, *, study: str, phase: str, tags: Mapping[str, str],
    description: str | None = None,
) -> str:
    """Return the parent run of ``(study, phase)``, creating it (RUNNING) on first use; a restarted study reuses it.

    Finding a run never changes its status: the code that runs trials under it calls
    ``reopen_run`` first and ``end_run`` when it is done, so the parent of a finished study
    stays FINISHED when it is only read. Call it once before workers start (like the store):
    two callers racing could both create one.

    Raises:
        LookupError: more than one active parent run carries these tags (ids named).
    """
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_TYPE_TAG}` = 'parent' and tags.`{STUDY_TAG}` = {_quote(study)} "
        f"and tags.`{PHASE_TAG}` = {_quote(phase)}",
        max_results=2,
    )
    if len(found) > 1:
        raise LookupError(
            f"study {study!r} phase {phase!r} has several parent runs "
            f"({', '.join(r.info.run_id for r in found)}): delete the extra ones"
        )
    if found:
        return found[0].info.run_id
    own = {RUN_TYPE_TAG: "parent", STUDY_TAG: study, PHASE_TAG: phase}
    if description is not None:
        own[NOTE_TAG] = description
    run = client.create_run(experiment_id, run_name=f"{study}/{phase}", tags=_merge_tags(tags, own))
    return run.info.run_id


def reopen_run(client: MlflowClient, run_id: str) -> None:
    """Mark a run RUNNING again (a resumed study's parent while its trials run); no-op if it is running."""
    if client.get_run(run_id).info.status != RUNNING:
        client.update_run(run_id, status=RUNNING)


def end_run(client: MlflowClient, run_id: str, *, failed: bool = False) -> None:
    """End a run FINISHED (or FAILED), its end time never before its start time.

    A run that was reopened keeps its first start time; MLflow's ``set_terminated`` stamps the
    current time as the end, which is after it.
    """
    client.set_terminated(run_id, status=FAILED if failed else FINISHED)


def start_trial_run(
    client: MlflowClient,
    experiment_id: str,
    parent_run_id: str,
    *,
    trial_number: int,
    tags: Mapping[str, str],
    params: Mapping[str, object],
) -> str:
    """Create the child run of one trial (status RUNNING) and log its params in one batch.

    Param values are stringified (dicts, lists and tuples as JSON).

    Raises:
        ValueError: a param value is longer than MLflow's limit (it is never truncated).
    """
    as_params = [Param(key, _param_value(key, value)) for key, value in params.items()]
    own = {
        MLFLOW_PARENT_RUN_ID: parent_run_id,
        RUN_TYPE_TAG: "trial",
        TRIAL_TAG: str(trial_number),
        STATE_TAG: "RUNNING",
    }
    run = client.create_run(experiment_id, run_name=f"trial-{trial_number:04d}", tags=_merge_tags(tags, own))
    _log_batch(client, run.info.run_id, params=as_params)
    return run.info.run_id


def find_trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str, trial_number: int) -> str | None:
    """Return the run id of trial ``trial_number`` under the parent, or None if it has none.

    Raises:
        LookupError: the trial has several active runs (ids named).
    """
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = {_quote(parent_run_id)} "
        f"and tags.`{TRIAL_TAG}` = '{int(trial_number)}'",
        max_results=2,
    )
    if len(found) > 1:
        raise LookupError(f"trial {trial_number} has several runs: {', '.join(r.info.run_id for r in found)}")
    return found[0].info.run_id if found else None


def log_metrics(
    client: MlflowClient,
    run_id: str,
    metrics: Mapping[str, float | None],
    step: int | None = None,
    *,
    reasons: Mapping[str, str] | None = None,
) -> None:
    """Log ``metrics`` in one batch; an undefined value becomes the tag ``metric_undefined.<name>``.

    Args:
        metrics: name -> value; ``None``, NaN and +/-inf are undefined.
        step: MLflow step (default 0).
        reasons: optional name -> why the value is undefined (e.g. "no trades"); the tag
            value is this reason, else ``"undefined"`` for None or ``"nan"``/``"inf"``/``"-inf"``.
    """
    timestamp = _now_ms()
    good: list[Metric] = []
    undefined: list[RunTag] = []
    for key, value in metrics.items():
        number = _as_number(key, value)
        if number is None or not math.isfinite(number):
            reason = (reasons or {}).get(key) or ("undefined" if number is None else str(number))
            undefined.append(RunTag(UNDEFINED_PREFIX + key, reason))
        else:
            good.append(Metric(key, number, timestamp, step or 0))
    _log_batch(client, run_id, metrics=good, tags=undefined)


def log_params_and_tags(client: MlflowClient, run_id: str, params: Mapping[str, str], tags: Mapping[str, str]) -> None:
    """Log ``params`` and ``tags`` on run ``run_id`` in one batch (values as given, already strings)."""
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])


def log_curve(client: MlflowClient, run_id: str, key: str, points: Sequence[tuple[int, float]]) -> None:
    """Log a learning curve ``[(step, value), ...]`` as step metrics, 1000 per batch (MLflow's cap).

    Undefined points (None, NaN, +/-inf) are not logged as metrics; their steps are listed in
    the tag ``metric_undefined.<key>`` instead.
    """
    timestamp = _now_ms()
    good: list[Metric] = []
    bad_steps: list[str] = []
    for step, value in points:
        number = _as_number(key, value)
        if number is None or not math.isfinite(number):
            bad_steps.append(f"{int(step)}:{number}")
        else:
            good.append(Metric(key, number, timestamp, int(step)))
    tags = []
    if bad_steps:
        shown = ", ".join(bad_steps[:100])
        more = f" {TRUNCATED_MARKER} {len(bad_steps) - 100} more" if len(bad_steps) > 100 else ""
        tags.append(RunTag(UNDEFINED_PREFIX + key, f"undefined at step:value {shown}{more}"))
    _log_batch(client, run_id, metrics=good, tags=tags)


def finish_trial_run(client: MlflowClient, run_id: str, state: str, error: str | None = None) -> None:
    """End a trial run: COMPLETE -> FINISHED, PRUNED -> KILLED, FAIL -> FAILED; tag state and error.

    The error is kept as tag ``cappuccino.error``, cut to 5000 characters with an explicit
    ``[truncated]`` marker when longer.

    Raises:
        ValueError: ``state`` is not COMPLETE, PRUNED or FAIL.
    """
    if state not in TRIAL_STATES:
        raise ValueError(f"trial state must be one of {sorted(TRIAL_STATES)}, got {state!r}")
    tags = [RunTag(STATE_TAG, state)]
    if error is not None:
        tags.append(RunTag(ERROR_TAG, truncate_text(error, MAX_ERROR_CHARS)))
    _log_batch(client, run_id, tags=tags)
    client.set_terminated(run_id, status=TRIAL_STATES[state])


def log_artifact_dir(client: MlflowClient, run_id: str, local_dir: Path, artifact_path: str) -> None:
    """Upload every file under ``local_dir`` to ``<run artifacts>/<artifact_path>/``.

    Raises:
        NotADirectoryError: ``local_dir`` is not a directory.
    """
    if not Path(local_dir).is_dir():
        raise NotADirectoryError(f"artifact directory {local_dir} does not exist")
    client.log_artifacts(run_id, str(local_dir), artifact_path)


def log_file(client: MlflowClient, run_id: str, path: Path, artifact_path: str | None = None) -> None:
    """Upload one file to the run's artifacts (under ``artifact_path`` if given).

    Raises:
        FileNotFoundError: ``path`` is not a file.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"artifact file {path} does not exist")
    client.log_artifact(run_id, str(path), artifact_path)


def set_summary(
    client: MlflowClient, run_id: str, *, metrics: Mapping[str, float | None], tags: Mapping[str, str]
) -> None:
    """Write a parent run's summary: metrics (undefined ones as tags, see ``log_metrics``) and tags."""
    log_metrics(client, run_id, metrics)
    _log_batch(client, run_id, tags=[RunTag(key, value) for key, value in _checked_tags(tags).items()])


def truncate_text(text: str, limit: int) -> str:
    """Return ``text`` if it fits in ``limit`` characters, else its head ending in ``[truncated]``."""
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATED_MARKER) - 1] + " " + TRUNCATED_MARKER


def _log_batch(
    client: MlflowClient,
    run_id: str,
    *,
    metrics: Sequence[Metric] = (),
    params: Sequence[Param] = (),
    tags: Sequence[RunTag] = (),
) -> None:
    """Send values in as few ``log_batch`` calls as MLflow's per-batch limits allow."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    while metrics or params or tags:
        batch_params, params = params[:MAX_PARAMS_TAGS_PER_BATCH], params[MAX_PARAMS_TAGS_PER_BATCH:]
        batch_tags, tags = tags[:MAX_PARAMS_TAGS_PER_BATCH], tags[MAX_PARAMS_TAGS_PER_BATCH:]
        room = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(batch_params) - len(batch_tags))
        batch_metrics, metrics = metrics[:room], metrics[room:]
        client.log_batch(run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags)


def _merge_tags(given: Mapping[str, str], own: Mapping[str, str]) -> dict[str, str]:
    """The caller's tags plus ours; a caller tag that contradicts one of ours is refused."""
    clash = sorted(k for k in own if k in given and str(given[k]) != own[k])
    if clash:
        raise ValueError(f"tags {clash} are set by Cappuccino's run record and cannot be given other values")
    return {**_checked_tags(given), **own}


def _checked_tags(tags: Mapping[str, object]) -> dict[str, str]:
    """Stringify tag values; refuse one over MLflow's limit (MLflow would cut it silently)."""
    out = {key: str(value) for key, value in tags.items()}
    for key, value in out.items():
        if len(value) > MAX_TAG_VAL_LENGTH:
            raise ValueError(f"tag {key!r} is {len(value)} characters, over MLflow's limit of {MAX_TAG_VAL_LENGTH}")
    return out


def _param_value(key: str, value: object) -> str:
    if isinstance(value, Enum):
        text = str(value.value)
    elif isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    if len(text) > MAX_PARAM_VAL_LENGTH:
        raise ValueError(
            f"param {key!r} is {len(text)} characters, over MLflow's limit of {MAX_PARAM_VAL_LENGTH}: "
            "log it as an artifact instead"
        )
    return text


def _as_number(key: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"metric {key!r} must be a real number or None, got {type(value).__name__}: {value!r}")
    return float(value)


def _quote(value: str) -> str:
    """Quote a value for an MLflow filter string (which has no escape for quotes)."""
    if "'" in value:
        raise ValueError(f"value {value!r} contains a single quote, which MLflow filter strings cannot express")
    return f"'{value}'"


def _now_ms() -> int:
    # Metric timestamps are bookkeeping for the MLflow UI, not inputs to any decision.
    return int(time.time() * 1000)
