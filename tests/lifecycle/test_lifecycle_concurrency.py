"""The database, not the code, keeps one production and one live model: direct writes and racing promotions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, event, insert
from sqlalchemy.exc import IntegrityError

from cappuccino_core.lifecycle.stages import Role, Stage, TransitionRefused
from cappuccino_core.lifecycle.store import LifecycleStore, Transition
from cappuccino_core.lifecycle.tables import LifecycleModelRow, LifecycleRoleRow

T0 = datetime(2024, 6, 1, tzinfo=UTC)
WRITES = ("UPDATE", "INSERT", "DELETE")


def to_sandbox(store: LifecycleStore, *models: str) -> None:
    for model in models:
        store.move(model, Stage.SANDBOX, who="arena", why="promoted", at=T0)


def hold_first_write_until_both_arrive(engine: Engine, barrier: threading.Barrier) -> None:
    """Make this engine's first write wait for the other thread's: both moves have read the old state."""
    waited = threading.local()

    @event.listens_for(engine, "before_cursor_execute")
    def _wait(_conn, _cursor, statement: str, *_args) -> None:
        if statement.lstrip().upper().startswith(WRITES) and not getattr(waited, "done", False):
            waited.done = True
            barrier.wait(timeout=20)


def race(open_engine: Callable[[], Engine], challengers: list[str]) -> list[Transition | Exception]:
    """Promote each challenger to production from its own engine (own connections) at the same moment."""
    barrier = threading.Barrier(len(challengers))
    results: list[Transition | Exception] = [RuntimeError("not run")] * len(challengers)

    def promote(i: int, model: str) -> None:
        engine = open_engine()
        hold_first_write_until_both_arrive(engine, barrier)
        try:
            results[i] = LifecycleStore(engine).move(model, Stage.PRODUCTION, who=f"worker-{i}", why="won",
                                                     at=T0 + timedelta(days=2))
        except Exception as exc:  # noqa: BLE001 - the test inspects what each worker got
            results[i] = exc

    threads = [threading.Thread(target=promote, args=(i, m)) for i, m in enumerate(challengers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return results


def test_the_database_refuses_a_second_production_model_written_behind_the_stores_back(
        open_engine: Callable[[], Engine]) -> None:
    engine = open_engine()
    store = LifecycleStore(engine)
    to_sandbox(store, "models:/m/1")
    store.move("models:/m/1", Stage.PRODUCTION, who="t", why="first", at=T0)
    row = {"stage": "production", "entered_at": T0, "updated_at": T0}
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(LifecycleModelRow).values(model_id="models:/m/2", **row))
    with engine.begin() as connection:
        connection.execute(insert(LifecycleModelRow).values(model_id="models:/m/3", **{**row, "stage": "live"}))
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(LifecycleModelRow).values(model_id="models:/m/4", **{**row, "stage": "live"}))
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(LifecycleRoleRow).values(role="production", model_id="models:/m/3", since=T0))
    # Several models may share the other stages.
    to_sandbox(store, "models:/m/5", "models:/m/6")
    assert len(store.models(Stage.SANDBOX)) == 2


def test_two_concurrent_promotions_to_an_empty_production_leave_exactly_one_production_model(
        open_engine: Callable[[], Engine]) -> None:
    store = LifecycleStore(open_engine())
    to_sandbox(store, "models:/m/1", "models:/m/2")

    results = race(open_engine, ["models:/m/1", "models:/m/2"])

    winners = [r for r in results if isinstance(r, Transition)]
    losers = [r for r in results if not isinstance(r, Transition)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert isinstance(losers[0], TransitionRefused), repr(losers[0])
    winner = winners[0].model_id
    loser = ({"models:/m/1", "models:/m/2"} - {winner}).pop()
    assert store.holder(Role.PRODUCTION) == winner
    assert [m.model_id for m in store.models(Stage.PRODUCTION)] == [winner]
    assert store.stage_of(loser) is Stage.SANDBOX
    assert [t.to_stage for t in store.transitions(loser)] == [Stage.SANDBOX]


def test_two_concurrent_challengers_replace_production_once(open_engine: Callable[[], Engine]) -> None:
    store = LifecycleStore(open_engine())
    to_sandbox(store, "models:/m/1", "models:/m/2", "models:/m/3")
    store.move("models:/m/1", Stage.PRODUCTION, who="t", why="first", at=T0)

    results = race(open_engine, ["models:/m/2", "models:/m/3"])

    winners = [r for r in results if isinstance(r, Transition)]
    assert len(winners) == 1, results
    assert all(isinstance(r, TransitionRefused) for r in results if not isinstance(r, Transition)), results
    assert store.holder(Role.PRODUCTION) == winners[0].model_id
    assert winners[0].took_role_from == "models:/m/1"
    assert [m.model_id for m in store.models(Stage.PRODUCTION)] == [winners[0].model_id]
    retirements = [t for t in store.transitions("models:/m/1") if t.to_stage is Stage.RETIRED]
    assert len(retirements) == 1


def test_two_concurrent_moves_to_live_leave_exactly_one_live_model(open_engine: Callable[[], Engine]) -> None:
    store = LifecycleStore(open_engine())
    to_sandbox(store, "models:/m/1", "models:/m/2")
    store.move("models:/m/1", Stage.PRODUCTION, who="t", why="first", at=T0)
    # Two approvals of the same production model racing: one moves it, the other finds it moved.
    barrier = threading.Barrier(2)
    results: list[object] = [None, None]

    def approve(i: int) -> None:
        engine = open_engine()
        hold_first_write_until_both_arrive(engine, barrier)
        try:
            results[i] = LifecycleStore(engine).move("models:/m/1", Stage.LIVE, who=f"approver-{i}", why="go",
                                                     at=T0 + timedelta(days=3))
        except Exception as exc:  # noqa: BLE001 - inspected below
            results[i] = exc

    threads = [threading.Thread(target=approve, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sum(isinstance(r, Transition) for r in results) == 1, results
    assert sum(isinstance(r, TransitionRefused) for r in results) == 1, results
    assert store.holders() == {Role.PRODUCTION: "models:/m/1", Role.LIVE: "models:/m/1"}
    assert [t.to_stage for t in store.transitions("models:/m/1")].count(Stage.LIVE) == 1
