"""The repository of the arena's tables (``tables``), one transaction per change.

Consistency. Every state change is one transaction that starts with a **compare-and-set**
``UPDATE`` of the arena row (``WHERE matches_played = n - 1 AND king_id = ... AND streak = ...``):
it takes the row's write lock on every database (a row lock on PostgreSQL, the database lock on
SQLite) and proves the plan the change was computed from is still current. A match whose id is
already in the log is reported as ``ALREADY_RECORDED`` and changes nothing; a match planned from
a state that has moved on is ``STALE`` and changes nothing. Entrant updates check the status they
expect, so a corrupt plan raises and rolls the whole transaction back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cappuccino_core.arena.config import ArenaConfig
from cappuccino_core.arena.match import MatchOutcome, WindowResult
from cappuccino_core.arena.results import MatchResult
from cappuccino_core.arena.state import ArenaStatus, EntrantState, EntrantStatus, ExitReason, ThroneState
from cappuccino_core.arena.tables import ArenaEntrantRow, ArenaMatchRow, ArenaStateRow, ArenaWindowResultRow
from cappuccino_core.clock import ensure_utc

logger = logging.getLogger(__name__)

__all__ = ["ArenaEntrantRow", "ArenaMatchRow", "ArenaStateError", "ArenaStateRow", "ArenaStore",
           "ArenaWindowResultRow", "RecordOutcome"]


class RecordOutcome(StrEnum):
    """What ``record_match`` did."""

    RECORDED = "recorded"
    ALREADY_RECORDED = "already_recorded"  # a replay: nothing changed
    STALE = "stale"  # planned from a state that has moved on: nothing changed


class ArenaStateError(RuntimeError):
    """The database contradicts a change that passed the compare-and-set (a bug or manual edit)."""


class ArenaStore:
    """Transactional repository of arenas, entrants, the match log and the evaluation cache.

    Thread and process safety: every method runs its own transaction; concurrent writers are
    serialised by the arena row's lock and the compare-and-set (see the module docstring).
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        """Use ``sessions`` (``db.session_factory``) for every transaction."""
        self._sessions = sessions

    # --- arenas and entrants -------------------------------------------------------------

    def ensure_arena(self, arena_id: str, config: ArenaConfig, *, created_at: datetime) -> None:
        """Create the arena if it does not exist; refuse to reopen it with other rules.

        Raises:
            ValueError: the arena exists with rules other than ``config.rules_dict()``.
        """
        rules_hash = config.rules_hash()
        try:
            with self._sessions.begin() as session:
                if session.get(ArenaStateRow, arena_id) is None:
                    session.add(ArenaStateRow(
                        arena_id=arena_id, rules_json=json.dumps(config.rules_dict(), sort_keys=True),
                        rules_hash=rules_hash, king_id=None, streak=0, matches_played=0, entrants=0,
                        created_at=ensure_utc(created_at),
                    ))
        except IntegrityError:
            # Created concurrently by another process: its rules are compared below like any existing arena's.
            logger.info("arena %s was created concurrently; comparing its rules", arena_id)
        with self._sessions() as session:
            row = session.get(ArenaStateRow, arena_id)
            assert row is not None
            if row.rules_hash != rules_hash:
                raise ValueError(
                    f"arena {arena_id!r} exists with other rules {row.rules_json}; "
                    f"refusing {json.dumps(config.rules_dict(), sort_keys=True)}"
                )

    def register(
        self, arena_id: str, candidate_id: str, *, registered_at: datetime, study: str | None = None
    ) -> EntrantState:
        """Register a candidate as the next entrant (idempotent: a known candidate is returned as is).

        ``study`` is the study the candidate came from (``None`` for scripted players).

        Raises:
            KeyError: no such arena.
        """
        for _attempt in range(3):
            try:
                with self._sessions.begin() as session:
                    existing = session.get(ArenaEntrantRow, (arena_id, candidate_id))
                    if existing is not None:
                        return _entrant(existing)
                    bumped = session.execute(
                        update(ArenaStateRow).where(ArenaStateRow.arena_id == arena_id)
                        .values(entrants=ArenaStateRow.entrants + 1)
                    )
                    if bumped.rowcount != 1:
                        raise KeyError(f"no arena {arena_id!r}")
                    order = session.scalar(select(ArenaStateRow.entrants).where(ArenaStateRow.arena_id == arena_id))
                    row = ArenaEntrantRow(
                        arena_id=arena_id, candidate_id=candidate_id, order_no=order,
                        registered_at=ensure_utc(registered_at), status=str(EntrantStatus.WAITING),
                        decided_in_match=None, reason=None, crowned_after_match=None, study=study,
                    )
                    session.add(row)
                    session.flush()
                    return _entrant(row)
            except IntegrityError:
                continue  # the same candidate was registered concurrently: read it on the next attempt
        raise ArenaStateError(f"could not register {candidate_id!r} in arena {arena_id!r} after 3 attempts")

    def status(self, arena_id: str) -> ArenaStatus:
        """Return the arena's state and every entrant in registration order.

        Raises:
            KeyError: no such arena.
        """
        with self._sessions.begin() as session:
            arena = session.get(ArenaStateRow, arena_id)
            if arena is None:
                raise KeyError(f"no arena {arena_id!r}")
            rows = session.scalars(
                select(ArenaEntrantRow).where(ArenaEntrantRow.arena_id == arena_id).order_by(ArenaEntrantRow.order_no)
            ).all()
            return ArenaStatus(
                arena_id=arena_id,
                king=arena.king_id,
                streak=arena.streak,
                matches_played=arena.matches_played,
                entrants=tuple(_entrant(r) for r in rows),
            )

    def throne(self, arena_id: str, *, waiting_limit: int) -> ThroneState:
        """Return the king, streak, matches played and the first ``waiting_limit`` waiting entrants.

        Raises:
            KeyError: no such arena.
        """
        with self._sessions.begin() as session:
            arena = session.get(ArenaStateRow, arena_id)
            if arena is None:
                raise KeyError(f"no arena {arena_id!r}")
            waiting = session.scalars(
                select(ArenaEntrantRow.candidate_id)
                .where(ArenaEntrantRow.arena_id == arena_id, ArenaEntrantRow.status == str(EntrantStatus.WAITING))
                .order_by(ArenaEntrantRow.order_no).limit(waiting_limit)
            ).all()
            return ThroneState(arena.king_id, arena.streak, arena.matches_played, tuple(waiting))

    def crown(self, arena_id: str, candidate_id: str, *, matches_played: int) -> bool:
        """Crown the earliest waiting entrant on an empty throne (streak 0). False if the state moved on.

        Raises:
            ArenaStateError: ``candidate_id`` is not the earliest waiting entrant.
        """
        with self._sessions.begin() as session:
            swapped = session.execute(
                update(ArenaStateRow)
                .where(ArenaStateRow.arena_id == arena_id, ArenaStateRow.king_id.is_(None),
                       ArenaStateRow.matches_played == matches_played)
                .values(king_id=candidate_id, streak=0)
            )
            if swapped.rowcount != 1:
                return False
            first = session.scalar(
                select(ArenaEntrantRow.candidate_id)
                .where(ArenaEntrantRow.arena_id == arena_id, ArenaEntrantRow.status == str(EntrantStatus.WAITING))
                .order_by(ArenaEntrantRow.order_no).limit(1)
            )
            if first != candidate_id:
                raise ArenaStateError(f"arena {arena_id!r}: {candidate_id!r} is not the earliest waiting entrant ({first!r})")
            _set_status(session, arena_id, candidate_id, EntrantStatus.WAITING, EntrantStatus.KING,
                        crowned_after_match=matches_played)
            return True

    # --- matches ---------------------------------------------------------------------------

    def record_match(self, result: MatchResult) -> RecordOutcome:
        """Record a match and apply its state change in one transaction (idempotent by match id)."""
        with self._sessions.begin() as session:
            swapped = session.execute(
                update(ArenaStateRow)
                .where(
                    ArenaStateRow.arena_id == result.arena_id,
                    ArenaStateRow.matches_played == result.match_number - 1,
                    ArenaStateRow.king_id == result.king_id,
                    ArenaStateRow.streak == result.king_streak_before,
                )
                .values(
                    king_id=result.king_after,
                    streak=result.streak_after if result.king_after is not None else 0,
                    matches_played=result.match_number,
                )
            )
            if swapped.rowcount != 1:
                known = session.get(ArenaMatchRow, result.match_id) is not None
                return RecordOutcome.ALREADY_RECORDED if known else RecordOutcome.STALE
            _apply_exits(session, result)
            session.add(ArenaMatchRow(
                match_id=result.match_id, arena_id=result.arena_id, match_number=result.match_number,
                king_id=result.king_id, challenger_id=result.challenger_id, outcome=str(result.outcome),
                king_score=result.king_score, challenger_score=result.challenger_score,
                streak_after=result.streak_after, promoted_id=result.promoted_id, rejected_id=result.rejected_id,
                played_at=result.played_at, result_json=json.dumps(result.to_dict()),
            ))
        return RecordOutcome.RECORDED

    def match_log(self, arena_id: str, *, after: int = 0) -> list[MatchResult]:
        """Return the recorded matches numbered above ``after``, in order (a mirror's catch-up)."""
        with self._sessions() as session:
            texts = session.scalars(
                select(ArenaMatchRow.result_json)
                .where(ArenaMatchRow.arena_id == arena_id, ArenaMatchRow.match_number > after)
                .order_by(ArenaMatchRow.match_number)
            ).all()
        return [MatchResult.from_dict(json.loads(t)) for t in texts]

    def unmirrored(self, arena_id: str) -> list[MatchResult]:
        """Return the matches the MLflow mirror has not recorded yet, in order."""
        with self._sessions() as session:
            texts = session.scalars(
                select(ArenaMatchRow.result_json)
                .where(ArenaMatchRow.arena_id == arena_id, ArenaMatchRow.mirrored.is_(False))
                .order_by(ArenaMatchRow.match_number)
            ).all()
        return [MatchResult.from_dict(json.loads(t)) for t in texts]

    def mark_mirrored(self, match_id: str) -> None:
        """Record that the mirror has written match ``match_id`` (idempotent).

        Raises:
            KeyError: no such match.
        """
        with self._sessions.begin() as session:
            changed = session.execute(update(ArenaMatchRow).where(ArenaMatchRow.match_id == match_id).values(mirrored=True))
            if changed.rowcount != 1:
                raise KeyError(f"no match {match_id!r}")

    def studies(self, arena_id: str) -> dict[str, str | None]:
        """Return every entrant's study (``None`` for scripted players), by entrant id."""
        with self._sessions() as session:
            rows = session.execute(
                select(ArenaEntrantRow.candidate_id, ArenaEntrantRow.study).where(ArenaEntrantRow.arena_id == arena_id)
            ).all()
        return {candidate: study for candidate, study in rows}

    def rules(self, arena_id: str) -> dict:
        """Return the rules the arena was created with (``ArenaConfig.rules_dict``).

        Raises:
            KeyError: no such arena.
        """
        with self._sessions() as session:
            text = session.scalar(select(ArenaStateRow.rules_json).where(ArenaStateRow.arena_id == arena_id))
        if text is None:
            raise KeyError(f"no arena {arena_id!r}")
        return json.loads(text)

    # --- evaluation cache --------------------------------------------------------------------

    def load_window_results(
        self, model_ids: Sequence[str], context_hash: str, horizon: int
    ) -> dict[str, list[WindowResult]]:
        """Return every cached result of ``model_ids`` under ``context_hash`` and ``horizon``, by model."""
        found: dict[str, list[WindowResult]] = {m: [] for m in model_ids}
        if not found:
            return found
        table = ArenaWindowResultRow
        with self._sessions() as session:
            rows = session.execute(
                select(table.model_id, table.window_start_ns, table.returns, table.benchmark_returns, table.alpha).where(
                    table.model_id.in_(list(found)), table.context_hash == context_hash, table.horizon == horizon
                )
            ).all()
        for model_id, start, returns, index, alpha in rows:
            found[model_id].append(WindowResult(model_id, int(start), _array(returns), _array(index), alpha))
        return found

    def save_window_results(self, results: Sequence[WindowResult], context_hash: str, horizon: int) -> None:
        """Insert results into the cache; rows already there are left as they are."""
        if not results:
            return
        rows = [
            {
                "model_id": r.model_id, "context_hash": context_hash, "window_start_ns": int(r.start_ns),
                "horizon": horizon, "returns": _blob(r.returns), "benchmark_returns": _blob(r.benchmark_returns),
                "alpha": r.alpha,
            }
            for r in results
        ]
        with self._sessions.begin() as session:
            _insert_ignoring_duplicates(session, rows)


