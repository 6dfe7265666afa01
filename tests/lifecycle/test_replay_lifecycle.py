"""The offline lifecycle replay: sandbox, promotion and paper production bar by bar, then the green light."""

from __future__ import annotations

from cappuccino_core.clock import FixedClock
from cappuccino_core.operations.production import production_trader_id
from cappuccino_core.pipeline.replay import ReplayPlan, replay_green_light, replay_lifecycle
from cappuccino_core.lifecycle.stages import Role, Stage
from cappuccino_core.sandbox.runner import sandbox_trader_id
from tests.lifecycle.lifecycle_scenarios import BAD, GOOD, POLICIES, lifecycle_settings, make_scene


def _plan(engine, tmp_path, rows=range(10, 90)):
    scene = make_scene(engine, lifecycle_settings(tmp_path / "home"), POLICIES)
    bars = [scene.at(r) for r in rows]
    return scene, ReplayPlan(scene.site, scene.clock, scene.panel, bars)


def test_a_replay_walks_the_promoted_models_through_sandbox_and_production_and_judges_the_green_light(
        engine, tmp_path) -> None:
    scene, plan = _plan(engine, tmp_path)

    report = replay_lifecycle(plan, [GOOD, BAD], sandbox_days=1.0)

    assert report.bars == 80 and set(report.admitted) == {sandbox_trader_id(GOOD), sandbox_trader_id(BAD)}
    store = scene.site.store
    assert report.production == GOOD == store.holder(Role.PRODUCTION)
    assert store.stage_of(BAD) is Stage.RETIRED  # lost the head-to-head on its sandbox bars
    assert report.steps[sandbox_trader_id(GOOD)] == {"traded": 24}  # one day of 1h bars, then decided
    # decided at the close of its 24th bar, production acts from that same close to the end
    assert report.steps[f"production:{GOOD}"]["traded"] == 80 - 23
    assert [d["promoted"] for d in report.decisions] == [[GOOD]]
    green = replay_green_light(plan)
    assert green["model_id"] == GOOD and {r["name"] for r in green["decision"]["rules"]} >= {"alpha", "max_drawdown"}
    assert green["status"] in ("waiting", "refused")  # never "ready": the replay site has no live configuration
    assert scene.site.settings.live_enabled is False and not scene.site.settings.has_alpaca_keys


def test_a_second_replay_of_the_same_bars_trades_nothing_twice(engine, tmp_path) -> None:
    scene, plan = _plan(engine, tmp_path)
    replay_lifecycle(plan, [GOOD], sandbox_days=1.0)
    journal = scene.site.journal
    before = {t: len(journal.entries(t)) for t in (sandbox_trader_id(GOOD), production_trader_id(GOOD))}

    again = replay_lifecycle(ReplayPlan(scene.site, FixedClock(plan.bar_times[0]), plan.panel, plan.bar_times),
                             [GOOD], sandbox_days=1.0)

    assert again.admitted == [] and again.decisions == []
    assert {t: len(journal.entries(t)) for t in before} == before
    assert again.production == GOOD
