"""The lifecycle's repository: stages, roles and the transition log, one transaction per move.

Consistency. A move reads the model's stage and the role holders, plans the change
(``stages.check_transition`` and ``stages.plan_roles``), then writes it with
**compare-and-set** statements (``UPDATE ... WHERE stage = <what was read>``, role rows
updated ``WHERE model_id = <holder read>``, a free role taken by ``INSERT``). The first write
takes the write lock (a row lock on PostgreSQL, the database lock on SQLite); a write that
finds the state changed since it was read changes nothing and the whole move is rolled back
with ``ConcurrentChange``. Independently of the code, the database refuses a second
production or live model (partial unique index on the stage, role as primary key): two
concurrent promotions cannot both succeed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cappuccino_core.clock import ensure_utc
from cappuccino_core.db import Base, session_factory
from cappuccino_core.lifecycle.stages import (
    Role,
    RoleTaken,
    Stage,
    TransitionRefused,
    check_transition,
    plan_roles,
)
from cappuccino_core.lifecycle.tables import (
    LIFECYCLE_TABLES,
    LifecycleGateDecisionRow,
    LifecycleModelRow,
    LifecycleRoleRow,
    LifecycleTransitionRow,
)

logger = logging.getLogger(__name__)


class ConcurrentChange(TransitionRefused):
    """The stages or roles changed between reading and writing a move; nothing was changed."""


@dataclass(frozen=True)
class Transition:
    """One recorded move.

    Attributes:
        id: its place in the log (increasing).
        model_id: the model that moved (``models:/<name>/<version>``).
        from_stage: where it was, ``None`` when it entered.
        to_stage: where it went.
        who: who or what moved it (a person, ``flow:promotion``, ``monitor``).
        why: the reason, in words.
        at: when (UTC).
        figures: the numbers behind the decision (JSON-ready).
        roles_after: the roles the model held after the move.
        took_role_from: the model a role was taken from, if any.
    """

    id: int
    model_id: str
    from_stage: Stage | None
    to_stage: Stage
    who: str
    why: str
    at: datetime
    figures: dict[str, Any] = field(default_factory=dict)
    roles_after: frozenset[Role] = frozenset()
    took_role_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the move as a JSON-ready dict."""
        return {
            "id": self.id, "model_id": self.model_id,
            "from": None if self.from_stage is None else str(self.from_stage), "to": str(self.to_stage),
            "who": self.who, "why": self.why, "at": self.at.isoformat(), "figures": self.figures,
            "roles_after": sorted(str(r) for r in self.roles_after), "took_role_from": self.took_role_from,
        }


@dataclass(frozen=True)
class ModelState:
    """A model's current stage and roles."""

    model_id: str
    stage: Stage
    roles: frozenset[Role]
    entered_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class GateRecord:
    """One stored gate decision."""

    id: int
    gate: str
    model_id: str
    allowed: bool
    decided_at: datetime
    decision: dict[str, Any]


