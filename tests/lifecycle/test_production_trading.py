"""The production trader: its own SimBroker account without keys, the Alpaca paper account with them; the kill switch."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from cappuccino_core.operations.control import kill_trading, resume_trading, trading_accounts
from cappuccino_core.operations.production import production_trader_id, step_production
from cappuccino_core.lifecycle.stages import Stage
from cappuccino_core.trading.alpaca_broker import AlpacaBroker
from cappuccino_core.trading.broker import OrderStatus
from cappuccino_core.trading.sim_broker import SimBroker
from tests.fakes.alpaca_server import FakeAlpacaServer
from tests.lifecycle.conftest import EngineFactory
from tests.lifecycle.lifecycle_scenarios import GOOD, HOUR, POLICIES, Scene, lifecycle_settings, make_scene

PAPER_KEY, PAPER_SECRET = "PKPAPERKEY0000001", "paper-s3cr3t-value"


def make_production(scene: Scene, model_id: str) -> None:
    store = scene.site.store
    store.move(model_id, Stage.SANDBOX, who="test", why="setup", at=scene.at(0))
    store.move(model_id, Stage.PRODUCTION, who="test", why="setup", at=scene.at(0))


def test_without_paper_keys_the_production_model_trades_its_own_sim_account(engine: Engine, tmp_path: Path) -> None:
    scene = make_scene(engine, lifecycle_settings(tmp_path / "home", production_cash=5_000.0), POLICIES)
    assert step_production(scene.site, scene.at(10)) is None  # no production model yet
    make_production(scene, GOOD)

    steps = [step_production(scene.site, scene.at(row)) for row in range(10, 20)]

    assert scene.site.paper_mode == "sim"
    assert {s.status for s in steps} == {"traded"} and all(s.account == "sim" for s in steps)
    trader_id = production_trader_id(GOOD)
    assert steps[0].trader_id == trader_id and steps[0].equity == 5_000.0
    account = SimBroker(engine, trader_id, costs=scene.site.load_model(GOOD).costs, initial_cash=5_000.0,
                        clock=scene.clock)
    filled = [o for o in account.orders() if o.status is OrderStatus.FILLED]
    assert filled and all(o.client_order_id.startswith(trader_id) for o in filled)
    assert account.account().equity > 5_000.0  # the good rhythm earns on the zig-zag
    again = step_production(scene.site, scene.at(19))
    assert again is not None and again.status == "skipped_duplicate"


def test_with_paper_keys_the_production_model_trades_the_alpaca_paper_account(
        engine: Engine, tmp_path: Path, fake_alpaca: FakeAlpacaServer) -> None:
    fake_alpaca.require_auth(PAPER_KEY, PAPER_SECRET)
    fake_alpaca.trading.configure(cash=20_000.0, fill_mode="immediate")
    settings = lifecycle_settings(tmp_path / "home", alpaca_api_key=PAPER_KEY, alpaca_secret_key=PAPER_SECRET,
                                  alpaca_paper_url=fake_alpaca.url)
    scene = make_scene(engine, settings, POLICIES)
    make_production(scene, GOOD)
    broker = scene.site.paper_broker("ignored", scene.site.load_model(GOOD).costs)
    assert isinstance(broker, AlpacaBroker) and "paper=True" in repr(broker)

    for row in range(10, 16):
        fake_alpaca.trading.configure(prices=dict(zip(scene.panel.symbols, scene.panel.close[row].tolist())))
        step = step_production(scene.site, scene.at(row))
        assert step is not None and step.status == "traded" and step.account == "alpaca-paper"

    orders = fake_alpaca.trading.orders
    assert orders and all(o["client_order_id"].startswith(production_trader_id(GOOD)) for o in orders)
    assert {o["status"] for o in orders} == {"filled"}
    assert fake_alpaca.trading.cash != 20_000.0


def test_kill_halts_every_trader_flattens_every_account_survives_a_restart_and_resume_lifts_it(
        sqlite_engines: EngineFactory, tmp_path: Path) -> None:
    settings = lifecycle_settings(tmp_path / "home")
    scene = make_scene(sqlite_engines(), settings, POLICIES)
    make_production(scene, GOOD)
    box = scene.site.sandbox()
    run = box.start(GOOD, trader_id="sbx-good", start=scene.at(10), period=48 * HOUR)
    for row in (10, 11, 12):  # row 12 is even: both accounts buy A0, filled at the next bar
        box.step_all(scene.at(row))
        step_production(scene.site, scene.at(row))
    step_production(scene.site, scene.at(13))
    box.step_all(scene.at(13))
    assert set(trading_accounts(scene.site)) == {"production", "sandbox:sbx-good"}

    report = kill_trading(scene.site, who="owner", reason="test kill", at=scene.at(14))

    assert report.complete and report.halt.halted
    assert all(b.closing_orders for b in report.brokers)  # both held A0 (bought at row 12)
    restarted = make_scene(sqlite_engines(), settings, POLICIES)  # a new process on the same database
    assert restarted.site.switch.is_halted()
    assert step_production(restarted.site, restarted.at(14)).status == "skipped_halted"
    assert box.step(run.trader_id, scene.at(14)).status.value == "skipped_halted"
    for trader_id in (production_trader_id(GOOD), run.trader_id):  # the closing sells filled at the halted bar
        account = SimBroker(scene.site.engine, trader_id, costs=scene.site.load_model(GOOD).costs,
                            initial_cash=10_000.0, clock=scene.clock)
        assert account.positions() == {}
    assert any(a.source == "kill" for a in restarted.site.alerts.recent())

    resume_trading(restarted.site, who="owner", reason="checked", at=scene.at(15))
    assert step_production(restarted.site, restarted.at(15)).status == "traded"

