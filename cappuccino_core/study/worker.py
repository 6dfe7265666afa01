"""Run one study worker: optimise until the cap, an early stop, a trial budget or a timeout.

Several workers (processes or machines) may run this on the same study at once; the storage
enforces the hard cap (``cap.py``), the early-stop callback stops them all (``early_stop.py``).

Failures: an exception in the objective fails that trial only (``catch=(Exception,)``); its
type and message are stored in the trial's user attr ``error`` and the study goes on.
``KeyboardInterrupt``/``SystemExit`` are not caught: Optuna marks the running trial FAIL and
re-raises. ``TrialCapReached`` is raised by trial *creation* (``study.ask`` inside
``optimize``, or the stale-trial retry before it), never inside the objective, so
``catch=(Exception,)`` cannot turn it into a failed trial; it ends the worker cleanly with stop
reason ``cap``. (An objective that itself created trials and hit the cap would only fail its own
trial.)
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial

from cappuccino_core.study.cap import TrialCapReached
from cappuccino_core.study.early_stop import DiminishingReturns, EarlyStopCallback
from cappuccino_core.study.storage import STOP_REASON_ATTR, STOPPED_EARLY_ATTR

logger = logging.getLogger(__name__)

Objective = Callable[[optuna.Trial], float]
StudyCallback = Callable[[optuna.Study, FrozenTrial], None]
ERROR_ATTR = "error"
WORKER_ATTR = "worker"  # "<host>:<pid>" of the process running the trial (to fail a dead worker's trial)


def worker_id(pid: int | None = None) -> str:
    """The ``worker`` attr of trials run by process ``pid`` (default this one) on this host."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"
_MAX_ERROR_CHARS = 2000


class StopReason(StrEnum):
    """Why a worker stopped."""

    CAP = "cap"  # the study holds its cap of trials
    EARLY_STOP = "early_stop"  # the diminishing-returns rule (here or in another worker) fired
    MAX_TRIALS = "max_trials"  # this worker ran the trials it was asked for
    TIMEOUT = "timeout"  # this worker's time budget ran out
    ALREADY_STOPPED = "already_stopped"  # the study had stopped early before this worker started
    STOPPED = "stopped"  # a caller's callback called study.stop()


@dataclass(frozen=True)
class WorkerReport:
    """What one worker did: its trials by final state and why it stopped."""

    study_name: str
    trials_by_state: dict[str, int] = field(default_factory=dict)
    stop_reason: StopReason = StopReason.STOPPED
    detail: str = ""  # the cap message or the early-stop reason, when there is one
    seconds: float = 0.0

    @property
    def n_trials(self) -> int:
        """Number of trials this worker finished."""
        return sum(self.trials_by_state.values())

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        out = asdict(self)
        out["stop_reason"] = str(self.stop_reason)
        out["n_trials"] = self.n_trials
        return out


class _StateTally:
    """Callback that counts this worker's finished trials by state."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.counts[trial.state.name] += 1


def recording_errors(objective: Objective) -> Objective:
    """Wrap an objective so a failure's type and message land in the trial's ``error`` attr.

    Pruning (``optuna.TrialPruned``) is not an error and passes through untouched; every
    exception is re-raised after recording, so Optuna still fails the trial. A NaN or ``None``
    result (which Optuna fails with a warning only) is recorded too.
    """

    def wrapped(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, worker_id())
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr(ERROR_ATTR, f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS])
            raise
        if value is None or (isinstance(value, float) and math.isnan(value)):
            trial.set_user_attr(ERROR_ATTR, f"objective returned {value!r}")
        return value

    return wrapped


def run_worker(
    study: optuna.Study,
    objective: Objective,
    *,
    max_trials: int | None = None,
    timeout: float | None = None,
    early_stop: DiminishingReturns | None = None,
    callbacks: Sequence[StudyCallback] = (),
) -> WorkerReport:
    """Run trials of ``study`` in this process until the cap, early stop, ``max_trials`` or ``timeout``.

    Args:
        study: A study loaded with ``load_study`` (capped storage with heartbeats).
        objective: Returns the value to optimise; may raise ``optuna.TrialPruned``.
        max_trials: Most trials this worker runs (``None``: until the cap or a stop).
        timeout: Seconds after which no new trial starts (the running one finishes).
        early_stop: The diminishing-returns rule; ``None`` disables early stopping here.
        callbacks: Further Optuna callbacks, run after the early-stop check.
    """
    if max_trials is not None and max_trials < 1:
        raise ValueError(f"max_trials must be >= 1 or None, got {max_trials}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 or None, got {timeout}")
    started = time.monotonic()
    attrs = study.user_attrs
    if attrs.get(STOPPED_EARLY_ATTR):
        return WorkerReport(study.study_name, {}, StopReason.ALREADY_STOPPED, str(attrs.get(STOP_REASON_ATTR)))

    tally = _StateTally()
    stopper = EarlyStopCallback(early_stop) if early_stop is not None else None
    all_callbacks = [tally, *([stopper] if stopper is not None else []), *callbacks]

    def report(reason: StopReason, detail: str = "") -> WorkerReport:
        result = WorkerReport(study.study_name, dict(tally.counts), reason, detail, time.monotonic() - started)
        logger.info("study %r worker stopped (%s): %s", study.study_name, reason, result.trials_by_state)
        return result

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # fail_stale_trials is "experimental"
            try:
                optuna.storages.fail_stale_trials(study)  # crashed trials of earlier workers: FAIL (+ retry)
            except TrialCapReached as exc:
                # The stale trial is FAIL already; only its retry found no room (a queued grid can fill
                # the cap from the start). The queued trials still run below.
                logger.warning("study %r: a crashed trial was failed but not retried: %s", study.study_name, exc)
        study.optimize(
            recording_errors(objective),
            n_trials=max_trials,
            timeout=timeout,
            catch=(Exception,),
            callbacks=all_callbacks,
            gc_after_trial=False,
        )
    except TrialCapReached as exc:
        return report(StopReason.CAP, str(exc))
    if stopper is not None and stopper.stopped:
        return report(StopReason.EARLY_STOP, stopper.reason or "")
    if max_trials is not None and sum(tally.counts.values()) >= max_trials:
        return report(StopReason.MAX_TRIALS)
    if timeout is not None and time.monotonic() - started >= timeout:
        return report(StopReason.TIMEOUT)
    return report(StopReason.STOPPED)
