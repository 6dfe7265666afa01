"""The ``train`` flow (Phase 3) and ``retrain`` (Phase 2 then Phase 3, the weekly deployment)."""

from __future__ import annotations

from datetime import datetime

from prefect import flow
from pydantic import BaseModel, Field

from cappuccino_core.clock import SystemClock
from cappuccino_core.config import RunOverrides, settings_for
from cappuccino_core.search import runner
from flows.timeframe_search import TimeframeParams, timeframe_search
from tasks.flow_runs import close_dead_runs, watched
from tasks.search import (
    data_gate,
    finish_study,
    gate_record,
    plan_training_study,
    prepare_study,
    register_candidates,
    run_trials,
)


class TrainParams(BaseModel):
    trials: int | None = Field(None, ge=1, le=1000, description="Hard cap on trials (default from settings, at most 1000).")
    workers: int = Field(1, ge=1, le=64, description="Worker processes on this machine.")
    study: str | None = Field(None, description="Study name (default train-YYYYMMDD); an existing study resumes.")
    timeframe_study: str | None = Field(None, description="Phase 2 study to take interval and lookback from (default: latest).")
    as_of: datetime | None = Field(None, description="Judge freshness as of this time (research on history).")
    allow_stale: bool = Field(False, description="Let stale (never broken) data pass; recorded.")
    overrides: RunOverrides = Field(default_factory=RunOverrides, description="Settings this run overrides (budget, market).")
    gated: dict | None = Field(None, description="The data gate's verdict when the calling flow judged the data already "
                                                "(the pipeline, retrain); without it this flow judges the data itself.")


class TrainReport(BaseModel):
    study: str
    gate: dict
    summary: dict
    candidates: list[dict]
    selection: dict = {}


@flow(name="train")
def train(params: TrainParams = TrainParams()) -> TrainReport:
    """Gate the data, run the training study on Phase 2's timeframe, summarise, register the best."""
    settings = settings_for(params.overrides)
    close_dead_runs(settings.home)  # runs of this home whose process was killed end Crashed
    with watched(settings.home):  # this process is the run's until the body ends
        gate = params.gated or gate_record(data_gate(settings, params.as_of, params.allow_stale))
        loc = runner.StudyLocation.from_settings(settings)
        name = params.study or f"train-{SystemClock().now():%Y%m%d}"
        spec = plan_training_study(settings, loc, params.timeframe_study, name, params.trials)
        spec = prepare_study(spec, loc, settings)
        run_trials(loc, spec.name, settings, params.workers)
        summary = finish_study(loc, spec.name)
        selected = register_candidates(loc, spec.name, settings).to_dict()
        return TrainReport(study=spec.name, gate=gate, summary=summary.to_dict(),
                           candidates=selected.pop("candidates"), selection=selected)


class RetrainParams(BaseModel):
    timeframe_trials: int | None = Field(None, ge=1, le=100)
    trials: int | None = Field(None, ge=1, le=1000)
    workers: int = Field(1, ge=1, le=64)
    overrides: RunOverrides = Field(default_factory=RunOverrides, description="Settings this run overrides (budget, market).")


@flow(name="retrain")
def retrain(params: RetrainParams = RetrainParams()) -> TrainReport:
    """Weekly: a fresh timeframe search, then a training study on its choice."""
    found = timeframe_search(TimeframeParams(trials=params.timeframe_trials, workers=params.workers,
                                             overrides=params.overrides))
    return train(TrainParams(trials=params.trials, workers=params.workers, timeframe_study=found.study,
                             overrides=params.overrides, gated=found.gate))
