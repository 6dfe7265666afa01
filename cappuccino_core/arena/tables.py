"""The arena's tables (declared on ``db.Base``; ``db.create_schema`` creates them once imported).

* ``arena_state`` — one row per arena: its rules, king, streak, matches played, entrants registered.
* ``arena_entrant`` — one row per candidate: registration order, study, status, which match decided it.
* ``arena_match`` — the match log: one row per match with the full ``MatchResult`` as JSON, and
  whether the MLflow mirror has recorded it (``mirrored``).
* ``arena_window_returns`` — the evaluation cache: one model's per-bar returns and the index's
  on one window, keyed by (model id, context hash, window start, horizon). A model's result on a
  window never changes, so rows are only ever inserted (duplicates are ignored).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cappuccino_core.db import Base, UTCDateTime

ID_LENGTH = 500  # longest candidate or model id (an MLflow model-version URI fits easily)
_ID = ID_LENGTH


class ArenaStateRow(Base):
    """One arena: rules and the current king."""

    __tablename__ = "arena_state"

    arena_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    rules_json: Mapped[str] = mapped_column(Text)
    rules_hash: Mapped[str] = mapped_column(String(64))
    king_id: Mapped[str | None] = mapped_column(String(_ID), nullable=True)
    streak: Mapped[int] = mapped_column(Integer)
    matches_played: Mapped[int] = mapped_column(Integer)
    entrants: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ArenaEntrantRow(Base):
    """One candidate registered in one arena."""

    __tablename__ = "arena_entrant"
    __table_args__ = (UniqueConstraint("arena_id", "order_no"),)

    arena_id: Mapped[str] = mapped_column(ForeignKey("arena_state.arena_id"), primary_key=True)
    candidate_id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    order_no: Mapped[int] = mapped_column(Integer)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    decided_in_match: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    crowned_after_match: Mapped[int | None] = mapped_column(Integer, nullable=True)
    study: Mapped[str | None] = mapped_column(String(200), nullable=True)


class ArenaMatchRow(Base):
    """One recorded match (the log)."""

    __tablename__ = "arena_match"
    __table_args__ = (UniqueConstraint("arena_id", "match_number"),)

    match_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    arena_id: Mapped[str] = mapped_column(ForeignKey("arena_state.arena_id"))
    match_number: Mapped[int] = mapped_column(Integer)
    king_id: Mapped[str] = mapped_column(String(_ID))
    challenger_id: Mapped[str] = mapped_column(String(_ID))
    outcome: Mapped[str] = mapped_column(String(16))
    king_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    challenger_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    streak_after: Mapped[int] = mapped_column(Integer)
    promoted_id: Mapped[str | None] = mapped_column(String(_ID), nullable=True)
    rejected_id: Mapped[str | None] = mapped_column(String(_ID), nullable=True)
    played_at: Mapped[datetime] = mapped_column(UTCDateTime)
    result_json: Mapped[str] = mapped_column(Text)
    mirrored: Mapped[bool] = mapped_column(Boolean, default=False)


class ArenaWindowResultRow(Base):
    """The evaluation cache: one model on one window under one evaluation context."""

    __tablename__ = "arena_window_returns"

    model_id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    context_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start_ns: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    horizon: Mapped[int] = mapped_column(Integer, primary_key=True)
    returns: Mapped[bytes] = mapped_column(LargeBinary)  # float64 little-endian, [horizon]
    benchmark_returns: Mapped[bytes] = mapped_column(LargeBinary)  # float64 little-endian, [horizon]
    alpha: Mapped[float | None] = mapped_column(Float, nullable=True)
