"""The ``tournament`` flow: admit new candidates, play every pending match, mirror into MLflow.

Deployed hourly and after training (``prefect.yaml``); one run at a time per arena (concurrency
limit 1). A run that died anywhere resumes on the next one: the database is the source of truth
(see ``cappuccino_core.arena``), and the mirror first redoes what an earlier run left undone.
Its result is the markdown artifact ``tournament-<arena>`` of the run (king, streak, matches played).
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import BaseModel, Field

from cappuccino_core.arena.config import ArenaConfig
from cappuccino_core.arena.service import DEFAULT_ARENA
from cappuccino_core.config import RunOverrides, settings_for
from cappuccino_core.views.flow_markdown import artifact_key, tournament_headline, tournament_markdown
from tasks.arena import admit_candidates, arena_report, mirror_matches, play_matches
from tasks.artifacts import publish_markdown


class TournamentParams(BaseModel):
    """What a run may set. The rules are fixed when the arena is created; other rules are refused."""

    arena: str = Field(DEFAULT_ARENA, min_length=1, description="Arena id (one king-of-the-hill tournament).")
    max_matches: int | None = Field(None, ge=1, description="Stop after this many matches (default: all pending).")
    promotion_streak: int = Field(20, ge=1, description="Consecutive wins after which the king takes the edge test.")
    windows_per_match: int | None = Field(None, ge=1, description="Evaluation windows both players trade in a match (default: every match window).")
    window_hours: float = Field(168.0, gt=0, description="Hours per evaluation window (the validation windows' length).")
    window_bars: int | None = Field(None, ge=2, description="Bars per window, overriding window_hours (small test arenas).")
    seed: int = Field(0, ge=0, description="Arena seed: match n draws its windows from a seed derived from (seed, n).")
    overrides: RunOverrides = Field(default_factory=RunOverrides, description="Settings this run overrides (budget, market).")

    def config(self) -> ArenaConfig:
        return ArenaConfig(promotion_streak=self.promotion_streak, windows_per_match=self.windows_per_match,
                           window_hours=self.window_hours, window_bars=self.window_bars, seed=self.seed)


class TournamentReport(BaseModel):
    arena: str
    admitted: list[str]
    repaired_mirror: int
    played: list[dict[str, Any]]
    status: dict[str, Any]


@flow(name="tournament")
def tournament(params: TournamentParams = TournamentParams()) -> TournamentReport:
    """Admit the registry's new candidates, repair the mirror, play all pending matches, report."""
    settings = settings_for(params.overrides)
    config = params.config()
    admitted = admit_candidates(settings, params.arena, config)
    repaired = mirror_matches(settings, params.arena, config)
    played = play_matches(settings, params.arena, config, params.max_matches)
    mirror_matches(settings, params.arena, config)  # the king crowned after the last match, if any
    status = arena_report(settings, params.arena)
    report = TournamentReport(arena=params.arena, admitted=admitted, repaired_mirror=repaired, played=played, status=status)
    doc = report.model_dump(mode="json")
    publish_markdown(artifact_key("tournament", params.arena), tournament_markdown(doc), tournament_headline(doc))
    return report