def _blob(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<f8").tobytes()


def _array(blob: bytes) -> np.ndarray:
    return np.frombuffer(bytes(blob), dtype="<f8")


def _entrant(row: ArenaEntrantRow) -> EntrantState:
    return EntrantState(
        candidate_id=row.candidate_id,
        order=row.order_no,
        registered_at=row.registered_at,
        status=EntrantStatus(row.status),
        decided_in_match=row.decided_in_match,
        reason=None if row.reason is None else ExitReason(row.reason),
        crowned_after_match=row.crowned_after_match,
        study=row.study,
    )


def _apply_exits(session: Session, result: MatchResult) -> None:
    """Set the final status of both players of ``result``, checking the status each had."""
    arena, n = result.arena_id, result.match_number
    before = {result.king_id: EntrantStatus.KING, result.challenger_id: EntrantStatus.WAITING}
    winner = result.winner_id
    forfeited = result.king_forfeit if result.loser_id == result.king_id else result.challenger_forfeit
    reason = (ExitReason.FORFEIT if forfeited else ExitReason.TIED if result.outcome is MatchOutcome.TIE
              else ExitReason.LOST)
    _set_status(session, arena, result.loser_id, before[result.loser_id], EntrantStatus.ELIMINATED,
                match_number=n, reason=reason)
    if result.promoted_id is not None:
        _set_status(session, arena, winner, before[winner], EntrantStatus.PROMOTED,
                    match_number=n, reason=ExitReason.PROMOTED)
    elif result.rejected_id is not None:
        _set_status(session, arena, winner, before[winner], EntrantStatus.ELIMINATED,
                    match_number=n, reason=ExitReason.NO_EDGE)
    elif winner != result.king_id:
        _set_status(session, arena, winner, EntrantStatus.WAITING, EntrantStatus.KING)


def _set_status(
    session: Session,
    arena_id: str,
    candidate_id: str,
    expected: EntrantStatus,
    new: EntrantStatus,
    *,
    match_number: int | None = None,
    reason: ExitReason | None = None,
    crowned_after_match: int | None = None,
) -> None:
    values: dict[str, object] = {"status": str(new)}
    if match_number is not None:
        values.update(decided_in_match=match_number, reason=None if reason is None else str(reason))
    if crowned_after_match is not None:
        values["crowned_after_match"] = crowned_after_match
    changed = session.execute(
        update(ArenaEntrantRow)
        .where(ArenaEntrantRow.arena_id == arena_id, ArenaEntrantRow.candidate_id == candidate_id,
               ArenaEntrantRow.status == str(expected))
        .values(**values)
    )
    if changed.rowcount != 1:
        raise ArenaStateError(f"arena {arena_id!r}: entrant {candidate_id!r} is not {expected} as the change expects")


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, object]]) -> None:
    """Insert cache rows, skipping keys already present (the result on a window never changes)."""
    table = ArenaWindowResultRow.__table__
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # portable fallback: look the keys up first
        keys = {(r["model_id"], r["context_hash"], r["window_start_ns"], r["horizon"]) for r in rows}
        present = {
            tuple(k) for k in session.execute(
                select(table.c.model_id, table.c.context_hash, table.c.window_start_ns, table.c.horizon)
                .where(table.c.model_id.in_({k[0] for k in keys}))
            ).all()
        }
        fresh = [r for r in rows if (r["model_id"], r["context_hash"], r["window_start_ns"], r["horizon"]) not in present]
        if fresh:
            session.execute(table.insert(), fresh)
        return
    session.execute(insert(table).on_conflict_do_nothing(), rows)
