"""The lifecycle's tables (declared on ``db.Base``; ``db.create_schema`` creates them once imported).

* ``lifecycle_model`` — one row per model version in the lifecycle: its stage. A partial
  unique index on ``stage`` (rows in ``production`` or ``live`` only) lets the database
  itself refuse a second production model or a second live model.
* ``lifecycle_role`` — who holds the ``production`` and ``live`` roles: the role is the
  primary key, so each role has at most one holder whatever the application does. A live
  model may also hold production (see ``stages``).
* ``lifecycle_transition`` — the append-only log of moves: model, from, to, who, why, when,
  the figures behind it (JSON), the roles it held after, and the model whose role it took.
* ``lifecycle_gate_decision`` — every green-light decision (allowed or not), as JSON.
* ``lifecycle_halt`` / ``lifecycle_halt_event`` — the kill switch's durable flag and its history.
* ``lifecycle_alert`` — alerts (level, source, message, time), secrets already scrubbed.

Both partial-index dialects are declared (``sqlite_where`` and ``postgresql_where``), so the
invariants hold on the embedded SQLite database and on PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from cappuccino_core.db import Base, UTCDateTime

MODEL_ID_LENGTH = 500  # as the arena's ids: ``models:/<name>/<version>``
_EXCLUSIVE = text("stage IN ('production', 'live')")


class LifecycleModelRow(Base):
    """One model version and its current stage."""

    __tablename__ = "lifecycle_model"
    __table_args__ = (
        CheckConstraint("stage IN ('arena', 'sandbox', 'production', 'live', 'retired')",
                        name="ck_lifecycle_model_stage"),
        Index("uq_lifecycle_model_one_per_exclusive_stage", "stage", unique=True,
              sqlite_where=_EXCLUSIVE, postgresql_where=_EXCLUSIVE),
    )

    model_id: Mapped[str] = mapped_column(String(MODEL_ID_LENGTH), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16))
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LifecycleRoleRow(Base):
    """The holder of one role (at most one row per role: the role is the key)."""

    __tablename__ = "lifecycle_role"
    __table_args__ = (CheckConstraint("role IN ('production', 'live')", name="ck_lifecycle_role_role"),)

    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("lifecycle_model.model_id"))
    since: Mapped[datetime] = mapped_column(UTCDateTime)


class LifecycleTransitionRow(Base):
    """One recorded move of one model."""

    __tablename__ = "lifecycle_transition"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("lifecycle_model.model_id"), index=True)
    from_stage: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_stage: Mapped[str] = mapped_column(String(16))
    who: Mapped[str] = mapped_column(String(200))
    why: Mapped[str] = mapped_column(Text)
    figures_json: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    roles_after: Mapped[str] = mapped_column(String(32))  # comma-separated, sorted; "" for none
    took_role_from: Mapped[str | None] = mapped_column(String(MODEL_ID_LENGTH), nullable=True)


class LifecycleGateDecisionRow(Base):
    """One gate decision (the green light for live), allowed or not."""

    __tablename__ = "lifecycle_gate_decision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gate: Mapped[str] = mapped_column(String(32))
    model_id: Mapped[str] = mapped_column(String(MODEL_ID_LENGTH), index=True)
    allowed: Mapped[bool] = mapped_column(Boolean)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decision_json: Mapped[str] = mapped_column(Text)


class HaltRow(Base):
    """The kill switch: one row per switch name (``trading``); durable across restarts."""

    __tablename__ = "lifecycle_halt"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    halted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    who: Mapped[str | None] = mapped_column(String(200), nullable=True)
    since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HaltEventRow(Base):
    """One halt or resume, in order."""

    __tablename__ = "lifecycle_halt_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(8))  # "halt" or "resume"
    who: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class StepInFlightRow(Base):
    """A trader step under way (inserted when the step starts, deleted when it ends), so ``kill`` can wait for it."""

    __tablename__ = "lifecycle_step_in_flight"

    trader_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bar_time: Mapped[datetime] = mapped_column(UTCDateTime)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertRow(Base):
    """One alert, its message already scrubbed of secrets."""

    __tablename__ = "lifecycle_alert"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    level: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


LIFECYCLE_TABLES = [LifecycleModelRow.__table__, LifecycleRoleRow.__table__, LifecycleTransitionRow.__table__,
                    LifecycleGateDecisionRow.__table__]
HALT_TABLES = [HaltRow.__table__, HaltEventRow.__table__, StepInFlightRow.__table__]
ALERT_TABLES = [AlertRow.__table__]
