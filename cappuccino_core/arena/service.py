"""The arena of a Cappuccino home: admit candidates, play pending matches, mirror, report.

These are the core functions behind the ``tournament`` flow and ``cappuccino arena run|status``.
The arena lives in the project database (SQLite under the runtime home, or any SQLAlchemy URL,
e.g. PostgreSQL); candidates come from the MLflow registry of the home; studies' specs and bars
from the study storage and the bar store.

Every match trades under the same conditions, ``EnvConfig()``'s fees (0.25 % a side), slippage
(5 bps), minimum order and initial cash with the risk layers as ``EnvConfig()`` has them (off);
each model keeps its own trained lookback, dampening and cash reserve (``market.trading_env``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cappuccino_core.arena.admission import admit_candidates
from cappuccino_core.arena.config import ArenaConfig
from cappuccino_core.arena.results import MatchResult
from cappuccino_core.arena.mirror import ArenaMirror, mirror_match, mirror_pending
from cappuccino_core.arena.standing import DEFAULT_ARENA, arena_status, match_summary, status_dict  # noqa: F401 - re-exported
from cappuccino_core.arena.store import ArenaStore
from cappuccino_core.arena.study_market import StudyMarkets
from cappuccino_core.arena.tournament import Arena
from cappuccino_core.clock import Clock, SystemClock
from cappuccino_core.config import Settings
from cappuccino_core.data.store import BarStore
from cappuccino_core.db import create_schema, default_database_url, make_engine, session_factory
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.search.location import StudyLocation, require_spec
from cappuccino_core.tracking.store import client as mlflow_client
from cappuccino_core.tracking.store import ensure_store, experiment_artifact_location

TOURNAMENT_CONFIG = ArenaConfig()
"""The flow's rules: the defaults (20 wins; every match window, a week each, as validation scores)."""


@dataclass(frozen=True)
class ArenaSite:
    """Where an arena and everything it reads live."""

    database_url: str
    studies: StudyLocation
    bars_dir: Path
    model_name: str
    history_bars: int

    @classmethod
    def from_settings(cls, settings: Settings, database_url: str | None = None) -> ArenaSite:
        """The site of ``settings``; the database defaults to SQLite under the home."""
        return cls(
            database_url=database_url or default_database_url(settings.home),
            studies=StudyLocation.from_settings(settings),
            bars_dir=settings.bars_dir,
            model_name=settings.model_name,
            history_bars=max(settings.search_lookbacks),
        )

    def store(self) -> ArenaStore:
        """Open the project database (creating the arena tables if needed)."""
        engine = make_engine(self.database_url)
        create_schema(engine)
        return ArenaStore(session_factory(engine))

    def mirror(self) -> ArenaMirror:
        """Open the MLflow mirror (creating the store and the ``arena`` experiment if needed)."""
        uri = self.studies.tracking_uri
        ensure_store(uri)
        return ArenaMirror(mlflow_client(uri), model_name=self.model_name,
                           artifact_location=experiment_artifact_location(uri, self.studies.home))

    def markets(self, store: ArenaStore, arena_id: str) -> StudyMarkets:
        """The market source of this site's studies and bars, with the default trading conditions."""
        return StudyMarkets(
            store, arena_id, specs=lambda name: require_spec(self.studies, name), bars=BarStore(self.bars_dir),
            tracking_uri=self.studies.tracking_uri, conditions=EnvConfig(), history_bars=self.history_bars,
        )


def open_arena(site: ArenaSite, arena_id: str = DEFAULT_ARENA, config: ArenaConfig = TOURNAMENT_CONFIG,
               clock: Clock | None = None) -> Arena:
    """Open (or create) arena ``arena_id`` with ``config``; refuses other rules than it was created with."""
    return Arena(site.store(), arena_id, config, clock=clock or SystemClock())


def admit(arena: Arena, site: ArenaSite) -> list[str]:
    """Admit the registry's new candidates; return their ids in order."""
    mirror = site.mirror()  # also creates the MLflow store if this is the first stage to touch it
    return [e.candidate_id for e in admit_candidates(arena, mirror.client, model_name=site.model_name)]


def mirror_arena(arena: Arena, site: ArenaSite) -> int:
    """Mirror every recorded match not yet in MLflow and sync the king; return how many."""
    return mirror_pending(arena.store, arena.arena_id, site.mirror())


def play(arena: Arena, site: ArenaSite, *, max_matches: int | None = None) -> list[MatchResult]:
    """Play every pending match, mirroring each one right after its commit."""
    mirror = site.mirror()
    return arena.play(site.markets(arena.store, arena.arena_id), max_matches=max_matches,
                      on_match=lambda result: mirror_match(arena.store, mirror, result))
