"""The arena's standing as the command line and reports show it: read from the database only.

Cheap to import (no MLflow, no models), so ``cappuccino status`` and ``arena status`` stay fast;
``service`` re-exports these.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from cappuccino_core.arena.results import MatchResult
from cappuccino_core.arena.state import ArenaStatus
from cappuccino_core.arena.store import ArenaStore
from cappuccino_core.config import Settings
from cappuccino_core.db import create_schema, default_database_url, make_engine, session_factory
from cappuccino_core.study.storage import sqlite_path

if TYPE_CHECKING:
    from cappuccino_core.arena.edge_test import EdgeTestResult

DEFAULT_ARENA = "main"


def arena_status(settings: Settings, *, arena_id: str = DEFAULT_ARENA, database_url: str | None = None,
                 last: int = 10) -> dict[str, Any]:
    """Return the arena's standing: king, streak, waiting, eliminated and promoted, the last matches.

    Raises:
        LookupError: there is no such arena yet.
    """
    url = database_url or default_database_url(settings.home)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise LookupError(f"no arena yet ({url} does not exist): run `cappuccino arena run`")
    engine = make_engine(url)
    create_schema(engine)
    try:
        return status_dict(ArenaStore(session_factory(engine)), arena_id, last=last)
    except KeyError:
        raise LookupError(f"no arena {arena_id!r} in {url}: run `cappuccino arena run`") from None


def status_dict(store: ArenaStore, arena_id: str, *, last: int = 10) -> dict[str, Any]:
    """Return ``arena_status``'s report from ``store``.

    Raises:
        KeyError: no such arena.
    """
    status: ArenaStatus = store.status(arena_id)
    king = next((e for e in status.entrants if e.candidate_id == status.king), None)
    recent = store.match_log(arena_id, after=max(status.matches_played - last, 0))
    return {
        "arena": arena_id,
        "rules": store.rules(arena_id),
        "king": status.king,
        "king_study": None if king is None else king.study,
        "streak": status.streak,
        "matches_played": status.matches_played,
        "waiting": len(status.waiting),
        "next_challengers": list(status.waiting[:5]),
        "eliminated": len(status.eliminated),
        "promoted": len(status.promoted),
        "promoted_models": list(status.promoted),
        "unmirrored_matches": len(store.unmirrored(arena_id)),
        "last_matches": [match_summary(r) for r in reversed(recent)],
    }


def match_summary(result: MatchResult) -> dict[str, Any]:
    """One match as a flat JSON-friendly dict (for reports and the CLI)."""
    return {
        "match": result.match_number, "king": result.king_id, "challenger": result.challenger_id,
        "king_score": result.king_score, "challenger_score": result.challenger_score,
        "outcome": str(result.outcome), "winner": result.winner_id, "streak": result.streak_after,
        "promoted": result.promoted_id, "rejected": result.rejected_id, "market": result.market,
        "window_seed": result.seed, "forfeit": result.king_forfeit or result.challenger_forfeit,
        "played_at": _iso(result.played_at), "windows": len(result.window_starts), "window_bars": result.window_bars,
        "edge_test": None if result.edge_test is None else _edge_summary(result.edge_test),
    }


def _edge_summary(edge: EdgeTestResult) -> dict[str, Any]:
    """The edge test as the report shows it: verdict, reasons, the king's score and interval, the baselines."""
    return {
        "passed": edge.passed, "reasons": list(edge.reasons), "bars": edge.bars, "windows": len(edge.window_starts),
        "king_score": edge.king_score, "mean_excess": edge.mean_excess, "ci_low": edge.ci_low, "ci_high": edge.ci_high,
        "confidence": edge.confidence, "baselines": {b.name: b.score for b in edge.baseline_scores},
    }


def _iso(at: datetime) -> str:
    return at.isoformat()
