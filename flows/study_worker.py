"""The ``study-worker`` flow: one more worker on an existing study, on whatever machine runs it.

Scale-out without a scheduler of our own: the study (Optuna on PostgreSQL) and its record
(MLflow) are shared; each Prefect process worker that picks up a ``study-worker`` flow run
joins the study and runs trials until the study's hard cap (``CappedRDBStorage``: trial
creation under a PostgreSQL advisory lock), its early stop, or this run's own limits. The
study must have been prepared first (``cappuccino train`` or the ``train`` flow): a worker
never creates or redefines a study, and refuses bars whose hash differs from the study's.

Where things are comes from the worker machine's settings: ``CAPPUCCINO_STUDY_STORAGE``
(the Optuna database), ``MLFLOW_TRACKING_URI`` and ``CAPPUCCINO_HOME`` (its bar store).
"""

from __future__ import annotations

import os
import socket
from typing import Annotated, Any

from prefect import flow
from pydantic import BaseModel, Field

from cappuccino_core.config import load_settings
from cappuccino_core.search import runner
from cappuccino_core.study.storage import redact_url
from tasks.search import study_spec
from tasks.study_worker import run_study_trials


class StudyWorkerReport(BaseModel):
    """What this worker did, and where."""

    study: str
    kind: str
    cap: int
    storage: str
    host: str
    pid: int
    worker: dict[str, Any]


@flow(name="study-worker", validate_parameters=True)
def study_worker(
    study: Annotated[str, Field(min_length=1)],
    max_trials: Annotated[int | None, Field(ge=1)] = None,
    timeout_seconds: Annotated[float | None, Field(gt=0)] = None,
) -> StudyWorkerReport:
    """Join the existing study and run its trials until the cap, an early stop, or this run's limits.

    Parameters are flat so a run is started with ``-p study=NAME`` (``prefect deployment run``).

    Args:
        study: Name of an existing study (made by `cappuccino train` or the train flow).
        max_trials: Most trials this worker runs (default: until the study's cap or early stop).
        timeout_seconds: Start no new trial after this many seconds (default: no limit).

    Raises:
        StudyError: no study of that name in the configured storage (prepare it first).
    """
    settings = load_settings()
    loc = runner.StudyLocation.from_settings(settings)
    spec = study_spec(loc, study)
    worker = run_study_trials(loc, spec.name, settings.bars_dir, max_trials, timeout_seconds)
    return StudyWorkerReport(study=spec.name, kind=str(spec.kind), cap=spec.cap, storage=redact_url(loc.storage_url),
                             host=socket.gethostname(), pid=os.getpid(), worker=worker.to_dict())
