"""Registered candidates enter the arena in registration order and meet on bars neither study searched."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cappuccino_core.arena.admission import STATUS_TAG, version_uri
from cappuccino_core.arena.config import ArenaConfig
from cappuccino_core.arena.match import WindowsDoNotFit
from cappuccino_core.arena.service import TOURNAMENT_CONFIG, ArenaSite, admit, open_arena, play
from cappuccino_core.arena.state import EntrantStatus, ExitReason
from cappuccino_core.arena.study_market import match_holdout
from cappuccino_core.clock import FixedClock
from cappuccino_core.config import Settings
from cappuccino_core.data.intervals import Interval
from cappuccino_core.search import runner
from cappuccino_core.search.spec import StudyKind, StudySpec
from cappuccino_core.search.split import HistorySplit
from cappuccino_core.tracking.store import ensure_store
from tests.arena.registry_fixtures import SYMBOLS, Registry, register_random_candidate, training_study
from tests.search.conftest import fill_store

CLOCK = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory) -> tuple[Path, Registry]:
    """70 days of a synthetic 1h market in one home (creating its MLflow store costs seconds)."""
    home = tmp_path_factory.mktemp("arena-registry") / "home"
    settings = Settings(home=home, symbols=SYMBOLS)
    reg = Registry(runner.StudyLocation.from_settings(settings), fill_store(settings.bars_dir, days=70))
    ensure_store(reg.loc.tracking_uri)
    return home, reg


@pytest.fixture
def home(shared_home, request) -> tuple[Settings, Registry, str]:
    """Settings of the shared home with this test's own registered model (tests do not see each other's)."""
    path, reg = shared_home
    model = f"model-{request.node.name[5:40]}"
    return Settings(home=path, symbols=SYMBOLS, search_lookbacks=(8, 12), model_name=model), reg, model


def _ns(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000


def _inside(result, spec) -> bool:
    """Every window's decision bar and traded bars lie in ``[search_end, holdout_end)`` of ``spec``."""
    bar = spec.interval.seconds * 1_000_000_000
    lo, hi = _ns(spec.split.search_end), _ns(spec.split.holdout_end)
    return all(lo <= s and s + (result.window_bars + 1) * bar <= hi for s in result.window_starts)


def test_candidates_enter_in_registration_order_and_play_on_the_holdout_of_the_later_study(home) -> None:
    settings, reg, model = home
    a = training_study(reg, "order-a", holdout_weeks=3, model_name=model)
    b = training_study(reg, "order-b", holdout_weeks=2, model_name=model)  # a week later: its search saw a's first holdout week
    first = [register_random_candidate(reg, a, i, seed=i) for i in range(3)]
    demoted = register_random_candidate(reg, a, 7, seed=7)
    reg.client.set_model_version_tag(model, demoted, "stage", "retired")  # no longer a candidate
    reg.client.set_model_version_tag(model, first[1], "stage", "arena")  # the lifecycle saw it enter: still admitted
    register_random_candidate(reg, a, 8, seed=8, tags={STATUS_TAG: "eliminated"})  # left another arena
    site = ArenaSite.from_settings(settings)
    arena = open_arena(site, "order", ArenaConfig(window_bars=8, windows_per_match=20), clock=CLOCK)  # short holdouts

    assert admit(arena, site) == [version_uri(model, v) for v in first]
    assert admit(arena, site) == []  # idempotent
    played = play(arena, site)
    later = [register_random_candidate(reg, b, i, seed=20 + i) for i in range(2)]  # a later study keeps entering
    assert admit(arena, site) == [version_uri(model, v) for v in later]
    played += play(arena, site)

    status = arena.status()
    assert [(e.candidate_id, e.study) for e in status.entrants] == (
        [(version_uri(model, v), "order-a") for v in first] + [(version_uri(model, v), "order-b") for v in later]
    )
    assert [r.challenger_id for r in played] == [e.candidate_id for e in status.entrants[1:]]
    assert [r.market for r in played] == ["order-a", "order-a", "order-b", "order-b"]
    for result in played:
        spec = a if result.market == "order-a" else b
        assert _inside(result, spec), f"match {result.match_number} traded outside {spec.name}'s holdout"
        assert len(result.window_starts) == 20 and result.window_bars >= 2
    # the first match on b's holdout pits an a-model against a b-model: no bar before b's search_end
    crossover = played[2]
    assert min(crossover.window_starts) >= _ns(b.split.search_end) > _ns(a.split.search_end)
    assert all(r.king_score is not None and r.challenger_score is not None for r in played)


