"""Where studies live and how to find one: cheap to import (no training, MLflow or plots).

The command line's views (``status``, ``train status``) and the arena read studies through
these; ``runner`` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from cappuccino_core.config import Settings
from cappuccino_core.study.storage import default_storage_url, sqlite_path
from cappuccino_core.tracking.store import experiment_artifact_location, tracking_uri

if TYPE_CHECKING:  # a spec holds the PPO and env configs (torch): read only when a spec is asked for
    from cappuccino_core.search.spec import StudySpec

SPEC_ATTR = "spec"
CHOICE_ATTR = "timeframe_choice"


class StudyError(RuntimeError):
    """A study cannot be prepared or run (the message says why)."""


@dataclass(frozen=True)
class StudyLocation:
    """Where studies and their record live."""

    storage_url: str
    tracking_uri: str
    home: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> StudyLocation:
        home = settings.home
        return cls(settings.study_storage or default_storage_url(home), tracking_uri(home), home)

    @property
    def artifact_location(self) -> str | None:
        return experiment_artifact_location(self.tracking_uri, self.home)


def stored_spec(loc: StudyLocation, name: str) -> StudySpec | None:
    path = sqlite_path(loc.storage_url)
    if path is not None and not path.exists():
        return None  # do not create an empty database just to look
    try:
        study = read_study(loc, name)
    except KeyError:
        return None
    from cappuccino_core.search.spec import StudySpec

    text = study.user_attrs.get(SPEC_ATTR)
    if text is None:
        raise StudyError(f"study {name!r} in {loc.storage_url} was not made by cappuccino (no spec)")
    return StudySpec.from_json(text)


def require_spec(loc: StudyLocation, name: str) -> StudySpec:
    spec = stored_spec(loc, name)
    if spec is None:
        raise StudyError(f"no study named {name!r} in {loc.storage_url}")
    return spec


def read_study(loc: StudyLocation, name: str) -> optuna.Study:
    """The study for reading and recording (no sampler, no worker slot)."""
    return optuna.load_study(study_name=name, storage=loc.storage_url)


def latest_study(loc: StudyLocation, kind: str, *, with_attr: str | None = None) -> str:
    """The most recently started study of ``kind`` ("timeframe" or "training"), optionally holding ``with_attr``."""
    path = sqlite_path(loc.storage_url)
    if path is not None and not path.exists():
        raise StudyError(f"no studies yet ({loc.storage_url} does not exist)")
    found = [(s.datetime_start or datetime.min, s.study_name) for s in optuna.get_all_study_summaries(loc.storage_url)
             if s.user_attrs.get("kind") == kind and (with_attr is None or with_attr in s.user_attrs)]
    if not found:
        raise StudyError(f"no {kind} study in {loc.storage_url}")
    return max(found)[1]


def summary_path(loc: StudyLocation, name: str) -> Path:
    """Where ``runner.finish`` writes the summary of study ``name``: it exists once the study finished."""
    return loc.home / "studies" / name / "summary.json"


def study_state(loc: StudyLocation, name: str, *, running: int, stopped_early: bool) -> str:
    """Say where study ``name`` stands: running, stopped early, finished, or idle (interrupted; the same command resumes it)."""
    if running:
        return "running"
    if stopped_early:
        return "stopped early"
    return "finished" if summary_path(loc, name).exists() else "idle"


def top_trials(loc: StudyLocation, name: str, n: int) -> list[dict[str, Any]]:
    """Return the ``n`` best complete trials of study ``name``, best first: number, value, seconds, params."""
    trials = read_study(loc, name).get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    best = sorted((t for t in trials if t.value is not None), key=lambda t: t.value, reverse=True)[:n]
    return [{"trial": t.number, "value": t.value, "params": dict(t.params),
             "seconds": None if t.duration is None else t.duration.total_seconds()} for t in best]


def trial_detail(loc: StudyLocation, name: str, number: int) -> dict[str, Any]:
    """Return trial ``number`` of study ``name``: state, value, times, parameters, recorded attributes.

    Raises:
        LookupError: the study has no such trial.
    """
    trials = read_study(loc, name).get_trials(deepcopy=False)
    found = next((t for t in trials if t.number == number), None)
    if found is None:
        raise LookupError(f"study {name!r} has no trial {number} (it has {len(trials)} trials, numbered from 0)")
    return {"trial": found.number, "state": found.state.name.lower(), "value": found.value,
            "started": None if found.datetime_start is None else found.datetime_start.isoformat(),
            "seconds": None if found.duration is None else found.duration.total_seconds(),
            "params": dict(found.params), "attrs": dict(found.user_attrs)}
