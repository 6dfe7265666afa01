"""The ``pipeline`` flow: the whole walk from bars to a green-light decision, one stage after another.

    ingest → freshness gate → timeframe search → training study → tournament
           → sandbox (offline: replay) → promotion → green light → report

Each stage is a subflow or task with typed inputs and outputs. A stage that fails stops the run
with ``PipelineStageError`` naming the stage and the cause; what earlier stages stored (bars,
studies, registered models, the arena, sandbox runs and journals) stays as it is, and re-running
with the same ``name`` resumes: a finished study runs no more trials, candidates are registered
once, the arena plays only new matches, and replayed bars are not traded twice.

**Offline** (the history ends with a replay period: ``replay_weeks`` > 0, as on the embedded
synthetic market) the promoted models paper-trade the replay bars that neither the search nor
the arena saw: sandbox for ``sandbox_days``, head-to-head promotion, paper production, then
the green light on the production model's last 2 days (``cappuccino_core.pipeline.replay``).
**Online** (no replay period, e.g. Alpaca data up to now) the promoted models enter the real
sandbox, which the scheduled deployments step bar by bar; the green light is judged on the
production model's paper record so far. The pipeline never moves a model to live trading:
that takes the ``live-gate`` deployment and a person's approval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from prefect import flow
from pydantic import BaseModel, Field

from cappuccino_core.arena.service import DEFAULT_ARENA
from cappuccino_core.clock import SystemClock
from cappuccino_core.config import DataSourceKind, RunOverrides, settings_for
from cappuccino_core.search import runner
from flows.ingest import IngestParams, ingest
from flows.promotion import PromotionParams, promotion
from flows.timeframe_search import TimeframeParams, timeframe_search
from flows.tournament import TournamentParams, tournament
from flows.train import TrainParams, train
from tasks import lifecycle as lifecycle_tasks
from tasks.arena import arena_history
from tasks.flow_runs import close_dead_runs, watched
from tasks.pipeline import (
    holdout_report,
    judge_replay_green_light,
    publish_verdict,
    record_report,
    replay_sandbox,
    selection_report,
    study_promotions,
)
from tasks.search import data_gate, gate_record, study_spec

STAGES = ("ingest", "gate", "timeframe", "train", "tournament", "sandbox", "green_light", "report")


class PipelineParams(BaseModel):
    """What a pipeline run may set; everything else comes from the settings."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$",
                             description="Run name, prefix of its studies (default pipeline-YYYYMMDD); the same name resumes.")
    source: DataSourceKind | None = Field(None, description="Bar source (default: the settings').")
    files_path: str | None = Field(None, description="Directory of bar files for source=files.")
    timeframe_trials: int | None = Field(None, ge=1, le=100, description="Trials of the timeframe search (default from settings).")
    trials: int | None = Field(None, ge=1, le=1000, description="Hard cap on trials of the training study (default from settings).")
    workers: int = Field(1, ge=1, le=64, description="Worker processes per study on this machine.")
    arena: str = Field(DEFAULT_ARENA, min_length=1, description="Arena the candidates enter.")
    promotion_streak: int = Field(20, ge=1, description="Consecutive wins a king needs to be promoted (fixed per arena).")
    as_of: datetime | None = Field(None, description="Judge data freshness as of this time (research on history).")
    allow_stale: bool = Field(False, description="Let stale (never broken) data pass the gate; recorded.")
    overrides: RunOverrides = Field(default_factory=RunOverrides, description="Settings this run overrides (budget, market).")

    def run_overrides(self) -> RunOverrides:
        """``overrides`` with ``source``/``files_path`` folded in (they win)."""
        extra = {k: v for k, v in {"source": self.source, "files_path": self.files_path}.items() if v is not None}
        return RunOverrides(**{**self.overrides.values(), **extra})


class PipelineReport(BaseModel):
    """What one run of the pipeline found at every stage (the summary the CLI prints and MLflow keeps)."""

    name: str
    mode: str
    stage_seconds: dict[str, float]
    data: dict[str, Any]
    timeframe: dict[str, Any]
    training: dict[str, Any]
    arena: dict[str, Any]
    sandbox: dict[str, Any]
    green_light: dict[str, Any]
    holdout: dict[str, Any] = Field(default_factory=dict)
    report: dict[str, Any] = Field(default_factory=dict)


