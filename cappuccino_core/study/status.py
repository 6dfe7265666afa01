"""Where a study stands: trials by state, best value, cap, early stop, crashed-looking trials."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from optuna.trial import TrialState

from cappuccino_core.study.cap import CAP_ATTR
from cappuccino_core.study.storage import (
    STOP_REASON_ATTR,
    STOPPED_EARLY_ATTR,
    StudyNotFound,
    open_storage,
    redact_url,
    sqlite_path,
    study_id_or_raise,
)

__all__ = ["StudyNotFound", "StudyStatus", "study_status"]

REPORTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)


@dataclass(frozen=True)
class StudyStatus:
    """A snapshot of one study read from its storage."""

    name: str
    storage: str  # the storage URL with any password hidden
    cap: int | None
    trials_by_state: dict[str, int]  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING (all present)
    total: int
    best_value: float | None  # None until a trial completes
    best_trial: int | None  # number of the best complete trial
    stopped_early: bool
    stop_reason: str | None
    running_stale: tuple[int, ...]  # RUNNING trials whose last heartbeat is older than the grace period

    @property
    def remaining(self) -> int | None:
        """Trials that may still be created before the cap (``None`` without a cap)."""
        return None if self.cap is None else max(self.cap - self.total, 0)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        out = asdict(self)
        out["running_stale"] = list(self.running_stale)
        out["remaining"] = self.remaining
        return out


def study_status(url: str, name: str, *, heartbeat_interval: int = 60, grace_period: int | None = None) -> StudyStatus:
    """Read the status of study ``name`` in the storage at ``url``.

    ``heartbeat_interval`` and ``grace_period`` must be the workers' values: a RUNNING trial is
    reported in ``running_stale`` when its heartbeat is older than the grace period (Optuna's
    own staleness test, the one the next worker uses to fail it). Nothing is written; a missing
    SQLite file raises ``StudyNotFound`` instead of being created.
    """
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise StudyNotFound(name, url)
    storage = open_storage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period, retry_stale=0)
    try:
        study_id = study_id_or_raise(storage, name, url)
        trials = storage.get_all_trials(study_id, deepcopy=False)
        attrs = storage.get_study_user_attrs(study_id)
        direction = storage.get_study_directions(study_id)[0]
        stale_ids = set(storage._get_stale_trial_ids(study_id))
    finally:
        storage.engine.dispose()
    counts = {state.name: 0 for state in REPORTED_STATES}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    pick = max if direction.name == "MAXIMIZE" else min
    best = pick(complete, key=lambda t: t.value) if complete else None
    return StudyStatus(
        name=name,
        storage=redact_url(url),
        cap=attrs.get(CAP_ATTR),
        trials_by_state=counts,
        total=len(trials),
        best_value=None if best is None else best.value,
        best_trial=None if best is None else best.number,
        stopped_early=bool(attrs.get(STOPPED_EARLY_ATTR, False)),
        stop_reason=attrs.get(STOP_REASON_ATTR),
        running_stale=tuple(sorted(t.number for t in trials if t._trial_id in stale_ids)),
    )
