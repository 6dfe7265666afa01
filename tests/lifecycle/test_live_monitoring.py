"""The monitor on the live record: a breach demotes to paper (production restored), flattens the live account, alerts."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from cappuccino_core.lifecycle.alerts import AlertLevel
from cappuccino_core.operations.live import go_live
from cappuccino_core.operations.live_monitor import monitor_live, monitor_paper
from cappuccino_core.operations.production import step_live, step_production
from cappuccino_core.lifecycle.stages import Role, Stage
from tests.fakes.alpaca_server import FakeAlpacaServer
from tests.lifecycle.lifecycle_scenarios import (
    BAD, GOOD, POLICIES, Scene, grant_live, lifecycle_settings, make_scene,
)

LIVE_KEY, LIVE_SECRET = "AKLIVEKEY00000002", "live-s3cr3t-monitor"
START = 20


def live_scene(engine: Engine, home: Path, fake: FakeAlpacaServer, model_id: str) -> Scene:
    """``model_id`` is production (paper on its SimBroker account) and live (the fake Alpaca live account)."""
    fake.require_auth(LIVE_KEY, LIVE_SECRET)
    fake.trading.configure(cash=20_000.0, fill_mode="immediate")
    settings = lifecycle_settings(home, live_enabled=True, live_api_key=LIVE_KEY, live_secret_key=LIVE_SECRET,
                                  alpaca_live_url=fake.url, live_capital=4_000.0)
    scene = make_scene(engine, settings, POLICIES)
    store = scene.site.store
    store.move(model_id, Stage.SANDBOX, who="test", why="setup", at=scene.at(0))
    store.move(model_id, Stage.PRODUCTION, who="test", why="setup", at=scene.at(0))
    go_live(scene.site, model_id, *grant_live(scene.site, model_id, scene.at(START)), at=scene.at(START))
    return scene


def trade(scene: Scene, fake: FakeAlpacaServer, rows: range) -> None:
    for row in rows:
        fake.trading.configure(prices=dict(zip(scene.panel.symbols, scene.panel.close[row].tolist())))
        step_production(scene.site, scene.at(row))
        step_live(scene.site, scene.at(row))


def test_a_live_model_that_breaks_a_limit_is_demoted_to_paper_and_its_live_account_flattened(
        engine: Engine, tmp_path: Path, fake_alpaca: FakeAlpacaServer) -> None:
    scene = live_scene(engine, tmp_path / "home", fake_alpaca, BAD)
    trade(scene, fake_alpaca, range(START, START + 8))  # three highs bought and sold low (-14 %), a fourth held
    assert fake_alpaca.trading.holdings

    found = monitor_live(scene.site, at=scene.at(START + 8))

    store = scene.site.store
    assert found["demotion"] is not None and found["verdict"]["level"] == "critical"
    assert {"daily_loss", "drawdown"} <= set(found["verdict"]["breached"])
    assert "total_loss" not in found["verdict"]["breached"]
    assert store.holder(Role.LIVE) is None and store.holder(Role.PRODUCTION) == BAD  # back on paper, as before
    assert store.stage_of(BAD) is Stage.PRODUCTION
    assert fake_alpaca.trading.holdings == {}  # flattened
    assert not scene.site.switch.is_halted()
    alerts = [a for a in scene.site.alerts.recent() if a.source == "monitor:live"]
    assert alerts[-1].level is AlertLevel.CRITICAL and "demoted to production" in alerts[-1].message
    assert LIVE_SECRET not in alerts[-1].message
    assert monitor_live(scene.site, at=scene.at(START + 9)) == {"live": None}
    assert step_live(scene.site, scene.at(START + 9)) is None  # nothing trades real money any more


def test_a_catastrophic_live_loss_is_an_emergency_that_also_halts_trading(
        engine: Engine, tmp_path: Path, fake_alpaca: FakeAlpacaServer) -> None:
    scene = live_scene(engine, tmp_path / "home", fake_alpaca, BAD)
    trade(scene, fake_alpaca, range(START, START + 10))  # four highs bought and sold low: -18.5 %

    found = monitor_live(scene.site, at=scene.at(START + 10))

    assert found["verdict"]["level"] == "emergency" and "total_loss" in found["verdict"]["breached"]
    assert scene.site.switch.is_halted() and scene.site.store.holder(Role.LIVE) is None
    assert step_production(scene.site, scene.at(START + 10)).status == "skipped_halted"


def test_a_live_model_within_its_limits_and_its_backtest_stays_live(
        engine: Engine, tmp_path: Path, fake_alpaca: FakeAlpacaServer) -> None:
    scene = live_scene(engine, tmp_path / "home", fake_alpaca, GOOD)
    trade(scene, fake_alpaca, range(START, START + 12))

    found = monitor_live(scene.site, at=scene.at(START + 12))
    paper = monitor_paper(scene.site, at=scene.at(START + 12))

    assert found["demotion"] is None and found["verdict"]["level"] in ("ok", "warning")
    drift = {c["name"]: c for c in found["verdict"]["checks"] if c["name"] in ("tracking_error", "shortfall")}
    assert drift["shortfall"]["value"] < 0  # the fake fills without fees or slippage: live beats its backtest
    assert scene.site.store.holder(Role.LIVE) == GOOD
    checks = {c["name"]: c for c in paper["verdict"]["checks"]}
    assert abs(checks["shortfall"]["value"]) < 1e-9  # the SimBroker paper account is its backtest, bar for bar
