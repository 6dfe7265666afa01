"""The road to live: green light on the paper record, waiting without live configuration, approval, ramped capital."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cappuccino_core.config import SettingsError
from cappuccino_core.lifecycle.alerts import AlertLevel
from cappuccino_core.operations.live import (
    Approval, GateStatus, LiveGateRefused, LiveMirrorFailed, go_live, judge_green_light, record_approval,
)
from cappuccino_core.operations.live_account import LiveAccountTooSmall, ReservedBroker
from cappuccino_core.operations.production import live_record, step_live, step_production
from cappuccino_core.operations.site import LiveNotAllowed, live_readiness
from cappuccino_core.lifecycle.stages import Role, Stage
from cappuccino_core.trading.broker import Account
from tests.fakes.alpaca_server import FakeAlpacaServer
from tests.lifecycle.lifecycle_scenarios import (
    BAD, GOOD, POLICIES, Scene, grant_live, lifecycle_settings, make_scene, zigzag_panel,
)

LIVE_KEY, LIVE_SECRET = "AKLIVEKEY00000001", "live-s3cr3t-value"
OWNER = Approval(True, "looks right", "owner")


def live_settings(home: Path, url: str, **overrides):
    return lifecycle_settings(home, live_enabled=True, live_api_key=LIVE_KEY, live_secret_key=LIVE_SECRET,
                              alpaca_live_url=url, live_capital=10_000.0, **overrides)


def paper_trade(scene: Scene, model_id: str, rows: range) -> None:
    store = scene.site.store
    store.move(model_id, Stage.SANDBOX, who="test", why="setup", at=scene.at(0))
    store.move(model_id, Stage.PRODUCTION, who="test", why="setup", at=scene.at(0))
    for row in rows:
        step_production(scene.site, scene.at(row))


def test_the_green_light_is_judged_on_two_days_of_paper_and_recorded(engine: Engine, tmp_path: Path) -> None:
    scene = make_scene(engine, lifecycle_settings(tmp_path / "home"), POLICIES, panel=zigzag_panel(80))
    site = scene.site
    assert judge_green_light(site, at=scene.at(5)).status is GateStatus.NO_PRODUCTION
    paper_trade(scene, GOOD, range(10, 30))

    short = judge_green_light(site, at=scene.at(30))
    assert short.status is GateStatus.REFUSED and "days of record, need 2" in short.message
    for row in range(30, 60):
        step_production(site, scene.at(row))
    ok = judge_green_light(site, at=scene.at(60))

    assert ok.status is GateStatus.WAITING and ok.decision is not None and ok.decision["allowed"]
    for missing in ("CAPPUCCINO_LIVE_ENABLED", "CAPPUCCINO_LIVE_API_KEY", "CAPPUCCINO_LIVE_CAPITAL"):
        assert missing in ok.message
    stored = site.store.gate_decisions(gate="green_light", model_id=GOOD)
    assert [d.allowed for d in stored] == [False, True]
    assert {r["name"] for r in stored[-1].decision["rules"]} == {"history", "alpha", "sharpe", "max_drawdown", "errors"}
    waiting = [a for a in site.alerts.recent() if a.source == "live_gate"]
    assert len(waiting) == 1 and waiting[0].level is AlertLevel.WARNING
    judge_green_light(site, at=scene.at(60))
    assert len([a for a in site.alerts.recent() if a.source == "live_gate"]) == 1  # once an hour, not every run
    assert site.store.holder(Role.LIVE) is None


def test_a_losing_production_model_gets_no_green_light(engine: Engine, tmp_path: Path) -> None:
    scene = make_scene(engine, lifecycle_settings(tmp_path / "home"), POLICIES, panel=zigzag_panel(80))
    paper_trade(scene, BAD, range(10, 62))
    check = judge_green_light(scene.site, at=scene.at(62))
    assert check.status is GateStatus.REFUSED and "alpha" in check.message


def test_nothing_trades_real_money_without_live_enabled_live_keys_and_capital(tmp_path: Path) -> None:
    base = {"live_api_key": LIVE_KEY, "live_secret_key": LIVE_SECRET, "live_capital": 1_000.0}
    assert live_readiness(lifecycle_settings(tmp_path, live_enabled=True, **base)).ready
    assert not live_readiness(lifecycle_settings(tmp_path, **base)).ready  # not enabled
    paper_keys_only = lifecycle_settings(tmp_path, live_enabled=True, live_capital=1_000.0,
                                         alpaca_api_key="PKPAPER0001", alpaca_secret_key="paper-secret")
    assert not live_readiness(paper_keys_only).ready  # the paper/data keys never trade live
    no_capital = lifecycle_settings(tmp_path, live_enabled=True, live_api_key=LIVE_KEY, live_secret_key=LIVE_SECRET)
    assert "CAPPUCCINO_LIVE_CAPITAL" in live_readiness(no_capital).message


def test_an_approved_model_goes_live_keeps_production_and_starts_on_the_first_ramp_step(
        engine: Engine, tmp_path: Path, fake_alpaca: FakeAlpacaServer) -> None:
    scene = make_scene(engine, live_settings(tmp_path / "home", fake_alpaca.url), POLICIES, panel=zigzag_panel(80))
    paper_trade(scene, GOOD, range(10, 60))
    check = judge_green_light(scene.site, at=scene.at(60))
    assert check.status is GateStatus.READY
    with pytest.raises(LiveGateRefused, match="not approved"):
        go_live(scene.site, GOOD, Approval(False, "not yet", "owner"), check.decision, at=scene.at(60))
    with pytest.raises(LiveGateRefused, match="not .* latest stored approval"):
        go_live(scene.site, GOOD, OWNER, check.decision, at=scene.at(60))  # approved by the caller's word only
    record_approval(scene.site, GOOD, OWNER, at=scene.at(60))

    moved = go_live(scene.site, GOOD, OWNER, check.decision, at=scene.at(60))

    store = scene.site.store
    assert store.holder(Role.LIVE) == GOOD and store.holder(Role.PRODUCTION) == GOOD
    assert moved["capital"]["capital"] == 2_500.0 and moved["capital"]["fraction"] == 0.25
    assert moved["transition"]["who"] == "owner" and "looks right" in moved["transition"]["why"]
    assert go_live(scene.site, GOOD, OWNER, check.decision, at=scene.at(61)) == moved  # idempotent
    assert [d.allowed for d in store.gate_decisions(gate="live_approval")] == [True]
    assert judge_green_light(scene.site, at=scene.at(61)).status is GateStatus.ALREADY_LIVE


def test_go_live_is_refused_when_live_trading_is_not_configured(engine: Engine, tmp_path: Path) -> None:
    scene = make_scene(engine, lifecycle_settings(tmp_path / "home"), POLICIES)
    paper_trade(scene, GOOD, range(10, 12))
    with pytest.raises(LiveNotAllowed, match="disabled"):
        go_live(scene.site, GOOD, *grant_live(scene.site, GOOD, scene.at(12), OWNER), at=scene.at(12))
    assert scene.site.store.holder(Role.LIVE) is None


def test_the_live_model_trades_only_its_ramp_capital_and_a_step_up_is_not_a_gain(
        engine: Engine, tmp_path: Path, fake_alpaca: FakeAlpacaServer) -> None:
    fake_alpaca.require_auth(LIVE_KEY, LIVE_SECRET)
    fake_alpaca.trading.configure(cash=100_000.0, fill_mode="immediate")
    settings = live_settings(tmp_path / "home", fake_alpaca.url, ramp_profitable_days=1)
    scene = make_scene(engine, settings, POLICIES, panel=zigzag_panel(100))
    paper_trade(scene, GOOD, range(0, 1))
    start = 20  # 2024-01-01 20:00: the first full live day is 2024-01-02
    go_live(scene.site, GOOD, *grant_live(scene.site, GOOD, scene.at(start), OWNER), at=scene.at(start))

    steps = []
    for row in range(start, start + 30):
        fake_alpaca.trading.configure(prices=dict(zip(scene.panel.symbols, scene.panel.close[row].tolist())))
        steps.append(step_live(scene.site, scene.at(row)))

    assert {s.status for s in steps} == {"traded"}
    first = steps[0].allocation
    assert first["capital"] == 2_500.0 and first["reserve"] == 97_500.0
    assert steps[0].equity == pytest.approx(2_500.0)  # the trader sees its capital, not the account
    capitals = sorted({s.allocation["capital"] for s in steps})
    assert capitals[:2] == [2_500.0, 5_000.0]  # profitable days moved it up the ramp
    record, _ = live_record(scene.site, GOOD)
    assert record is not None
    for step in steps[1:]:
        bar = datetime.fromisoformat(step.allocation["effective_bar"])
        if bar == datetime.fromisoformat(step.bar_time) and step.allocation["step"] > 0:
            i = record.times.index(bar)  # the return across the bar the capital was added at
            assert abs(record.returns[i]) < 0.2, "added capital counted as a gain"
    assert float(abs(record.returns).max()) < 0.2


def test_a_live_model_does_not_trade_once_live_trading_is_switched_off(engine: Engine, tmp_path: Path) -> None:
    scene = make_scene(engine, lifecycle_settings(tmp_path / "home"), POLICIES)
    paper_trade(scene, GOOD, range(10, 11))
    scene.site.store.move(GOOD, Stage.LIVE, who="owner", why="went live earlier", at=scene.at(11))

    first, second = step_live(scene.site, scene.at(12)), step_live(scene.site, scene.at(13))

    assert first.status == second.status == "not_allowed" and "disabled" in first.message
    critical = [a for a in scene.site.alerts.recent() if a.source == "live"]
    assert len(critical) == 1 and critical[0].level is AlertLevel.CRITICAL


class _Account:
    def __init__(self, cash: float, equity: float) -> None:
        self._account = Account(cash, equity, "USD")

    def account(self) -> Account:
        return self._account


def test_the_reserve_hides_the_capital_not_allocated() -> None:
    view = ReservedBroker(_Account(cash=60_000.0, equity=100_000.0), reserve=90_000.0)  # type: ignore[arg-type]
    assert view.account() == Account(0.0, 10_000.0, "USD")
    with pytest.raises(LiveAccountTooSmall):
        ReservedBroker(_Account(cash=1_000.0, equity=1_000.0), reserve=2_000.0).account()  # type: ignore[arg-type]


def test_live_keys_come_in_pairs_and_never_show(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="set together"):
        lifecycle_settings(tmp_path, live_api_key=LIVE_KEY)
    settings = lifecycle_settings(tmp_path, live_api_key=LIVE_KEY, live_secret_key=LIVE_SECRET,
                                  notify_urls="json://127.0.0.1:9/hook?token=webhook-t0ken")
    shown = str(settings.redacted()) + repr(settings)
    assert LIVE_KEY not in shown and LIVE_SECRET not in shown and "webhook-t0ken" not in shown
    assert {LIVE_KEY, LIVE_SECRET, "json://127.0.0.1:9/hook?token=webhook-t0ken"} <= set(settings.secret_values())


def test_a_direct_go_live_without_a_stored_passing_green_light_is_refused_and_nothing_moves(
        engine: Engine, tmp_path: Path, fake_alpaca: FakeAlpacaServer) -> None:
    scene = make_scene(engine, live_settings(tmp_path / "home", fake_alpaca.url), POLICIES, panel=zigzag_panel(80))
    paper_trade(scene, GOOD, range(10, 12))  # production, but two hours of paper: no green light possible
    record_approval(scene.site, GOOD, OWNER, at=scene.at(12))
    forged = {"model_id": GOOD, "allowed": True,
              "rules": [{"name": n, "passed": True} for n in ("history", "alpha", "sharpe", "max_drawdown", "errors")]}
    with pytest.raises(LiveGateRefused, match="latest stored one"):
        go_live(scene.site, GOOD, OWNER, forged, at=scene.at(12))
    refused = judge_green_light(scene.site, at=scene.at(12))
    assert refused.status is GateStatus.REFUSED and refused.decision is not None
    with pytest.raises(LiveGateRefused, match="no passing green-light decision"):
        go_live(scene.site, GOOD, OWNER, refused.decision, at=scene.at(12))
    with pytest.raises(TypeError):
        go_live(scene.site, GOOD, OWNER, at=scene.at(12))  # type: ignore[call-arg]  # the decision is not optional
    assert scene.site.store.holder(Role.LIVE) is None and scene.site.store.stage_of(GOOD) is Stage.PRODUCTION


def test_a_move_to_live_whose_mirror_fails_is_undone_and_the_caller_is_told(
        engine: Engine, tmp_path: Path, fake_alpaca: FakeAlpacaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    scene = make_scene(engine, live_settings(tmp_path / "home", fake_alpaca.url), POLICIES, panel=zigzag_panel(80))
    paper_trade(scene, GOOD, range(10, 12))
    approval, decision = grant_live(scene.site, GOOD, scene.at(12), OWNER)

    def mlflow_down() -> None:
        raise ConnectionError("MLflow tracking server unreachable")

    monkeypatch.setattr(scene.site, "mirror", mlflow_down)
    with pytest.raises(LiveMirrorFailed, match="moved back to production") as failed:
        go_live(scene.site, GOOD, approval, decision, at=scene.at(12))
    assert failed.value.reverted is True
    store = scene.site.store
    assert store.holder(Role.LIVE) is None and store.holder(Role.PRODUCTION) == GOOD
    assert store.stage_of(GOOD) is Stage.PRODUCTION
    assert [t.to_stage for t in store.transitions(GOOD)][-2:] == [Stage.LIVE, Stage.PRODUCTION]
    assert any("was not moved to live" in a.message for a in scene.site.alerts.recent())
