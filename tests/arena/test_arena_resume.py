"""Crash and resume: whatever the interruption, the final state and match log equal an uninterrupted run."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cappuccino_core.arena.evaluator import EvaluationError
from cappuccino_core.arena.state import ArenaStatus
from cappuccino_core.arena.store import ArenaStore, RecordOutcome
from cappuccino_core.arena.tournament import Arena
from cappuccino_core.clock import FixedClock
from cappuccino_core.db import create_schema, make_engine, session_factory
from cappuccino_core.evaluation.backtest import PolicyContext
from tests.arena.arena_scenarios import (
    ENV,
    RESUME_CONFIG,
    T0,
    Market,
    PolicyBook,
    make_market,
    register_all,
    resume_players,
)

REPO = Path(__file__).resolve().parents[2]


class InjectedCrash(RuntimeError):
    """Stands for a process dying at the point it is raised."""


@pytest.fixture(scope="module")
def market() -> Market:
    return make_market(seed=7, plant_strength=1.0)


@pytest.fixture(scope="module")
def reference(market) -> tuple[ArenaStatus, list]:
    """The uninterrupted run: final status and match log."""
    engine = make_engine("sqlite://")
    create_schema(engine)
    arena = _open(ArenaStore(session_factory(engine)))
    players = resume_players(market)
    register_all(arena, list(players))
    arena.play_pending(PolicyBook(players).load, market.panel, ENV)
    return arena.status(), arena.match_log()


def _open(store: ArenaStore) -> Arena:
    return Arena(store, "resume", RESUME_CONFIG, clock=FixedClock(T0))


def test_the_scenario_exercises_ties_rejections_promotions_and_crownings(reference) -> None:
    status, log = reference
    outcomes = {str(r.outcome) for r in log}
    assert outcomes == {"king_wins", "challenger_wins", "tie"}
    assert any(r.rejected_id for r in log) and any(r.promoted_id for r in log)
    assert sum(e.crowned_after_match is not None for e in status.entrants) >= 3
    assert status.waiting == ()


class _ExplodingPolicy:
    """Acts like ``inner`` but raises on the ``at``-th call of a shared counter (once per counter)."""

    def __init__(self, inner, counter: list[int], at: int) -> None:
        self.inner, self.counter, self.at, self.name = inner, counter, at, inner.name

    def act(self, obs: torch.Tensor, context: PolicyContext) -> torch.Tensor:
        self.counter[0] += 1
        if self.counter[0] == self.at:
            raise InjectedCrash("the evaluator died in the middle of a backtest")
        return self.inner.act(obs, context)


def test_resuming_after_crashes_between_and_inside_matches_equals_an_uninterrupted_run(
    arena_engine, market, reference
) -> None:
    store = ArenaStore(session_factory(arena_engine))
    players = resume_players(market)
    register_all(_open(store), list(players))
    loads = [0]
    act_calls = [0]
    committed_crash = {"armed": True}

    def load(candidate_id: str):
        loads[0] += 1
        if loads[0] in (3, 11):  # while a batch of the king and challengers is being loaded
            raise InjectedCrash(f"load number {loads[0]} died")
        policy, normalizer = PolicyBook(players).load(candidate_id)
        if candidate_id == "r6":
            policy = _ExplodingPolicy(policy, act_calls, at=10)  # dies 10 bars into its windows
        return policy, normalizer

    def on_match(result) -> None:  # dies after the commit, before anyone hears of match 9
        if result.match_number == 9 and committed_crash["armed"]:
            committed_crash["armed"] = False
            raise InjectedCrash("died right after committing match 9")

    crashes = restarts = 0
    while True:
        arena = _open(store)  # every restart is a fresh process: no memory, state from the database
        restarts += 1
        try:
            arena.play_pending(load, market.panel, ENV, max_matches=3, on_match=on_match)
        except (EvaluationError, InjectedCrash):
            crashes += 1
            continue
        if not arena.status().waiting:
            break
        assert restarts < 50

    assert crashes == 4  # two loads, one backtest, one after a commit
    status, log = reference
    assert arena.status() == status
    assert arena.match_log() == log
    assert [r.match_number for r in log] == list(range(1, len(log) + 1))


def test_replaying_a_recorded_match_changes_nothing(arena_engine, market) -> None:
    store = ArenaStore(session_factory(arena_engine))
    arena = _open(store)
    players = resume_players(market)
    register_all(arena, list(players))
    arena.play_pending(PolicyBook(players).load, market.panel, ENV, max_matches=4)
    status, log = arena.status(), arena.match_log()

    for result in (log[0], log[-1]):
        assert store.record_match(result) is RecordOutcome.ALREADY_RECORDED
    assert arena.status() == status and arena.match_log() == log


def test_a_match_computed_from_a_state_that_moved_on_is_not_recorded(arena_engine, market) -> None:
    store = ArenaStore(session_factory(arena_engine))
    arena = _open(store)
    players = resume_players(market)
    register_all(arena, list(players))
    arena.play_pending(PolicyBook(players).load, market.panel, ENV, max_matches=2)
    status, log = arena.status(), arena.match_log()

    # Another worker computed match 2 between other players: it must not overwrite the log.
    rival = dataclasses.replace(log[-1], match_id="rival", challenger_id="r9", loser_id="r9")
    assert store.record_match(rival) is RecordOutcome.STALE
    assert arena.status() == status and arena.match_log() == log


def test_a_killed_arena_process_resumes_to_the_uninterrupted_result(tmp_path, market, reference) -> None:
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    engine = make_engine(url)
    create_schema(engine)
    store = ArenaStore(session_factory(engine))
    players = resume_players(market)
    register_all(_open(store), list(players))  # the child registers the same entrants (idempotent)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.arena.arena_scenarios", url, "0.003"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while store.throne("resume", waiting_limit=1).matches_played < 3:
            assert child.poll() is None, f"the child ended before it was killed: {child.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "the child recorded no 3 matches in 120 s"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    killed_at = store.throne("resume", waiting_limit=1).matches_played
    assert killed_at < len(reference[1])

    arena = _open(store)
    arena.play_pending(PolicyBook(players).load, market.panel, ENV)
    status, log = reference
    assert arena.status() == status
    assert arena.match_log() == log
