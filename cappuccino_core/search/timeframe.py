"""Phase 2's result: the interval and lookback Phase 3 trains on, with the alternatives.

Trials are grouped by (interval, lookback) cell (the search is a grid: every cell gets the same
seeds, ``runner.enqueue_grid``, and is validated on the same time spans) and the cell with the
best *mean* score of its complete trials wins: one lucky seed should not pick the timeframe.
Ties go to the cell with more trials, then the longer interval (cheaper to train and trade).
Every cell's mean, standard deviation and trial count are kept with the choice, and
``margin_in_stderr`` says how far the winner's mean lies above the runner-up's in units of
the standard error of that difference: below about 2 the two are not told apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from cappuccino_core.data.intervals import Interval


class NoTimeframeError(RuntimeError):
    """The timeframe study has no complete trial to choose from."""


@dataclass(frozen=True)
class Alternative:
    interval: str
    lookback: int
    mean_score: float
    best_score: float
    trials: int
    std_score: float | None = None


@dataclass(frozen=True)
class TimeframeChoice:
    """The chosen combination and every alternative, best first."""

    study: str
    interval: Interval
    lookback: int
    score: float
    alternatives: tuple[Alternative, ...]
    trials: int
    margin_in_stderr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "interval": str(self.interval), "lookback": self.lookback, "score": self.score,
                "trials": self.trials, "alternatives": [asdict(a) for a in self.alternatives],
                "margin_in_stderr": self.margin_in_stderr}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimeframeChoice:
        return cls(data["study"], Interval(data["interval"]), int(data["lookback"]), float(data["score"]),
                   tuple(Alternative(**a) for a in data["alternatives"]), int(data["trials"]),
                   data.get("margin_in_stderr"))


def choose_timeframe(study: optuna.Study) -> TimeframeChoice:
    trials = study.get_trials(deepcopy=False)
    groups: dict[tuple[str, int], list[float]] = {}
    for t in trials:
        if t.state is TrialState.COMPLETE:
            groups.setdefault((t.params["interval"], int(t.params["lookback"])), []).append(float(t.value))
    if not groups:
        raise NoTimeframeError(f"timeframe study {study.study_name!r} has no complete trial ({len(trials)} trials in all)")
    alternatives = sorted(
        (Alternative(i, lb, float(np.mean(v)), float(np.max(v)), len(v), float(np.std(v, ddof=1)) if len(v) > 1 else None)
         for (i, lb), v in groups.items()),
        key=lambda a: (a.mean_score, a.trials, Interval(a.interval).seconds), reverse=True,
    )
    best = alternatives[0]
    return TimeframeChoice(study.study_name, Interval(best.interval), best.lookback, best.mean_score, tuple(alternatives),
                           len(trials), _margin(best, alternatives[1]) if len(alternatives) > 1 else None)


def _margin(best: Alternative, second: Alternative) -> float | None:
    """(best mean - runner-up mean) / standard error of the difference; None without two seeds in each."""
    if best.std_score is None or second.std_score is None:
        return None
    stderr = float(np.sqrt(best.std_score**2 / best.trials + second.std_score**2 / second.trials))
    return None if stderr == 0.0 else (best.mean_score - second.mean_score) / stderr
