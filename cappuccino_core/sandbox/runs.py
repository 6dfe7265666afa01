"""Sandbox runs as stored: the ``sandbox_run`` table and its records (read without the traders).

``sandbox`` runs them; reports and the status board only read them, so this module imports no
model code (no torch).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Double, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from cappuccino_core.data.intervals import Interval
from cappuccino_core.db import Base, UTCDateTime
from cappuccino_core.risk.config import RiskConfig


class SandboxRunRow(Base):
    """One model paper-trading one virtual account for a period."""

    __tablename__ = "sandbox_run"

    trader_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_ref: Mapped[str] = mapped_column(String(500))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    initial_cash: Mapped[float] = mapped_column(Double)
    interval: Mapped[str] = mapped_column(String(8))
    risk: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class SandboxRun:
    """A sandbox run as stored (see ``SandboxRunRow``)."""

    trader_id: str
    model_ref: str
    started_at: datetime
    ends_at: datetime
    ended_at: datetime | None
    initial_cash: float
    interval: Interval
    risk: RiskConfig

    def active_at(self, bar_time: datetime) -> bool:
        """Return whether the run trades the bar that opened at ``bar_time``."""
        return self.ended_at is None and self.started_at <= bar_time < self.ends_at


def sandbox_trader_id(model_ref: str) -> str:
    """Return a stable trader id for a model reference (at most 64 characters)."""
    return "sbx-" + hashlib.sha256(model_ref.encode()).hexdigest()[:16]


def load_runs(sessions: sessionmaker[Session]) -> list[SandboxRun]:
    """Return every stored run, oldest first."""
    with sessions() as session:
        rows = session.scalars(select(SandboxRunRow).order_by(SandboxRunRow.started_at, SandboxRunRow.trader_id))
        return [run_from_row(row) for row in rows]


def load_run(sessions: sessionmaker[Session], trader_id: str) -> SandboxRun:
    """Return one stored run.

    Raises:
        KeyError: there is no run with this id.
    """
    with sessions() as session:
        row = session.get(SandboxRunRow, trader_id)
        if row is None:
            raise KeyError(f"no sandbox run {trader_id!r}")
        return run_from_row(row)


def run_from_row(row: SandboxRunRow) -> SandboxRun:
    """Return the run a ``sandbox_run`` row records."""
    return SandboxRun(row.trader_id, row.model_ref, row.started_at, row.ends_at, row.ended_at, row.initial_cash,
                      Interval(row.interval), RiskConfig.from_dict(json.loads(row.risk)))
