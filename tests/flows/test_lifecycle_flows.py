"""The lifecycle flows under Prefect's test harness: promotion, the live gate's approval, the monitor's demotion.

Each test's site is the zig-zag market with scripted models registered as versions of a fresh
registered model in one MLflow store (``tasks.lifecycle.open_site`` is pointed at it), so the
stages are mirrored into a real registry.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dataclasses

import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState
from prefect.client.schemas.filters import FlowRunFilterStateType
from prefect.client.schemas.objects import StateType

import tasks.lifecycle
from cappuccino_core.config import RunOverrides, load_settings
from cappuccino_core.db import default_database_url, make_engine, session_factory
from cappuccino_core.operations.live import go_live
from cappuccino_core.operations.registry_mirror import model_id_for
from cappuccino_core.operations.production import step_live, step_production
from cappuccino_core.operations.sandbox_entry import enter_sandbox
from cappuccino_core.lifecycle.stages import Role, Stage
from cappuccino_core.sandbox.runs import load_runs
from cappuccino_core.tracking.store import ensure_store
from flows.health import HealthParams, health
from flows.live_gate import LiveGateParams, live_gate
from flows.monitor import MonitorParams, TradingParams, monitor, production_trading
from flows.promotion import PromotionParams, promotion
from tests.fakes.alpaca_server import FakeAlpacaServer, refuse_non_local_http
from tests.lifecycle.lifecycle_scenarios import HOUR, Flat, Rhythm, Scene, grant_live, make_scene, zigzag_panel

LIVE_KEY, LIVE_SECRET = "AKLIVEFLOWKEY0001", "live-flow-s3cr3t"


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    ensure_store(uri)
    return uri


@pytest.fixture
def world(cappuccino_env: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Returns ``open_world(**env)``: settings from the environment, a registered model, the site the flows open."""
    refuse_non_local_http(monkeypatch)
    monkeypatch.setenv("CAPPUCCINO_SYMBOLS", "A0/USD,A1/USD,A2/USD")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)

    def open_world(**env: str) -> tuple[Scene, dict[str, str]]:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = load_settings()
        client = MlflowClient(mlflow_uri, mlflow_uri)
        name = f"zigzag-{uuid.uuid4().hex[:8]}"
        client.create_registered_model(name)
        source = tmp_path / "source"
        source.mkdir(exist_ok=True)
        ids = {}
        for role in ("good", "bad", "flat"):
            version = client.create_model_version(name, source=str(source), tags={"stage": "candidate"}).version
            ids[role] = model_id_for(name, version)
        policies = {ids["good"]: Rhythm(0), ids["bad"]: Rhythm(1), ids["flat"]: Flat()}
        engine = make_engine(default_database_url(settings.home))
        scene = make_scene(engine, settings, policies, panel=zigzag_panel(100), tracking=mlflow_uri)
        monkeypatch.setattr(tasks.lifecycle, "open_site", lambda _settings: scene.site)
        return scene, ids

    return open_world


def registry_view(scene: Scene, model_id: str) -> tuple[str | None, set[str]]:
    """The version's ``stage`` tag and the aliases pointing at it."""
    client = scene.site.mlflow()
    assert client is not None
    name, version = model_id.removeprefix("models:/").rsplit("/", 1)
    aliases = {a for a, v in client.get_registered_model(name).aliases.items() if str(v) == version}
    return client.get_model_version(name, version).tags.get("stage"), aliases


def sandbox_run(scene: Scene, model_id: str, start: int = 10, period: int = 24) -> None:
    box = scene.site.sandbox()
    enter_sandbox(scene.site, box, model_id, who="arena", why="promoted", at=scene.at(start), start=scene.at(start),
                  period=period * HOUR)
    for row in range(start, start + period):
        box.step_all(scene.at(row))


def make_production(scene: Scene, model_id: str, at_row: int = 0) -> None:
    scene.site.store.move(model_id, Stage.SANDBOX, who="test", why="setup", at=scene.at(at_row))
    scene.site.store.move(model_id, Stage.PRODUCTION, who="test", why="setup", at=scene.at(at_row))


