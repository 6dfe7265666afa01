"""Sandbox → production: the head-to-head on the sandbox run's bars, the first production model, retirement."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from cappuccino_core.lifecycle.alerts import AlertLevel
from cappuccino_core.operations.challenge import HeadToHead, head_to_head, promote_finished_runs, run_result
from cappuccino_core.operations.sandbox_entry import arena_promotions, enter_sandbox, waiting_for_sandbox
from cappuccino_core.lifecycle.stages import IllegalTransition, Role, Stage
from cappuccino_core.sandbox.runner import Sandbox
from tests.lifecycle.lifecycle_scenarios import BAD, FLAT, GOOD, HOUR, POLICIES, Rhythm, Scene, lifecycle_settings, make_scene

TWIN = "models:/zigzag/4"  # the good policy under another id: the same returns as GOOD
START, PERIOD = 10, 24


@pytest.fixture
def scene(engine: Engine, tmp_path: Path) -> Scene:
    return make_scene(engine, lifecycle_settings(tmp_path / "home"), {**POLICIES, TWIN: Rhythm(0)})


def run_sandbox(scene: Scene, models: list[str], *, start: int = START, period: int = PERIOD) -> Sandbox:
    """Enter each model in the sandbox at ``start`` for ``period`` bars and trade each bar of its period."""
    box = scene.site.sandbox()
    for model_id in models:
        enter_sandbox(scene.site, box, model_id, who="arena", why="promoted", at=scene.at(start),
                      start=scene.at(start), period=period * HOUR)
    for row in range(start, start + period):
        box.step_all(scene.at(row))
    return box


def make_production(scene: Scene, model_id: str) -> None:
    store = scene.site.store
    store.move(model_id, Stage.SANDBOX, who="test", why="setup", at=scene.at(0))
    store.move(model_id, Stage.PRODUCTION, who="test", why="setup", at=scene.at(0))


def test_a_sandbox_model_that_beats_production_on_its_bars_replaces_it(scene: Scene) -> None:
    make_production(scene, BAD)
    box = run_sandbox(scene, [GOOD])

    report = promote_finished_runs(scene.site, box, at=scene.at(START + PERIOD))

    store = scene.site.store
    assert report.promoted == [GOOD] and report.production == GOOD
    assert store.stage_of(BAD) is Stage.RETIRED and store.holder(Role.PRODUCTION) == GOOD
    match = report.matches[0]
    assert match["incumbent"] == BAD and match["bars"] == PERIOD - 1
    assert match["contender_score"] > 0 > match["incumbent_score"]
    moved = store.transitions(GOOD)[-1]
    assert moved.to_stage is Stage.PRODUCTION and moved.who == "flow:promotion"
    assert moved.figures["head_to_head"]["winner"] == GOOD and "beat production model" in moved.why
    assert "replaced in production by" in store.transitions(BAD)[-1].why
    alerts = scene.site.alerts.recent()
    assert any(a.source == "promotion" and GOOD in a.message and a.level is AlertLevel.INFO for a in alerts)


def test_a_sandbox_model_that_loses_is_retired_and_production_stays(scene: Scene) -> None:
    make_production(scene, GOOD)
    box = run_sandbox(scene, [BAD])

    report = promote_finished_runs(scene.site, box, at=scene.at(START + PERIOD))

    assert report.retired == [BAD] and report.promoted == []
    assert scene.site.store.stage_of(BAD) is Stage.RETIRED and scene.site.store.holder(Role.PRODUCTION) == GOOD
    assert "did not beat production model" in scene.site.store.transitions(BAD)[-1].why


def test_a_tie_keeps_the_incumbent_the_replay_matches_the_journal(scene: Scene) -> None:
    make_production(scene, GOOD)
    box = run_sandbox(scene, [TWIN])
    run = box.runs()[0]

    match = head_to_head(scene.site, run, GOOD)

    assert match.contender_score == pytest.approx(match.incumbent_score, rel=1e-9)
    assert not match.contender_wins and match.winner == GOOD
    report = promote_finished_runs(scene.site, box, at=scene.at(START + PERIOD))
    assert report.retired == [TWIN] and scene.site.store.holder(Role.PRODUCTION) == GOOD


def test_the_match_rule_is_higher_score_wins_and_undefined_ranks_lowest() -> None:
    def match(contender: float | None, incumbent: float | None) -> HeadToHead:
        return HeadToHead("c", "i", None, None, 0, contender, incumbent, None, None)  # type: ignore[arg-type]

    assert match(1.0, 0.5).contender_wins and not match(0.5, 1.0).contender_wins
    assert not match(1.0, 1.0).contender_wins and not match(1.0 + 1e-12, 1.0).contender_wins
    assert match(1.0 + 1e-6, 1.0).contender_wins
    assert match(-3.0, None).contender_wins and not match(None, -3.0).contender_wins
    assert not match(None, None).contender_wins


def test_with_no_production_the_best_qualifying_model_becomes_production_and_the_rest_meet_it(scene: Scene) -> None:
    box = run_sandbox(scene, [FLAT, BAD, GOOD])
    results = {r.model_ref: run_result(scene.site, r) for r in box.runs()}
    assert results[GOOD].qualifies and not results[BAD].qualifies and not results[FLAT].qualifies

    report = promote_finished_runs(scene.site, box, at=scene.at(START + PERIOD))

    store = scene.site.store
    assert report.promoted == [GOOD] and sorted(report.retired) == sorted([FLAT, BAD])
    assert report.first_production is not None
    assert {c["model_id"]: c["qualifies"] for c in report.first_production["candidates"]} == {
        GOOD: True, BAD: False, FLAT: False}
    assert [m["contender"] for m in report.matches] == [FLAT, BAD]  # the others meet the new production model
    assert store.holder(Role.PRODUCTION) == GOOD
    assert "best qualifying sandbox model" in store.transitions(GOOD)[-1].why


def test_with_no_production_and_no_qualifying_model_every_run_is_retired(scene: Scene) -> None:
    box = run_sandbox(scene, [BAD, FLAT])

    report = promote_finished_runs(scene.site, box, at=scene.at(START + PERIOD))

    assert report.promoted == [] and sorted(report.retired) == sorted([BAD, FLAT])
    assert scene.site.store.holder(Role.PRODUCTION) is None
    assert all("does not qualify" in scene.site.store.transitions(m)[-1].why for m in (BAD, FLAT))


def test_runs_are_decided_once_when_their_period_is_over(scene: Scene) -> None:
    make_production(scene, BAD)
    box = run_sandbox(scene, [GOOD], period=PERIOD)
    early = promote_finished_runs(scene.site, box, at=scene.at(START + PERIOD - 1))
    assert early.promoted == early.retired == [] and scene.site.store.stage_of(GOOD) is Stage.SANDBOX

    first = promote_finished_runs(scene.site, box, at=scene.at(START + PERIOD))
    again = promote_finished_runs(scene.site, box, at=scene.at(START + PERIOD + 5))

    assert first.promoted == [GOOD] and again.promoted == again.retired == again.matches == []
    assert len([t for t in scene.site.store.transitions() if t.model_id == GOOD]) == 2  # entered, promoted


def test_a_run_whose_model_never_entered_the_lifecycle_is_reported_not_decided(scene: Scene) -> None:
    box = scene.site.sandbox()
    run = box.start(GOOD, start=scene.at(START), period=2 * HOUR)
    for row in (START, START + 1):
        box.step_all(scene.at(row))

    report = promote_finished_runs(scene.site, box, at=scene.at(START + 2))

    assert report.not_in_lifecycle == [run.trader_id] and scene.site.store.stage_of(GOOD) is None


def test_entering_the_sandbox_is_idempotent_and_refused_past_it(scene: Scene) -> None:
    box = scene.site.sandbox()
    first = enter_sandbox(scene.site, box, GOOD, who="arena", why="promoted", at=scene.at(0), start=scene.at(5),
                          period=4 * HOUR)
    again = enter_sandbox(scene.site, box, GOOD, who="arena", why="promoted", at=scene.at(1), start=scene.at(9),
                          period=4 * HOUR)
    assert again == first and len(scene.site.store.transitions(GOOD)) == 1
    assert waiting_for_sandbox(scene.site, [GOOD, BAD]) == [BAD]
    make_production(scene, BAD)
    with pytest.raises(IllegalTransition, match="cannot enter the sandbox"):
        enter_sandbox(scene.site, box, BAD, who="arena", why="promoted", at=scene.at(2), start=scene.at(5),
                      period=4 * HOUR)


def test_with_no_arena_yet_there_is_nothing_to_admit(tmp_path: Path) -> None:
    assert arena_promotions(lifecycle_settings(tmp_path / "home")) == []