class PipelineStageError(RuntimeError):
    """A stage failed; earlier stages' results are kept and a re-run resumes."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        self.stage = stage
        super().__init__(f"pipeline stage {stage!r} failed: {type(cause).__name__}: {cause}")


progress = logging.getLogger("cappuccino.pipeline")
"""One line as each stage starts and ends (``cappuccino run`` prints them; a worker's log keeps them)."""


@contextmanager
def _stage(name: str, seconds: dict[str, float]) -> Iterator[None]:
    number = f"{STAGES.index(name) + 1}/{len(STAGES)}"
    progress.info("stage %s %s: started", number, name, extra={"stage": name, "event": "started"})
    started = time.perf_counter()
    try:
        yield
    except Exception as exc:
        progress.info("stage %s %s: failed after %.1f s", number, name, time.perf_counter() - started,
                      extra={"stage": name, "event": "failed"})
        raise PipelineStageError(name, exc) from exc
    finally:
        seconds[name] = round(time.perf_counter() - started, 3)
    progress.info("stage %s %s: done in %.1f s", number, name, seconds[name], extra={"stage": name, "event": "done"})


@flow(name="pipeline")
def pipeline(params: PipelineParams = PipelineParams()) -> PipelineReport:
    """Run every stage in order and return the summary; see the module docstring."""
    overrides = params.run_overrides()
    settings = settings_for(overrides)
    close_dead_runs(settings.home)  # runs of this home whose process was killed end Crashed
    with watched(settings.home):  # this process is the run's until the body ends (a kill -9 ends it Crashed)
        name = params.name or f"pipeline-{SystemClock().now():%Y%m%d}"
        seconds: dict[str, float] = {}
        with _stage("ingest", seconds):
            ingested = ingest(IngestParams(as_of=params.as_of, allow_stale=params.allow_stale, overrides=overrides))
        with _stage("gate", seconds):
            gate = data_gate(settings, params.as_of, params.allow_stale)
        with _stage("timeframe", seconds):
            found = timeframe_search(TimeframeParams(trials=params.timeframe_trials, workers=params.workers,
                                                     study=f"{name}-timeframe", as_of=params.as_of,
                                                     allow_stale=params.allow_stale, overrides=overrides,
                                                     gated=gate_record(gate)))
        with _stage("train", seconds):
            trained = train(TrainParams(trials=params.trials, workers=params.workers, study=f"{name}-train",
                                        timeframe_study=found.study, as_of=params.as_of, allow_stale=params.allow_stale,
                                        overrides=overrides, gated=gate_record(gate)))
        with _stage("tournament", seconds):
            played = tournament(TournamentParams(arena=params.arena, promotion_streak=params.promotion_streak,
                                                 overrides=overrides))
        spec = study_spec(runner.StudyLocation.from_settings(settings), trained.study)
        offline = spec.split.has_replay
        with _stage("sandbox", seconds):
            promoted = study_promotions(settings, trained.study, played.status.get("promoted_models", []))
            if offline:
                sandbox = replay_sandbox(settings, trained.study, promoted)
            else:
                sandbox = promotion(PromotionParams(overrides=overrides)).model_dump(mode="json")
        with _stage("green_light", seconds):
            if offline:
                green = judge_replay_green_light(settings, trained.study)
            else:
                site = lifecycle_tasks.open_site(settings)
                green = lifecycle_tasks.judge_live_gate(site, site.now()).to_dict()
        history = arena_history(settings, params.arena)
        matches = history["last_matches"][::-1]  # oldest first
        selected = selection_report(settings, trained.candidates, matches, promoted)
        king = selected["king"] or {}
        trained.summary.update({k: v for k, v in selected["selection"].items() if k != "holdout_scores"})
        report = PipelineReport(
            name=name, mode="offline replay" if offline else "live sandbox", stage_seconds=seconds,
            data={"source": ingested.source, "window_start": ingested.window_start.isoformat(),
                  "window_end": ingested.window_end.isoformat(), "gate": gate_record(gate), "split": spec.split.to_dict()},
            timeframe={"study": found.study, "choice": found.choice, "summary": found.summary},
            training={"study": trained.study, "summary": trained.summary, "candidates": trained.candidates,
                      "selection": trained.selection, "holdout_scores": selected["selection"]["holdout_scores"]},
            arena={**{k: v for k, v in played.status.items() if k != "last_matches"}, "admitted": played.admitted,
                   "played": len(played.played), "history": matches, "promoted_here": promoted,
                   "edge_tests": selected["edge_tests"], "edge_tested_king": king.get("king"),
                   "king_holdout_excess_sharpe": king.get("king_score"), "king_holdout_ci_low": king.get("ci_low"),
                   "king_holdout_bars": king.get("bars")},
            sandbox=sandbox, green_light=green,
        )
        with _stage("report", seconds):
            report.holdout = holdout_report(settings, trained.study, _shown_model(king, played.status, trained.study),
                                            params.arena)
            report.report = record_report(settings, report.model_dump(mode="json"))
            publish_verdict(report.model_dump(mode="json"))
        report.stage_seconds = seconds
        return report


def _shown_model(king: dict[str, Any], arena: dict[str, Any], study: str) -> str | None:
    """The model the report draws on the holdout: this study's edge-tested king, else the arena king if it is ours."""
    if king.get("king"):
        return king["king"]
    return arena.get("king") if arena.get("king_study") == study else None
