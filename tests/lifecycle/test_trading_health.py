"""Health: missed bars, catastrophic losses, repeated errors and stale data become alerts (once an hour each)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from cappuccino_core.lifecycle.alerts import AlertLevel
from cappuccino_core.operations.health import check_health
from cappuccino_core.operations.production import production_trader_id, step_production
from cappuccino_core.lifecycle.stages import Stage
from cappuccino_core.trading.journal import JournalEntry, StepStatus
from tests.lifecycle.lifecycle_scenarios import BAD, GOOD, HOUR, POLICIES, Scene, lifecycle_settings, make_scene


def production(scene: Scene, model_id: str, at_row: int) -> None:
    store = scene.site.store
    store.move(model_id, Stage.SANDBOX, who="test", why="setup", at=scene.at(0))
    store.move(model_id, Stage.PRODUCTION, who="test", why="setup", at=scene.at(at_row))


def checks(report: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for finding in report["findings"]:
        out.setdefault(finding["check"], []).append(finding)
    return out


def test_a_trader_that_missed_its_bar_raises_a_critical_alert_once_an_hour(engine: Engine, tmp_path: Path) -> None:
    scene = make_scene(engine, lifecycle_settings(tmp_path / "home"), POLICIES)
    production(scene, GOOD, 10)
    for row in range(10, 14):
        step_production(scene.site, scene.at(row))
    box = scene.site.sandbox()
    box.start(BAD, trader_id="sbx-bad", start=scene.at(10), period=48 * HOUR)
    for row in range(10, 15):
        box.step_all(scene.at(row))

    scene.move_clock(14)  # bar 14 closed: every trader should have bar 13 (one bar of grace)
    on_time = check_health(scene.site, at=scene.clock.now(), check_data=False)
    scene.move_clock(15)
    late = check_health(scene.site, at=scene.clock.now(), check_data=False)
    again = check_health(scene.site, at=scene.clock.now() + timedelta(minutes=5), check_data=False)

    assert {w["role"] for w in on_time["watched"]} == {"production", "sandbox"}
    assert "missed_bar" not in checks(on_time)
    missed = checks(late)["missed_bar"]
    assert [m["subject"] for m in missed] == [production_trader_id(GOOD)]  # the sandbox run traded bar 14
    assert "expected 2024-01-01T14:00:00+00:00" in missed[0]["message"]
    assert checks(again)["missed_bar"]  # still found ...
    alerts = [a for a in scene.site.alerts.recent() if a.source.startswith("health:missed_bar")]
    assert len(alerts) == 1 and alerts[0].level is AlertLevel.CRITICAL  # ... but alerted once


def test_a_catastrophic_loss_is_an_emergency(engine: Engine, tmp_path: Path) -> None:
    scene = make_scene(engine, lifecycle_settings(tmp_path / "home", catastrophic_loss=0.12), POLICIES)
    box = scene.site.sandbox()
    box.start(BAD, trader_id="sbx-bad", start=scene.at(10), period=48 * HOUR)
    box.start(GOOD, trader_id="sbx-good", start=scene.at(10), period=48 * HOUR)
    for row in range(10, 20):
        box.step_all(scene.at(row))
    scene.move_clock(19)

    found = checks(check_health(scene.site, at=scene.clock.now(), check_data=False))

    assert [f["subject"] for f in found["catastrophic_loss"]] == ["sbx-bad"]
    assert found["catastrophic_loss"][0]["level"] == "emergency" and "limit 12%" in found["catastrophic_loss"][0]["message"]


def test_repeated_failed_steps_raise_a_critical_alert(engine: Engine, tmp_path: Path) -> None:
    scene = make_scene(engine, lifecycle_settings(tmp_path / "home", max_step_errors=3), POLICIES)
    production(scene, GOOD, 10)
    trader_id = production_trader_id(GOOD)

    def fail(row: int) -> None:
        scene.site.journal.record(JournalEntry(trader_id, scene.at(row), StepStatus.ERROR, scene.at(row) + HOUR,
                                               errors=("RuntimeError: the model crashed",)))

    fail(10)
    fail(11)
    two = checks(check_health(scene.site, at=scene.at(12), check_data=False))
    fail(12)
    three = checks(check_health(scene.site, at=scene.at(13), check_data=False))

    assert "errors" not in two
    assert three["errors"][0]["level"] == "critical" and "3 failed steps" in three["errors"][0]["message"]


def test_stale_or_missing_bars_raise_a_warning(engine: Engine, tmp_path: Path) -> None:
    scene = make_scene(engine, lifecycle_settings(tmp_path / "home"), POLICIES)
    found = checks(check_health(scene.site, at=scene.at(20)))
    assert found["stale_data"][0]["level"] == "warning" and "no bars are stored" in found["stale_data"][0]["message"]