def test_the_promotion_flow_replaces_production_when_the_sandbox_model_wins(prefect_harness, world) -> None:
    scene, ids = world()
    make_production(scene, ids["bad"])
    sandbox_run(scene, ids["good"])

    report = promotion(params=PromotionParams(at=scene.at(34), admit_arena=False))

    assert report.decided["promoted"] == [ids["good"]] and report.decided["production"] == ids["good"]
    assert scene.site.store.stage_of(ids["bad"]) is Stage.RETIRED
    assert registry_view(scene, ids["good"]) == ("production", {"production"})
    assert registry_view(scene, ids["bad"]) == ("retired", set())
    checked = health(params=HealthParams(at=scene.at(34) + timedelta(minutes=5)))  # the health flow runs too
    assert {f["check"] for f in checked.findings} >= {"stale_data"}  # no bars stored in this home


def test_the_promotion_flow_admits_with_the_sandbox_days_the_run_overrides(prefect_harness, world, monkeypatch) -> None:
    """The pipeline's online branch passes its overrides on: the sandbox period is the run's, not the default's."""
    scene, ids = world()
    monkeypatch.setattr(tasks.lifecycle, "open_site", lambda settings: dataclasses.replace(scene.site, settings=settings))
    monkeypatch.setattr("cappuccino_core.operations.sandbox_entry.arena_promotions", lambda settings: [ids["good"]])

    report = promotion(params=PromotionParams(at=scene.at(12), overrides=RunOverrides(sandbox_days=0.5)))

    assert scene.site.settings.sandbox_days != 0.5
    (run,) = [r for r in load_runs(session_factory(scene.site.engine)) if r.model_ref == ids["good"]]
    assert report.admitted == [run.trader_id]
    assert run.ends_at - run.started_at == timedelta(days=0.5)


def test_the_promotion_flow_retires_a_sandbox_model_that_loses(prefect_harness, world) -> None:
    scene, ids = world()
    make_production(scene, ids["good"])
    sandbox_run(scene, ids["flat"])

    report = promotion(params=PromotionParams(at=scene.at(34), admit_arena=False))

    assert report.decided["retired"] == [ids["flat"]] and report.decided["production"] == ids["good"]
    match = report.decided["matches"][0]
    assert match["contender_score"] < match["incumbent_score"]
    assert registry_view(scene, ids["flat"]) == ("retired", set())
    assert scene.site.store.holder(Role.PRODUCTION) == ids["good"]


def paper_two_days(scene: Scene, model_id: str) -> None:
    make_production(scene, model_id)
    for row in range(10, 60):
        step_production(scene.site, scene.at(row))


class Resumer:
    """Resumes the paused live-gate run through the Prefect API with an input, as the UI's Resume button does."""

    def __init__(self, run_input: dict[str, object]) -> None:
        self.run_input = run_input
        self.resumed: list[str] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Resumer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
            flows = FlowFilter(name=FlowFilterName(any_=["live-gate"]))
            deadline = time.monotonic() + 30
            with get_client(sync_client=True) as client:
                while time.monotonic() < deadline:
                    runs = client.read_flow_runs(flow_filter=flows, flow_run_filter=paused)
                    if runs:
                        client.resume_flow_run(runs[0].id, run_input=self.run_input)
                        self.resumed.append(str(runs[0].id))
                        return
                    time.sleep(0.2)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc


def live_env(url: str = "http://127.0.0.1:9") -> dict[str, str]:
    return {"CAPPUCCINO_LIVE_ENABLED": "true", "CAPPUCCINO_LIVE_API_KEY": LIVE_KEY,
            "CAPPUCCINO_LIVE_SECRET_KEY": LIVE_SECRET, "CAPPUCCINO_LIVE_CAPITAL": "4000",
            "CAPPUCCINO_ALPACA_LIVE_URL": url}