def test_the_holdout_of_a_pair_is_after_the_later_search_end_and_before_that_studys_holdout_end() -> None:
    day = datetime(2025, 1, 1, tzinfo=UTC)

    def study(name: str, search_end: int, holdout_end: int) -> StudySpec:
        split = HistorySplit(day, day + timedelta(days=search_end), day + timedelta(days=holdout_end),
                             day + timedelta(days=holdout_end))
        return StudySpec(name=name, kind=StudyKind.TRAINING, cap=1, seed=0, symbols=SYMBOLS,
                         base_interval=Interval.H1, split=split, intervals=(Interval.H1,), lookbacks=(8,))

    a, b = study("a", 60, 88), study("b", 67, 95)
    assert match_holdout(a, b) == match_holdout(b, a)
    held = match_holdout(a, b)
    assert (held.study, held.start, held.end) == ("b", b.split.search_end, b.split.holdout_end)
    assert match_holdout(a, a).study == "a"
    older_but_longer = study("c", 67, 90)  # equal search ends: the earlier holdout end (inside both holdouts)
    assert match_holdout(b, older_but_longer).study == "c"
    assert match_holdout(b, study("0", 67, 95)).study == "0"  # then the name


def test_a_holdout_too_short_for_the_windows_is_refused_and_nothing_is_recorded(home) -> None:
    settings, reg, _ = home
    a = training_study(reg, "short-a", holdout_weeks=2, model_name=settings.model_name)
    for i in range(2):
        register_random_candidate(reg, a, i, seed=i)
    site = ArenaSite.from_settings(settings)
    weekly = replace(TOURNAMENT_CONFIG, window_bars=168)  # 20 one-week windows cannot fit in two weeks
    arena = open_arena(site, "weekly", weekly, clock=CLOCK)
    admit(arena, site)
    with pytest.raises(WindowsDoNotFit, match="short-a.*holds 1 non-overlapping windows of 168 bars"):
        play(arena, site)
    assert arena.status().matches_played == 0 and arena.match_log() == []


def test_a_king_that_cannot_trade_the_new_studys_interval_forfeits_without_a_win_being_counted(home) -> None:
    settings, reg, model = home
    hourly = training_study(reg, "forfeit-1h", holdout_weeks=3, model_name=model)
    four_hourly = training_study(reg, "forfeit-4h", holdout_weeks=2, interval=Interval.H4, model_name=model)
    old_king = register_random_candidate(reg, hourly, 0, seed=0)
    newcomers = [register_random_candidate(reg, four_hourly, i, seed=40 + i) for i in range(2)]
    site = ArenaSite.from_settings(settings)
    arena = open_arena(site, "forfeit", ArenaConfig(window_bars=4, windows_per_match=10), clock=CLOCK)
    admit(arena, site)
    forfeit, normal = play(arena, site)

    assert forfeit.market == normal.market == "forfeit-4h"
    assert forfeit.king_forfeit is not None and "trained on 1h bars" in forfeit.king_forfeit
    assert (forfeit.king_score, forfeit.winner_id, forfeit.streak_after) == (None, version_uri(model, newcomers[0]), 0)
    assert normal.king_forfeit is None and normal.challenger_forfeit is None and normal.king_score is not None
    loser = next(e for e in arena.status().entrants if e.candidate_id == version_uri(model, old_king))
    assert (loser.status, loser.reason) == (EntrantStatus.ELIMINATED, ExitReason.FORFEIT)