class LifecycleStore:
    """Transactional repository of stages, roles, transitions and gate decisions.

    Thread and process safety: every method runs its own transaction; concurrent moves are
    serialised by the database (see the module docstring). Use one instance per thread.
    """

    def __init__(self, engine: Engine) -> None:
        """Use the project database ``engine``; create the lifecycle tables if needed."""
        Base.metadata.create_all(engine, tables=LIFECYCLE_TABLES)
        self._sessions = session_factory(engine)

    # --- moves -------------------------------------------------------------------------------

    def move(
        self,
        model_id: str,
        to_stage: Stage,
        *,
        who: str,
        why: str,
        at: datetime,
        figures: Mapping[str, Any] | None = None,
    ) -> Transition:
        """Move a model to ``to_stage`` (entering it if new) and record the move.

        A move that takes a role from a model in stage production retires that model in the
        same transaction (recorded as its own transition, ``why`` naming its replacement).

        Raises:
            IllegalTransition: the move is not allowed (``stages.LEGAL_TRANSITIONS``).
            RoleTaken: it needs a role another model holds.
            ConcurrentChange: another move changed the state meanwhile (nothing changed).
            ValueError: empty ``who``/``why``, a naive ``at``, or figures that are not JSON
                (NaN included).
        """
        to_stage = Stage(to_stage)
        at = ensure_utc(at)
        if not who.strip() or not why.strip():
            raise ValueError("a transition needs a non-empty who and why")
        figures_json = _figures_json(figures)
        try:
            with self._sessions.begin() as session:
                return self._move(session, model_id, to_stage, who, why, at, figures_json)
        except IntegrityError as error:
            raise ConcurrentChange(f"moving {model_id} to {to_stage} was refused by the database (a concurrent "
                                   f"move took the stage or role): {error.orig}") from error

    def _move(self, session: Session, model_id: str, to_stage: Stage, who: str, why: str, at: datetime,
              figures_json: str) -> Transition:
        row = session.get(LifecycleModelRow, model_id)
        from_stage = None if row is None else Stage(row.stage)
        check_transition(from_stage, to_stage)
        holders = self._holders(session)
        stage_of = {m: Stage(s) for m, s in session.execute(
            select(LifecycleModelRow.model_id, LifecycleModelRow.stage)
            .where(LifecycleModelRow.model_id.in_([h for h in holders.values() if h is not None])))}
        plan = plan_roles(model_id, from_stage, to_stage, holders, stage_of)
        if plan.retire_displaced is not None:
            displaced = plan.retire_displaced
            _set_stage(session, displaced, Stage.PRODUCTION, Stage.RETIRED, at)
            session.execute(delete(LifecycleRoleRow).where(LifecycleRoleRow.role == str(Role.PRODUCTION),
                                                           LifecycleRoleRow.model_id == displaced))
            session.add(LifecycleTransitionRow(
                model_id=displaced, from_stage=str(Stage.PRODUCTION), to_stage=str(Stage.RETIRED), who=who,
                why=f"replaced in production by {model_id}: {why}", figures_json=figures_json, at=at,
                roles_after="", took_role_from=None))
            session.flush()
            logger.info("lifecycle: %s retired (replaced in production by %s)", displaced, model_id)
        if row is None:
            session.add(LifecycleModelRow(model_id=model_id, stage=str(to_stage), entered_at=at, updated_at=at))
            session.flush()
        else:
            _set_stage(session, model_id, from_stage, to_stage, at)
        for role in sorted(plan.drop):
            _compare_and_set(session.execute(delete(LifecycleRoleRow).where(
                LifecycleRoleRow.role == str(role), LifecycleRoleRow.model_id == model_id)),
                f"{model_id} no longer holds {role}")
        for role in sorted(plan.take):
            previous = None if plan.retire_displaced is not None else plan.taken_from.get(role)
            if previous is None:
                session.execute(insert(LifecycleRoleRow).values(role=str(role), model_id=model_id, since=at))
            else:
                _compare_and_set(session.execute(
                    update(LifecycleRoleRow).where(LifecycleRoleRow.role == str(role),
                                                   LifecycleRoleRow.model_id == previous)
                    .values(model_id=model_id, since=at)), f"{role} is no longer held by {previous}")
        held = {r for r, h in holders.items() if h == model_id}
        roles_after = frozenset((held - plan.drop) | plan.take)
        took_from = next((m for m in plan.taken_from.values() if m is not None), None)
        record = LifecycleTransitionRow(
            model_id=model_id, from_stage=None if from_stage is None else str(from_stage), to_stage=str(to_stage),
            who=who, why=why, figures_json=figures_json, at=at, roles_after=_roles_text(roles_after),
            took_role_from=took_from)
        session.add(record)
        session.flush()
        logger.info("lifecycle: %s %s → %s by %s (%s)", model_id, from_stage or "(new)", to_stage, who, why)
        return _transition(record)

    # --- reading -----------------------------------------------------------------------------

    def stage_of(self, model_id: str) -> Stage | None:
        """Return the model's stage, ``None`` if it never entered the lifecycle."""
        with self._sessions() as session:
            row = session.get(LifecycleModelRow, model_id)
            return None if row is None else Stage(row.stage)

    def holder(self, role: Role) -> str | None:
        """Return the model holding ``role``, ``None`` if the role is free."""
        with self._sessions() as session:
            return session.scalar(select(LifecycleRoleRow.model_id).where(LifecycleRoleRow.role == str(Role(role))))

    def holders(self) -> dict[Role, str | None]:
        """Return the holder of every role (``None``: free)."""
        with self._sessions() as session:
            return self._holders(session)

    def models(self, stage: Stage | None = None) -> list[ModelState]:
        """Return every model (or those in ``stage``) with its roles, in order of entry."""
        with self._sessions() as session:
            query = select(LifecycleModelRow).order_by(LifecycleModelRow.entered_at, LifecycleModelRow.model_id)
            if stage is not None:
                query = query.where(LifecycleModelRow.stage == str(Stage(stage)))
            rows = session.scalars(query).all()
            holders = self._holders(session)
        return [ModelState(r.model_id, Stage(r.stage), frozenset(role for role, h in holders.items()
                                                                  if h == r.model_id), r.entered_at, r.updated_at)
                for r in rows]

    def transitions(self, model_id: str | None = None, *, last: int | None = None) -> list[Transition]:
        """Return the recorded moves (of one model, or all), oldest first; only the ``last`` n if given."""
        with self._sessions() as session:
            query = select(LifecycleTransitionRow).order_by(LifecycleTransitionRow.id.desc())
            if model_id is not None:
                query = query.where(LifecycleTransitionRow.model_id == model_id)
            if last is not None:
                query = query.limit(last)
            return [_transition(r) for r in reversed(session.scalars(query).all())]

    # --- gate decisions ----------------------------------------------------------------------

    def record_gate_decision(self, gate: str, model_id: str, *, allowed: bool, decided_at: datetime,
                             decision: Mapping[str, Any]) -> int:
        """Store one gate decision (allowed or not); return its id."""
        with self._sessions.begin() as session:
            row = LifecycleGateDecisionRow(gate=gate, model_id=model_id, allowed=bool(allowed),
                                           decided_at=ensure_utc(decided_at), decision_json=_figures_json(decision))
            session.add(row)
            session.flush()
            return row.id

    def gate_decisions(self, *, gate: str | None = None, model_id: str | None = None) -> list[GateRecord]:
        """Return stored gate decisions, oldest first."""
        with self._sessions() as session:
            query = select(LifecycleGateDecisionRow).order_by(LifecycleGateDecisionRow.id)
            if gate is not None:
                query = query.where(LifecycleGateDecisionRow.gate == gate)
            if model_id is not None:
                query = query.where(LifecycleGateDecisionRow.model_id == model_id)
            return [GateRecord(r.id, r.gate, r.model_id, r.allowed, r.decided_at, json.loads(r.decision_json))
                    for r in session.scalars(query)]

    @staticmethod
    def _holders(session: Session) -> dict[Role, str | None]:
        found = dict(session.execute(select(LifecycleRoleRow.role, LifecycleRoleRow.model_id)).tuples().all())
        return {role: found.get(str(role)) for role in Role}


