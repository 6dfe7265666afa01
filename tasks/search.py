"""Thin Prefect tasks over the search core. A study is one coarse task (many trials inside it):
the Prefect server never sees thousands of tiny task runs (STACK-NOTES: SQLite server bursts).
Retries only where there is I/O to the tracking store; training is never retried blindly.
"""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NONE

from cappuccino_core.clock import SystemClock
from cappuccino_core.config import Settings
from cappuccino_core.data.freshness import FreshnessVerdict
from cappuccino_core.data.store import BarStore
from cappuccino_core.search import runner
from cappuccino_core.search.gate import require_training_data
from cappuccino_core.search.candidates import CandidateSelection
from cappuccino_core.search.candidates import register_candidates as register_validated
from cappuccino_core.search.spec import StudySpec
from cappuccino_core.search.timeframe import TimeframeChoice
from cappuccino_core.search.summary import StudySummary
from tasks.retry import retry_on


@task(cache_policy=NONE)
def data_gate(settings: Settings, as_of: datetime | None, allow_stale: bool) -> FreshnessVerdict:
    """Refuse stale or broken data (raises ``StaleDataError``); return the verdict for the record."""
    return require_training_data(settings, SystemClock().now(), as_of=as_of, allow_stale=allow_stale)


@task(cache_policy=NONE)
def plan_timeframe_study(settings: Settings, name: str, trials: int | None) -> StudySpec:
    """Phase 2's spec from the settings and the stored bars (the split is planned on them)."""
    return runner.timeframe_spec(settings, BarStore(settings.bars_dir), name, trials=trials)


@task(cache_policy=NONE)
def plan_training_study(settings: Settings, loc: runner.StudyLocation, timeframe_study: str | None, name: str,
                        trials: int | None) -> StudySpec:
    """Phase 3's spec on the choice of ``timeframe_study`` (default: the latest timeframe study with a choice)."""
    timeframe_name = timeframe_study or runner.latest_timeframe_study(loc)
    choice = runner.timeframe_choice(loc, timeframe_name)
    return runner.training_spec(settings, choice, runner.require_spec(loc, timeframe_name), name, trials=trials)


@task(cache_policy=NONE)
def timeframe_choice(loc: runner.StudyLocation, name: str) -> TimeframeChoice:
    """The interval and lookback timeframe study ``name`` chose (recorded by ``finish``)."""
    return runner.timeframe_choice(loc, name)


@task(cache_policy=NONE)
def study_spec(loc: runner.StudyLocation, name: str) -> StudySpec:
    """The stored spec of study ``name`` (raises ``StudyError`` when there is none)."""
    return runner.require_spec(loc, name)


def gate_record(verdict: FreshnessVerdict) -> dict[str, object]:
    """The verdict as a flow report records it (JSON)."""
    return {"ok": verdict.ok, "message": verdict.message}


@task(cache_policy=NONE, retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on(ConnectionError, TimeoutError))
def prepare_study(spec: StudySpec, loc: runner.StudyLocation, settings: Settings) -> StudySpec:
    """Create the MLflow store, study and parent run once; return the spec in force."""
    return runner.prepare(spec, loc, BarStore(settings.bars_dir))


@task(cache_policy=NONE, task_run_name="trials-{name}")
def run_trials(loc: runner.StudyLocation, name: str, settings: Settings, workers: int) -> list[dict]:
    """Run the study's trials: here with one worker, else in ``workers`` processes (parent run FAILED if they fail)."""
    return runner.run_trials(loc, name, BarStore(settings.bars_dir), workers)


@task(cache_policy=NONE, retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on(ConnectionError, TimeoutError))
def finish_study(loc: runner.StudyLocation, name: str) -> StudySummary:
    """Reconcile MLflow with Optuna and record the study summary."""
    return runner.finish(loc, name)


@task(cache_policy=NONE)
def register_candidates(loc: runner.StudyLocation, name: str, settings: Settings) -> CandidateSelection:
    """Register the validated networks of the best trials with evidence of an edge."""
    spec = runner.require_spec(loc, name)
    study = runner.read_study(loc, name)
    return register_validated(study, spec, runner.open_tracker(spec, loc))
