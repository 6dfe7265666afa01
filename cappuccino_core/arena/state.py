"""The arena's state as immutable values: who is waiting, who is king, who left and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class EntrantStatus(StrEnum):
    """Where an entrant stands."""

    WAITING = "waiting"  # registered, has not played yet
    KING = "king"
    ELIMINATED = "eliminated"
    PROMOTED = "promoted"  # left the arena for the sandbox


class ExitReason(StrEnum):
    """Why an entrant left the arena."""

    LOST = "lost"  # the other player scored higher
    TIED = "tied"  # a challenger that only tied the king (a tie keeps the king)
    NO_EDGE = "no_edge"  # reached the promotion streak but failed the edge test
    FORFEIT = "forfeit"  # could not trade the match's market (another interval or asset universe)
    PROMOTED = "promoted"


@dataclass(frozen=True)
class EntrantState:
    """One registered candidate.

    Attributes:
        candidate_id: the candidate (a registered model version: ``models:/<name>/<version>``).
        order: registration order in this arena, 1-based; challengers enter in this order.
        registered_at: when it was registered (UTC).
        status: where it stands.
        decided_in_match: the match that eliminated or promoted it.
        reason: why it left (``None`` while waiting or king).
        crowned_after_match: for a king crowned without a match (empty throne), the number of
            matches played before; ``None`` otherwise.
        study: the study the candidate came from (``None`` for scripted players).
    """

    candidate_id: str
    order: int
    registered_at: datetime
    status: EntrantStatus
    decided_in_match: int | None
    reason: ExitReason | None
    crowned_after_match: int | None
    study: str | None = None


@dataclass(frozen=True)
class ArenaStatus:
    """A consistent snapshot of one arena.

    Attributes:
        arena_id: the arena.
        king: the current king (``None`` when the throne is empty).
        streak: the king's consecutive wins (0 without a king).
        matches_played: number of recorded matches.
        entrants: every entrant, in registration order.
    """

    arena_id: str
    king: str | None
    streak: int
    matches_played: int
    entrants: tuple[EntrantState, ...]

    def _with(self, status: EntrantStatus) -> tuple[str, ...]:
        return tuple(e.candidate_id for e in self.entrants if e.status is status)

    @property
    def waiting(self) -> tuple[str, ...]:
        """Candidates that have not played yet, in registration order (the next challenger first)."""
        return self._with(EntrantStatus.WAITING)

    @property
    def eliminated(self) -> tuple[str, ...]:
        """Eliminated candidates, in registration order."""
        return self._with(EntrantStatus.ELIMINATED)

    @property
    def promoted(self) -> tuple[str, ...]:
        """Candidates promoted to the sandbox, in registration order."""
        return self._with(EntrantStatus.PROMOTED)


@dataclass(frozen=True)
class ThroneState:
    """What the next match depends on (a cheap read, unlike the full ``ArenaStatus``).

    Attributes:
        king: the current king (``None`` when the throne is empty).
        streak: the king's consecutive wins.
        matches_played: number of recorded matches.
        waiting: the first few waiting entrants in registration order (the next challengers).
    """

    king: str | None
    streak: int
    matches_played: int
    waiting: tuple[str, ...]
