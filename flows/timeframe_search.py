"""The ``timeframe-search`` flow (Phase 2): gate the data, search interval x lookback, record the choice."""

from __future__ import annotations

from datetime import datetime

from prefect import flow
from pydantic import BaseModel, Field

from cappuccino_core.clock import SystemClock
from cappuccino_core.config import RunOverrides, settings_for
from cappuccino_core.search import runner
from tasks.flow_runs import close_dead_runs, watched
from tasks.search import data_gate, finish_study, gate_record, plan_timeframe_study, prepare_study, run_trials, timeframe_choice


class TimeframeParams(BaseModel):
    trials: int | None = Field(None, ge=1, le=100, description="Trials (default from settings, at most 100).")
    workers: int = Field(1, ge=1, le=64, description="Worker processes on this machine.")
    study: str | None = Field(None, description="Study name (default timeframe-YYYYMMDD); an existing study resumes.")
    as_of: datetime | None = Field(None, description="Judge freshness as of this time (research on history).")
    allow_stale: bool = Field(False, description="Let stale (never broken) data pass; recorded.")
    overrides: RunOverrides = Field(default_factory=RunOverrides, description="Settings this run overrides (budget, market).")
    gated: dict | None = Field(None, description="The data gate's verdict when the calling flow judged the data already "
                                                "(the pipeline, retrain); without it this flow judges the data itself.")


class TimeframeReport(BaseModel):
    study: str
    gate: dict
    summary: dict
    choice: dict


@flow(name="timeframe-search")
def timeframe_search(params: TimeframeParams = TimeframeParams()) -> TimeframeReport:
    """Run Phase 2 and return its choice (interval, lookback, score, alternatives)."""
    settings = settings_for(params.overrides)
    close_dead_runs(settings.home)  # runs of this home whose process was killed end Crashed
    with watched(settings.home):  # this process is the run's until the body ends
        gate = params.gated or gate_record(data_gate(settings, params.as_of, params.allow_stale))
        loc = runner.StudyLocation.from_settings(settings)
        name = params.study or f"timeframe-{SystemClock().now():%Y%m%d}"
        spec = prepare_study(plan_timeframe_study(settings, name, params.trials), loc, settings)
        run_trials(loc, spec.name, settings, params.workers)
        summary = finish_study(loc, spec.name)
        choice = timeframe_choice(loc, spec.name)
        return TimeframeReport(study=spec.name, gate=gate, summary=summary.to_dict(), choice=choice.to_dict())