def _set_stage(session: Session, model_id: str, expected: Stage | None, new: Stage, at: datetime) -> None:
    result = session.execute(update(LifecycleModelRow)
                             .where(LifecycleModelRow.model_id == model_id, LifecycleModelRow.stage == str(expected))
                             .values(stage=str(new), updated_at=at))
    _compare_and_set(result, f"{model_id} is no longer in stage {expected}")


def _compare_and_set(result: Any, what: str) -> None:
    if result.rowcount != 1:
        raise ConcurrentChange(f"the lifecycle changed while the move was planned: {what}")


def _figures_json(figures: Mapping[str, Any] | None) -> str:
    try:
        return json.dumps(dict(figures or {}), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"figures must be JSON (finite numbers, strings, lists, dicts): {error}") from None


def _roles_text(roles: frozenset[Role]) -> str:
    return ",".join(sorted(str(r) for r in roles))


def _transition(row: LifecycleTransitionRow) -> Transition:
    return Transition(
        id=row.id, model_id=row.model_id, from_stage=None if row.from_stage is None else Stage(row.from_stage),
        to_stage=Stage(row.to_stage), who=row.who, why=row.why, at=row.at, figures=json.loads(row.figures_json),
        roles_after=frozenset(Role(r) for r in row.roles_after.split(",") if r), took_role_from=row.took_role_from,
    )


__all__ = ["ConcurrentChange", "GateRecord", "LifecycleStore", "ModelState", "RoleTaken", "Transition"]