def test_the_live_gate_pauses_for_approval_and_goes_live_when_approved(prefect_harness, world) -> None:
    scene, ids = world(**live_env())
    paper_two_days(scene, ids["good"])

    with Resumer({"approve": True, "note": "numbers look right"}) as resumer:
        report = live_gate(params=LiveGateParams(at=scene.at(60), poll_seconds=1, approval_timeout_seconds=60))

    assert resumer.error is None and len(resumer.resumed) == 1
    assert report.status == "live" and report.approval == {"approve": True, "note": "numbers look right",
                                                          "who": "owner (Prefect UI)"}
    assert report.live is not None and report.live["capital"]["capital"] == 1_000.0
    store = scene.site.store
    assert store.holder(Role.LIVE) == ids["good"] and store.holder(Role.PRODUCTION) == ids["good"]
    assert registry_view(scene, ids["good"]) == ("live", {"live", "production"})
    assert [d.allowed for d in store.gate_decisions(gate="live_approval")] == [True]


def test_the_live_gate_stops_when_the_owner_rejects(prefect_harness, world) -> None:
    scene, ids = world(**live_env())
    paper_two_days(scene, ids["good"])

    with Resumer({"approve": False, "note": "not this week"}) as resumer:
        report = live_gate(params=LiveGateParams(at=scene.at(60), poll_seconds=1, approval_timeout_seconds=60))

    assert resumer.error is None and len(resumer.resumed) == 1
    assert report.status == "rejected" and "not this week" in report.message
    assert scene.site.store.holder(Role.LIVE) is None
    assert [d.allowed for d in scene.site.store.gate_decisions(gate="live_approval")] == [False]
    assert "live" not in registry_view(scene, ids["good"])[1]
    client = scene.site.mlflow()
    name, version = ids["good"].removeprefix("models:/").rsplit("/", 1)
    assert client.get_model_version(name, version).tags["green_light"] == "allowed"  # judged, shown, not moved


def test_without_live_configuration_a_green_lit_model_waits_and_auto_approval_skips_the_pause(
        prefect_harness, world) -> None:
    scene, ids = world()
    paper_two_days(scene, ids["good"])
    waiting = live_gate(params=LiveGateParams(at=scene.at(60)))
    assert waiting.status == "waiting" and "CAPPUCCINO_LIVE_ENABLED" in waiting.message
    assert scene.site.store.holder(Role.LIVE) is None

    scene.site.settings = load_settings(**{"auto_approve": True, "live_enabled": True, "live_api_key": LIVE_KEY,
                                           "live_secret_key": LIVE_SECRET, "live_capital": 4000.0})
    approved = live_gate(params=LiveGateParams(at=scene.at(61)))  # no pause: nobody resumes it
    assert approved.status == "live" and approved.approval["who"] == "auto-approval"


@pytest.fixture
def fake_live() -> Iterator[FakeAlpacaServer]:
    with FakeAlpacaServer() as server:
        server.require_auth(LIVE_KEY, LIVE_SECRET)
        server.trading.configure(cash=20_000.0, fill_mode="immediate")
        yield server
    assert server.handler_errors == []


def test_the_monitor_flow_demotes_a_live_model_that_breaks_a_limit(prefect_harness, world, fake_live) -> None:
    scene, ids = world(**live_env(fake_live.url))
    bad = ids["bad"]
    make_production(scene, bad)
    go_live(scene.site, bad, *grant_live(scene.site, bad, scene.at(20)), at=scene.at(20))
    for row in range(20, 27):
        fake_live.trading.configure(prices=dict(zip(scene.panel.symbols, scene.panel.close[row].tolist())))
        step_production(scene.site, scene.at(row))
        step_live(scene.site, scene.at(row))
    fake_live.trading.configure(prices=dict(zip(scene.panel.symbols, scene.panel.close[27].tolist())))
    traded = production_trading(params=TradingParams(bar_time=scene.at(27), refresh_bars=False))  # row 27: buys a high again
    assert traded.live is not None and traded.live["status"] == "traded" and traded.failed == {}
    assert fake_live.trading.holdings

    report = monitor(params=MonitorParams(at=scene.at(28)))

    assert report.live["demotion"] is not None and "drawdown" in report.live["verdict"]["breached"]
    store = scene.site.store
    assert store.holder(Role.LIVE) is None and store.holder(Role.PRODUCTION) == bad
    assert registry_view(scene, bad) == ("production", {"production"})
    assert fake_live.trading.holdings == {}
    assert report.paper["production"] == bad
