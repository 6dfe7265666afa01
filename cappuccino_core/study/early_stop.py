"""Stop a study when more trials stop paying: a diminishing-returns rule and its Optuna callback."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from cappuccino_core.study.cap import capped_backend
from cappuccino_core.study.storage import STOP_REASON_ATTR, STOPPED_EARLY_ATTR


class DiminishingReturns:
    """Stop when the last ``patience`` completed trials did not beat the earlier best by ``min_delta``.

    Only COMPLETE trials count (pruned and failed trials carry no final value), taken in the
    order they completed (``datetime_complete``, then trial number). With ``C`` that sequence,
    the *window* is its last ``patience`` trials and *before* is everything earlier.
    The improvement is ``best(window) - best(before)`` when maximising and
    ``best(before) - best(window)`` when minimising; the study has *improved* when that
    improvement is at least ``min_delta`` (exactly ``min_delta`` counts as improved).
    ``check`` returns a reason when it has not improved, and never before there are
    ``max(min_trials, patience + 1)`` complete trials (``before`` must not be empty).

    Args:
        patience: Number of most recent complete trials that must bring an improvement.
        min_delta: Smallest improvement that counts, in objective units; must be > 0.
        min_trials: Never stop before this many complete trials.
    """

    def __init__(self, patience: int, min_delta: float, min_trials: int) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        if not min_delta > 0:
            raise ValueError(f"min_delta must be > 0, got {min_delta}")
        if min_trials < 1:
            raise ValueError(f"min_trials must be >= 1, got {min_trials}")
        self.patience = patience
        self.min_delta = min_delta
        self.min_trials = min_trials

    def check(self, trials: Sequence[FrozenTrial], direction: StudyDirection) -> str | None:
        """Return why the study should stop, or ``None`` to continue."""
        if direction not in (StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE):
            raise ValueError(f"direction must be MAXIMIZE or MINIMIZE, got {direction}")
        complete = sorted(
            (t for t in trials if t.state == TrialState.COMPLETE),
            key=lambda t: (t.datetime_complete, t.number),
        )
        if len(complete) < max(self.min_trials, self.patience + 1):
            return None
        pick = max if direction == StudyDirection.MAXIMIZE else min
        best_before = pick(_value(t) for t in complete[: -self.patience])
        best_window = pick(_value(t) for t in complete[-self.patience :])
        improvement = best_window - best_before if direction == StudyDirection.MAXIMIZE else best_before - best_window
        if improvement >= self.min_delta:
            return None
        return (
            f"diminishing returns: the last {self.patience} complete trials improved the best value "
            f"by {improvement:.6g} (< min_delta {self.min_delta:g}; best before {best_before:.6g}, "
            f"best since {best_window:.6g}, {len(complete)} complete trials)"
        )


def _value(trial: FrozenTrial) -> float:
    if trial.value is None:
        raise ValueError(f"complete trial {trial.number} has no value (multi-objective studies are not supported)")
    return trial.value


class EarlyStopCallback:
    """Optuna callback: after each finished trial, stop the study if ``rule`` says so.

    It re-reads the study's trials from storage (all workers' trials count) and the study's
    user attrs: when another worker has already stopped the study, this worker stops too.
    On a reason it records ``stop_reason`` then ``stopped_early=True`` in the study's user attrs
    (first writer wins, under the storage's study lock when the storage is capped) and calls
    ``study.stop()``. A worker finishes the trial it is running before it notices.
    """

    def __init__(self, rule: DiminishingReturns) -> None:
        self.rule = rule
        self.reason: str | None = None

    @property
    def stopped(self) -> bool:
        """Whether this callback stopped its worker's optimisation loop."""
        return self.reason is not None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Check the rule against the stored trials; stop the study on a reason."""
        attrs = study.user_attrs
        if attrs.get(STOPPED_EARLY_ATTR):
            self.reason = str(attrs.get(STOP_REASON_ATTR))
            study.stop()
            return
        reason = self.rule.check(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), study.direction)
        if reason is None:
            return
        self.reason = mark_stopped(study, reason)
        study.stop()


def mark_stopped(study: optuna.Study, reason: str) -> str:
    """Record that the study stopped early, unless already recorded; return the stored reason."""
    backend = capped_backend(study)
    with backend.study_lock(study._study_id) if backend is not None else nullcontext():
        attrs = study.user_attrs
        if attrs.get(STOPPED_EARLY_ATTR):
            return str(attrs.get(STOP_REASON_ATTR))
        # Reason first: whoever sees stopped_early=True also finds a reason.
        study.set_user_attr(STOP_REASON_ATTR, reason)
        study.set_user_attr(STOPPED_EARLY_ATTR, True)
        return reason
