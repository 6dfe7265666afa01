"""The record of one played match: what the arena store keeps and the MLflow mirror logs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cappuccino_core.arena.edge_test import EdgeTestResult
from cappuccino_core.arena.match import MatchOutcome
from cappuccino_core.clock import ensure_utc


@dataclass(frozen=True)
class MatchResult:
    """Everything about one played match; what the store records and a mirror logs.

    Attributes:
        match_id: ``match_id(arena_id, match_number, king_id, challenger_id)``.
        arena_id: the arena.
        match_number: 1 for the arena's first match, then consecutive.
        seed: the seed the windows were drawn with (``derive_seed(arena seed, number, SEED_WINDOWS)``).
        king_id, challenger_id: the players.
        king_streak_before: the king's streak when the match started.
        window_starts: decision-bar open times (ns, UTC) of the windows traded.
        window_bars: steps per window.
        context_hash: hash of the holdout bars and trading conditions (``evaluator.context_hash``).
        king_score, challenger_score: ``match_score`` of each player (``None`` if undefined).
        king_alpha, challenger_alpha: mean per-window alpha of each player (for reports).
        outcome: who won.
        loser_id: the player the match eliminated.
        streak_after: the winner's streak after the match (reported even when it then leaves).
        edge_test: the promotion test, run when ``streak_after`` reached the promotion streak.
        promoted_id: the king promoted to the sandbox by this match, if any.
        rejected_id: the king eliminated because it reached the streak but failed the edge test.
        king_after: the king after the match (``None`` when it was promoted or rejected).
        played_at: when the result was computed (from the arena's clock).
        market: the key of the market (holdout) the match was played on (``market.MarketSource``).
        king_forfeit, challenger_forfeit: why a player could not trade the market (it then has no score).
    """

    match_id: str
    arena_id: str
    match_number: int
    seed: int
    king_id: str
    challenger_id: str
    king_streak_before: int
    window_starts: tuple[int, ...]
    window_bars: int
    context_hash: str
    king_score: float | None
    challenger_score: float | None
    king_alpha: float | None
    challenger_alpha: float | None
    outcome: MatchOutcome
    loser_id: str
    streak_after: int
    edge_test: EdgeTestResult | None
    promoted_id: str | None
    rejected_id: str | None
    king_after: str | None
    played_at: datetime
    market: str = ""
    king_forfeit: str | None = None
    challenger_forfeit: str | None = None

    @property
    def winner_id(self) -> str:
        """The player that stays in (or, after a promotion or rejection, that left as the winner)."""
        return self.challenger_id if self.outcome is MatchOutcome.CHALLENGER_WINS else self.king_id

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (floats exact, ``None`` kept)."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["window_starts"] = list(self.window_starts)
        out["outcome"] = str(self.outcome)
        out["edge_test"] = None if self.edge_test is None else self.edge_test.to_dict()
        out["played_at"] = self.played_at.isoformat()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MatchResult:
        """Rebuild from ``to_dict`` output."""
        values = dict(data)
        values["window_starts"] = tuple(int(s) for s in data["window_starts"])
        values["outcome"] = MatchOutcome(data["outcome"])
        values["edge_test"] = None if data["edge_test"] is None else EdgeTestResult.from_dict(data["edge_test"])
        values["played_at"] = ensure_utc(datetime.fromisoformat(data["played_at"]))
        return cls(**values)
