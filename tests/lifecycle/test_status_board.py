"""The status board: every stage on one page, stages not started say so, never an exception."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine

from cappuccino_core.operations.status_board import status_board
from cappuccino_core.operations.production import step_production
from cappuccino_core.lifecycle.stages import Stage
from tests.lifecycle.lifecycle_scenarios import BAD, GOOD, HOUR, POLICIES, lifecycle_settings, make_scene


def test_an_empty_home_shows_every_stage_as_not_started(engine: Engine, tmp_path: Path) -> None:
    settings = lifecycle_settings(tmp_path / "home")
    scene = make_scene(engine, settings, POLICIES)

    board = status_board(settings, now=scene.at(0), site=scene.site)

    assert board["data"]["status"] == "not started"
    assert board["study"]["training"]["status"] == board["study"]["timeframe"]["status"] == "not started"
    assert board["arena"]["status"] == "not started"
    assert board["sandbox"] == [] and board["production"]["model_id"] is None
    assert board["live"] == {"model_id": None, "allowed": False, "message": board["live"]["message"]}
    assert "CAPPUCCINO_LIVE_ENABLED" in board["live"]["message"]
    assert board["halt"]["halted"] is False and board["transitions"] == board["alerts"] == []
    json.dumps(board)  # the --json document


def test_the_board_shows_sandbox_production_transitions_alerts_and_the_halt(engine: Engine, tmp_path: Path) -> None:
    settings = lifecycle_settings(tmp_path / "home")
    scene = make_scene(engine, settings, POLICIES)
    site = scene.site
    site.store.move(GOOD, Stage.SANDBOX, who="arena", why="promoted", at=scene.at(0))
    site.store.move(GOOD, Stage.PRODUCTION, who="flow:promotion", why="first", at=scene.at(1))
    for row in range(10, 16):
        step_production(site, scene.at(row))
    box = site.sandbox()
    site.store.move(BAD, Stage.SANDBOX, who="arena", why="promoted", at=scene.at(10))
    box.start(BAD, start=scene.at(10), period=48 * HOUR)
    for row in range(10, 13):
        box.step_all(scene.at(row))
    site.switch.halt(reason="owner is away", who="owner", at=scene.at(16))
    site.alert("warning", "test", "something to look at", at=scene.at(16))

    board = status_board(settings, now=scene.at(16), site=site)

    production = board["production"]
    assert production["model_id"] == GOOD and production["account"] == "sim" and production["bars"] == 5
    assert production["return"] > 0 and production["green_light"] is None
    [run] = board["sandbox"]
    assert run["model"] == BAD and run["stage"] == "sandbox" and run["traded_bars"] == 3
    assert [t["to"] for t in board["transitions"]] == ["sandbox", "production", "sandbox"]
    assert board["halt"] == {"halted": True, "reason": "owner is away", "who": "owner",
                             "since": scene.at(16).isoformat()}
    assert board["alerts"][-1]["message"] == "something to look at"
    json.dumps(board)
