"""Stages: every legal and illegal move, the production and live roles, and the transition log."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete

from cappuccino_core.lifecycle.stages import (
    LEGAL_TRANSITIONS,
    IllegalTransition,
    LifecycleStateError,
    Role,
    RoleTaken,
    Stage,
    check_transition,
)
from cappuccino_core.lifecycle.store import LifecycleStore
from cappuccino_core.lifecycle.tables import LifecycleRoleRow

T0 = datetime(2024, 6, 1, tzinfo=UTC)
PATH_TO = {  # the legal path from entry to each stage
    Stage.ARENA: [Stage.ARENA],
    Stage.SANDBOX: [Stage.ARENA, Stage.SANDBOX],
    Stage.PRODUCTION: [Stage.ARENA, Stage.SANDBOX, Stage.PRODUCTION],
    Stage.LIVE: [Stage.ARENA, Stage.SANDBOX, Stage.PRODUCTION, Stage.LIVE],
    Stage.RETIRED: [Stage.ARENA, Stage.RETIRED],
}
EXPECTED_LEGAL = {
    ("arena", "sandbox"), ("arena", "retired"), ("sandbox", "production"), ("sandbox", "retired"),
    ("production", "live"), ("production", "retired"), ("live", "production"), ("live", "retired"),
}


def bring_to(store: LifecycleStore, model: str, stage: Stage, at: datetime = T0) -> None:
    """Walk ``model`` along the legal path to ``stage``."""
    for i, step in enumerate(PATH_TO[stage]):
        store.move(model, step, who="test", why=f"to {step}", at=at + timedelta(minutes=i))


@pytest.fixture
def store(engine: Engine) -> LifecycleStore:
    return LifecycleStore(engine)


# -- the table of moves ---------------------------------------------------------------------------


def test_the_legal_moves_are_exactly_the_documented_table() -> None:
    assert {(str(a), str(b)) for a, b in LEGAL_TRANSITIONS} == EXPECTED_LEGAL


@pytest.mark.parametrize(("from_stage", "to_stage"), list(itertools.product(Stage, Stage)))
def test_every_move_between_stages_is_allowed_only_if_in_the_table(
        store: LifecycleStore, from_stage: Stage, to_stage: Stage) -> None:
    model = "models:/m/1"
    bring_to(store, model, from_stage)
    before = store.transitions(model)
    if (str(from_stage), str(to_stage)) in EXPECTED_LEGAL:
        moved = store.move(model, to_stage, who="owner", why="testing the table", at=T0 + timedelta(hours=1))
        assert (moved.from_stage, moved.to_stage) == (from_stage, to_stage)
        assert store.stage_of(model) is to_stage
        assert store.transitions(model) == [*before, moved]
    else:
        with pytest.raises(IllegalTransition):
            store.move(model, to_stage, who="owner", why="testing the table", at=T0 + timedelta(hours=1))
        assert store.stage_of(model) is from_stage
        assert store.transitions(model) == before


@pytest.mark.parametrize("stage", list(Stage))
def test_a_new_model_enters_only_at_arena_or_sandbox(store: LifecycleStore, stage: Stage) -> None:
    if stage in (Stage.ARENA, Stage.SANDBOX):
        assert store.move("models:/m/7", stage, who="arena", why="entered", at=T0).from_stage is None
    else:
        with pytest.raises(IllegalTransition, match="new model enters"):
            store.move("models:/m/7", stage, who="arena", why="entered", at=T0)
        assert store.stage_of("models:/m/7") is None and store.transitions() == []


def test_arena_to_live_and_anything_out_of_retired_are_refused_with_a_reason() -> None:
    with pytest.raises(IllegalTransition, match="refused arena → live"):
        check_transition(Stage.ARENA, Stage.LIVE)
    for target in Stage:
        with pytest.raises(IllegalTransition, match="retired model stays retired"):
            check_transition(Stage.RETIRED, target)


# -- roles ----------------------------------------------------------------------------------------


def test_promotion_to_production_takes_the_role(store: LifecycleStore) -> None:
    bring_to(store, "models:/m/1", Stage.PRODUCTION)
    assert store.holders() == {Role.PRODUCTION: "models:/m/1", Role.LIVE: None}
    assert store.transitions("models:/m/1")[-1].roles_after == {Role.PRODUCTION}


def test_a_sandbox_winner_replaces_production_and_the_old_model_is_retired_in_the_same_move(
        store: LifecycleStore) -> None:
    bring_to(store, "models:/m/1", Stage.PRODUCTION)
    bring_to(store, "models:/m/2", Stage.SANDBOX)
    won = store.move("models:/m/2", Stage.PRODUCTION, who="flow:promotion", why="won head-to-head",
                     at=T0 + timedelta(days=2), figures={"score": 1.5, "opponent_score": 0.7})

    assert won.took_role_from == "models:/m/1"
    assert store.holder(Role.PRODUCTION) == "models:/m/2"
    assert store.stage_of("models:/m/1") is Stage.RETIRED
    retired = store.transitions("models:/m/1")[-1]
    assert (retired.from_stage, retired.to_stage, retired.who) == (Stage.PRODUCTION, Stage.RETIRED, "flow:promotion")
    assert "replaced in production by models:/m/2" in retired.why
    assert [m.model_id for m in store.models(Stage.PRODUCTION)] == ["models:/m/2"]


def test_going_live_keeps_the_production_role_so_the_model_holds_both(store: LifecycleStore) -> None:
    bring_to(store, "models:/m/1", Stage.LIVE)
    assert store.holders() == {Role.PRODUCTION: "models:/m/1", Role.LIVE: "models:/m/1"}
    (state,) = store.models(Stage.LIVE)
    assert state.roles == {Role.PRODUCTION, Role.LIVE}


def test_a_sandbox_winner_takes_production_from_a_live_model_which_stays_live(store: LifecycleStore) -> None:
    bring_to(store, "models:/m/1", Stage.LIVE)
    bring_to(store, "models:/m/2", Stage.SANDBOX)
    store.move("models:/m/2", Stage.PRODUCTION, who="flow:promotion", why="won", at=T0 + timedelta(days=3))
    assert store.holders() == {Role.PRODUCTION: "models:/m/2", Role.LIVE: "models:/m/1"}
    assert store.stage_of("models:/m/1") is Stage.LIVE


def test_a_second_model_cannot_go_live_while_one_is_live(store: LifecycleStore) -> None:
    bring_to(store, "models:/m/1", Stage.LIVE)
    bring_to(store, "models:/m/2", Stage.SANDBOX)
    store.move("models:/m/2", Stage.PRODUCTION, who="flow:promotion", why="won", at=T0 + timedelta(days=3))
    with pytest.raises(RoleTaken, match="models:/m/1 is live"):
        store.move("models:/m/2", Stage.LIVE, who="owner", why="green light", at=T0 + timedelta(days=5))
    assert store.holders() == {Role.PRODUCTION: "models:/m/2", Role.LIVE: "models:/m/1"}


def test_a_live_model_cannot_return_to_production_held_by_another(store: LifecycleStore) -> None:
    bring_to(store, "models:/m/1", Stage.LIVE)
    bring_to(store, "models:/m/2", Stage.SANDBOX)
    store.move("models:/m/2", Stage.PRODUCTION, who="flow:promotion", why="won", at=T0 + timedelta(days=3))
    with pytest.raises(RoleTaken, match="models:/m/2 holds it"):
        store.move("models:/m/1", Stage.PRODUCTION, who="monitor", why="drawdown", at=T0 + timedelta(days=4))
    assert store.stage_of("models:/m/1") is Stage.LIVE


def test_retiring_the_live_model_frees_both_its_roles(store: LifecycleStore) -> None:
    bring_to(store, "models:/m/1", Stage.LIVE)
    moved = store.move("models:/m/1", Stage.RETIRED, who="owner", why="enough", at=T0 + timedelta(days=9))
    assert moved.roles_after == frozenset()
    assert store.holders() == {Role.PRODUCTION: None, Role.LIVE: None}


# -- the log --------------------------------------------------------------------------------------


def test_every_move_is_recorded_with_who_why_when_and_the_figures(store: LifecycleStore) -> None:
    store.move("models:/m/3", Stage.SANDBOX, who="arena:main", why="promoted by the arena", at=T0,
               figures={"streak": 5, "alpha": 0.031})
    (record,) = store.transitions()
    assert record.to_dict() == {
        "id": record.id, "model_id": "models:/m/3", "from": None, "to": "sandbox", "who": "arena:main",
        "why": "promoted by the arena", "at": T0.isoformat(), "figures": {"alpha": 0.031, "streak": 5},
        "roles_after": [], "took_role_from": None,
    }


def test_figures_that_are_not_json_and_empty_reasons_are_refused(store: LifecycleStore) -> None:
    with pytest.raises(ValueError, match="figures must be JSON"):
        store.move("models:/m/3", Stage.ARENA, who="x", why="y", at=T0, figures={"sharpe": float("nan")})
    with pytest.raises(ValueError, match="non-empty who and why"):
        store.move("models:/m/3", Stage.ARENA, who=" ", why="y", at=T0)
    with pytest.raises(ValueError, match="naive datetime"):
        store.move("models:/m/3", Stage.ARENA, who="x", why="y", at=datetime(2024, 1, 1))
    assert store.transitions() == []


def test_the_log_returns_the_last_moves_in_order(store: LifecycleStore) -> None:
    bring_to(store, "models:/m/1", Stage.LIVE)
    assert [t.to_stage for t in store.transitions(last=2)] == [Stage.PRODUCTION, Stage.LIVE]


def test_roles_that_contradict_the_stages_are_reported_not_papered_over(store: LifecycleStore, engine: Engine) -> None:
    bring_to(store, "models:/m/1", Stage.PRODUCTION)
    with engine.begin() as connection:  # a manual edit: the production model lost its role
        connection.execute(delete(LifecycleRoleRow))
    with pytest.raises(LifecycleStateError, match="models:/m/1 is in stage production but holds no role"):
        store.move("models:/m/1", Stage.LIVE, who="owner", why="go", at=T0 + timedelta(days=1))
    assert store.stage_of("models:/m/1") is Stage.PRODUCTION
