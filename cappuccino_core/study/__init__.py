"""Optuna study machinery: a hard trial cap, early stop, crash-safe workers and status.

Prepare a study once (``prepare_study``), then start any number of workers, each with
``run_worker(load_study(...), objective, ...)``; read progress with ``study_status``.
"""

from cappuccino_core.study.cap import CappedRDBStorage, TrialCapReached
from cappuccino_core.study.early_stop import DiminishingReturns, EarlyStopCallback
from cappuccino_core.study.status import StudyStatus, study_status
from cappuccino_core.study.storage import (
    StudyNotFound,
    default_storage_url,
    load_study,
    open_storage,
    prepare_study,
)
from cappuccino_core.study.worker import StopReason, WorkerReport, run_worker

__all__ = [
    "CappedRDBStorage",
    "DiminishingReturns",
    "EarlyStopCallback",
    "StopReason",
    "StudyNotFound",
    "StudyStatus",
    "TrialCapReached",
    "WorkerReport",
    "default_storage_url",
    "load_study",
    "open_storage",
    "prepare_study",
    "run_worker",
    "study_status",
]
