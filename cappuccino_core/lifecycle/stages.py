"""The stages a model passes through, the moves between them, and the two roles they carry.

Stages: ``arena`` (a tournament entrant), ``sandbox`` (paper-trades a virtual account for its
period), ``production`` (the paper champion), ``live`` (trades real money) and ``retired``.

Legal moves (anything else is refused with ``IllegalTransition``):

============  ==============================  =================================================
from          to                              when
============  ==============================  =================================================
(new)         arena, sandbox                  a model enters: registered in an arena, or put in
                                              the sandbox by an arena promotion
arena         sandbox, retired                promoted by the arena / eliminated
sandbox       production, retired             won the head-to-head (or production was empty) /
                                              lost it
production    live, retired                   green light and approval / replaced or retired
live          production, retired             demotion back to paper / demotion out
retired       (nothing)                       retirement is final
============  ==============================  =================================================

So ``arena → live``, ``sandbox → live``, ``arena → production``, any move out of ``retired``
and any move to the stage a model is already in are refused. A model never re-enters.

Roles. ``production`` and ``live`` are also **roles**, each held by at most one model (the
database enforces it, see ``tables``). A model in stage ``production`` holds the production
role; a model in stage ``live`` holds the live role and, when it went live from production
and no sandbox winner has taken production since, the production role too ("both roles":
paper and live trade the same policy side by side, which is what the live-versus-paper
comparison needs). ``plan_roles`` says what a move does to the roles:

* ``sandbox → production`` takes the production role. A holder in stage ``production`` is
  retired in the same transaction (it was replaced); a holder in stage ``live`` keeps live
  and loses production.
* ``production → live`` takes the live role, which must be free (demote the live model
  first), and keeps production.
* ``live → production`` drops live and keeps production if the model held both roles (the
  paper side is left exactly as it was before the model went live); it takes production if
  the role is free; it is refused if another model holds production (that model beat it on
  paper: the demotion must retire it instead).
* ``production → retired`` and ``live → retired`` drop every role the model holds; a role
  left free stays free until a promotion fills it (with no production model, the best
  qualifying sandbox model becomes production).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    """Where a model is in its life."""

    ARENA = "arena"
    SANDBOX = "sandbox"
    PRODUCTION = "production"
    LIVE = "live"
    RETIRED = "retired"


class Role(StrEnum):
    """A position only one model may hold at a time."""

    PRODUCTION = "production"
    LIVE = "live"


ENTRY_STAGES: frozenset[Stage] = frozenset({Stage.ARENA, Stage.SANDBOX})
"""Stages a model not seen before may enter at."""

LEGAL_TRANSITIONS: frozenset[tuple[Stage, Stage]] = frozenset({
    (Stage.ARENA, Stage.SANDBOX),
    (Stage.ARENA, Stage.RETIRED),
    (Stage.SANDBOX, Stage.PRODUCTION),
    (Stage.SANDBOX, Stage.RETIRED),
    (Stage.PRODUCTION, Stage.LIVE),
    (Stage.PRODUCTION, Stage.RETIRED),
    (Stage.LIVE, Stage.PRODUCTION),
    (Stage.LIVE, Stage.RETIRED),
})
"""Every legal ``(from, to)`` move of a model already in the lifecycle."""


class IllegalTransition(ValueError):
    """A move the lifecycle does not allow (``arena → live``, anything out of ``retired``, ...)."""


class TransitionRefused(RuntimeError):
    """A legal move that cannot be made in the current state (nothing was changed)."""


class RoleTaken(TransitionRefused):
    """The role a move needs is held by another model."""


class LifecycleStateError(RuntimeError):
    """The stored stages and roles contradict each other (a bug or a manual edit)."""


def check_transition(from_stage: Stage | None, to_stage: Stage) -> None:
    """Refuse a move the lifecycle does not allow.

    Args:
        from_stage: the model's current stage, ``None`` for a model not seen before.
        to_stage: where it should go.

    Raises:
        IllegalTransition: the move is not in ``LEGAL_TRANSITIONS`` (or, for a new model,
            ``to_stage`` is not an entry stage).
    """
    to_stage = Stage(to_stage)
    if from_stage is None:
        if to_stage not in ENTRY_STAGES:
            entries = ", ".join(sorted(ENTRY_STAGES))
            raise IllegalTransition(f"a new model enters at {entries}, not at {to_stage}")
        return
    from_stage = Stage(from_stage)
    if from_stage is Stage.RETIRED:
        raise IllegalTransition(f"a retired model stays retired (refused retired → {to_stage})")
    if (from_stage, to_stage) not in LEGAL_TRANSITIONS:
        allowed = ", ".join(sorted(str(to) for frm, to in LEGAL_TRANSITIONS if frm is from_stage))
        raise IllegalTransition(f"refused {from_stage} → {to_stage}: from {from_stage} a model may go to {allowed}")


@dataclass(frozen=True)
class RolePlan:
    """What one move does to the roles.

    Attributes:
        take: roles the moving model takes.
        drop: roles the moving model gives up.
        taken_from: the model a taken role is taken from, by role (``None``: the role was free).
        retire_displaced: a model in stage production that the move retires (it was replaced).
    """

    take: frozenset[Role]
    drop: frozenset[Role]
    taken_from: Mapping[Role, str | None]
    retire_displaced: str | None


def plan_roles(
    model_id: str,
    from_stage: Stage | None,
    to_stage: Stage,
    holders: Mapping[Role, str | None],
    stage_of: Mapping[str, Stage],
) -> RolePlan:
    """Return what moving ``model_id`` from ``from_stage`` to ``to_stage`` does to the roles.

    Args:
        model_id: the moving model.
        from_stage: its stage now (``None`` if new); the move must be legal.
        to_stage: its stage after the move.
        holders: the current holder of each role (missing or ``None``: free).
        stage_of: the current stage of each holder.

    Raises:
        RoleTaken: the move needs a role another model holds (see the module docstring).
        LifecycleStateError: the roles contradict the stages (e.g. a production model
            that does not hold the production role).
    """
    production, live = holders.get(Role.PRODUCTION), holders.get(Role.LIVE)
    held = frozenset(r for r, holder in ((Role.PRODUCTION, production), (Role.LIVE, live)) if holder == model_id)
    _check_roles_match_stage(model_id, from_stage, held)
    none: frozenset[Role] = frozenset()
    if from_stage is Stage.SANDBOX and to_stage is Stage.PRODUCTION:
        displaced = production if production is not None and stage_of.get(production) is Stage.PRODUCTION else None
        return RolePlan(frozenset({Role.PRODUCTION}), none, {Role.PRODUCTION: production}, displaced)
    if from_stage is Stage.PRODUCTION and to_stage is Stage.LIVE:
        if live is not None:
            raise RoleTaken(f"{model_id} cannot go live: {live} is live; demote or retire it first")
        return RolePlan(frozenset({Role.LIVE}), none, {Role.LIVE: None}, None)
    if from_stage is Stage.LIVE and to_stage is Stage.PRODUCTION:
        if production not in (None, model_id):
            raise RoleTaken(f"{model_id} cannot return to production: {production} holds it "
                            "(it beat this model on paper); retire the live model instead")
        take = frozenset({Role.PRODUCTION}) if production is None else none
        return RolePlan(take, frozenset({Role.LIVE}), {Role.PRODUCTION: None} if take else {}, None)
    if to_stage is Stage.RETIRED:
        return RolePlan(none, held, {}, None)
    return RolePlan(none, none, {}, None)


def _check_roles_match_stage(model_id: str, stage: Stage | None, held: frozenset[Role]) -> None:
    """Refuse a model whose roles contradict its stage (production holds exactly production, live holds live)."""
    if stage is Stage.PRODUCTION:
        consistent = held == {Role.PRODUCTION}
    elif stage is Stage.LIVE:
        consistent = Role.LIVE in held
    else:
        consistent = not held
    if not consistent:
        roles = ", ".join(sorted(held)) or "no role"
        raise LifecycleStateError(f"{model_id} is in stage {stage} but holds {roles}")
