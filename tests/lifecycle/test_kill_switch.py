"""The kill switch: open orders cancelled, positions closed, a halt that survives restarts, and resume."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from cappuccino_core.clock import FixedClock
from cappuccino_core.accounting import ExecutionCosts
from cappuccino_core.lifecycle.kill_switch import KillIncomplete, KillSwitch, halt_check, kill
from cappuccino_core.lifecycle.tables import StepInFlightRow
from cappuccino_core.trading.alpaca_broker import AlpacaBroker
from cappuccino_core.trading.broker import BrokerUnavailable, OrderSide, OrderStatus
from cappuccino_core.trading.bars_provider import PanelBarProvider
from cappuccino_core.trading.journal import StepStatus, TradeJournal
from cappuccino_core.trading.sim_broker import SimBroker
from cappuccino_core.trading.trader import Trader
from tests.fakes.alpaca_server import FakeAlpacaServer, assert_local_url
from tests.trading.trading_scenarios import LOOKBACK, Desk, bar_time, model_for, walk_panel

T0 = datetime(2024, 6, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
PRICES = {"BTC/USD": 50_000.0, "ETH/USD": 2_500.0}
KEY, SECRET = "PKKILLSWITCHKEY000001", "kill-switch-s3cr3t"


def sim_book(engine: Engine, account: str = "paper") -> SimBroker:
    """A SimBroker account holding BTC and ETH, with one buy still open."""
    broker = SimBroker(engine, account, costs=ExecutionCosts(), initial_cash=10_000.0, clock=FixedClock(T0))
    broker.on_bar(T0, PRICES, PRICES)
    broker.submit_order("BTC/USD", OrderSide.BUY, notional=3_000.0, client_order_id="b1")
    broker.submit_order("ETH/USD", OrderSide.BUY, notional=2_000.0, client_order_id="e1")
    broker.on_bar(T0 + HOUR, PRICES, PRICES)
    broker.submit_order("ETH/USD", OrderSide.BUY, notional=500.0, client_order_id="open-buy")
    return broker


def alpaca_book(server: FakeAlpacaServer) -> AlpacaBroker:
    """An Alpaca account (the local fake, through the real SDK) holding BTC and ETH, with one buy open."""
    server.trading.configure(cash=10_000.0, prices=PRICES, fill_mode="immediate")
    server.require_auth(KEY, SECRET)
    broker = AlpacaBroker(KEY, SECRET, paper=False, url_override=server.url, sleep=lambda _s: None,
                          timeout_seconds=5.0)
    assert_local_url(broker.base_url)
    broker.submit_order("BTC/USD", OrderSide.BUY, notional=3_000.0, client_order_id="b1")
    broker.submit_order("ETH/USD", OrderSide.BUY, notional=2_000.0, client_order_id="e1")
    server.trading.configure(fill_mode="manual")
    broker.submit_order("ETH/USD", OrderSide.BUY, notional=500.0, client_order_id="open-buy")
    server.trading.configure(fill_mode="immediate")  # Alpaca fills the closing market orders at once
    return broker


def test_kill_cancels_open_orders_and_closes_positions_on_every_broker_then_stays_halted(
        sqlite_engines: Callable[[], Engine], fake_alpaca: FakeAlpacaServer) -> None:
    engine = sqlite_engines()
    paper, live = sim_book(engine), alpaca_book(fake_alpaca)
    open_alpaca = [o["id"] for o in fake_alpaca.trading.orders if o["status"] == "new"]

    report = kill(KillSwitch(engine), {"paper": paper, "live": live}, reason="owner pressed kill", who="owner",
                  at=T0 + 2 * HOUR)

    assert report.complete and report.halt.halted
    by_name = {b.broker: b for b in report.brokers}
    assert by_name["paper"].canceled == (paper.get_order("open-buy").id,)
    assert paper.get_order("open-buy").status is OrderStatus.CANCELED
    assert list(by_name["live"].canceled) == open_alpaca
    assert [o["status"] for o in fake_alpaca.trading.orders if o["id"] in open_alpaca] == ["canceled"]
    # Alpaca closes at once; the simulated account fills its closing sells at the next bar's open.
    assert fake_alpaca.trading.holdings == {} and live.positions() == {}
    assert sorted(o.symbol for o in by_name["paper"].closing_orders) == ["BTC/USD", "ETH/USD"]
    paper.on_bar(T0 + 2 * HOUR, PRICES, PRICES)
    assert paper.positions() == {}
    assert report.to_dict()["brokers"][1]["canceled"] == open_alpaca


def test_kill_without_flatten_cancels_orders_and_keeps_positions(engine: Engine) -> None:
    paper = sim_book(engine)
    report = kill(KillSwitch(engine), {"paper": paper}, reason="pause", who="owner", at=T0, flatten=False)
    assert report.brokers[0].closing_orders == ()
    paper.on_bar(T0 + 2 * HOUR, PRICES, PRICES)
    assert set(paper.positions()) == {"BTC/USD", "ETH/USD"}


class DownBroker:
    """A broker that cannot be reached."""

    def cancel_all(self) -> list[str]:
        raise BrokerUnavailable("cancel all orders: retries exhausted")

    def close_all(self) -> list:
        raise AssertionError("not reached")


def test_a_failing_broker_does_not_stop_the_others_and_the_kill_reports_it(engine: Engine) -> None:
    paper = sim_book(engine)
    with pytest.raises(KillIncomplete, match="down: BrokerUnavailable") as raised:
        kill(KillSwitch(engine), {"down": DownBroker(), "paper": paper},  # type: ignore[dict-item]
             reason="kill", who="owner", at=T0)
    assert [b.broker for b in raised.value.report.brokers] == ["down", "paper"]
    assert len(raised.value.report.brokers[1].closing_orders) == 2
    assert KillSwitch(engine).is_halted()


def test_the_halt_survives_a_restart_and_resume_clears_it(open_engine: Callable[[], Engine]) -> None:
    switch = KillSwitch(open_engine())
    assert not switch.is_halted()
    switch.halt(reason="drawdown emergency", who="monitor", at=T0)
    switch.halt(reason="again", who="owner", at=T0 + HOUR)  # idempotent: the first halt stands

    restarted = KillSwitch(open_engine())  # a new engine, as after a process restart
    state = restarted.state()
    assert (state.halted, state.reason, state.who, state.since) == (True, "drawdown emergency", "monitor", T0)

    restarted.resume(who="owner", at=T0 + 2 * HOUR)
    assert not KillSwitch(open_engine()).is_halted()
    assert [(e.action, e.who) for e in restarted.events()] == [("halt", "monitor"), ("halt", "owner"),
                                                               ("resume", "owner")]


def test_halt_check_reads_the_flag_each_time(engine: Engine) -> None:
    halted = halt_check(engine)
    assert halted() is False
    KillSwitch(engine).halt(reason="r", who="w", at=T0)
    assert halted() is True
    KillSwitch(engine).resume(who="w", at=T0)
    assert halted() is False


def test_a_trader_takes_no_step_while_halted_even_after_a_restart_and_trades_again_after_resume(
        sqlite_engines: Callable[[], Engine]) -> None:
    panel = walk_panel(bars=40)
    engine = sqlite_engines()
    desk = Desk(engine, "halted-trader", model_for(panel), panel, halted=halt_check(engine))
    assert {o.status for o in desk.run(range(LOOKBACK - 1, 14))} == {StepStatus.TRADED}
    KillSwitch(engine).halt(reason="owner pressed kill", who="owner", at=T0)
    orders = [o.id for o in desk.broker.orders()]

    restarted = sqlite_engines()
    desk = Desk(restarted, "halted-trader", model_for(panel), panel, halted=halt_check(restarted))
    assert {o.status for o in desk.run(range(14, 20))} == {StepStatus.SKIPPED_HALTED}
    assert [o.id for o in desk.broker.orders()] == orders  # nothing new was placed

    KillSwitch(restarted).resume(who="owner", at=T0 + HOUR)
    assert {o.status for o in desk.run(range(20, 26))} == {StepStatus.TRADED}


def test_a_halt_needs_a_reason_and_who(engine: Engine) -> None:
    with pytest.raises(ValueError, match="non-empty reason and who"):
        KillSwitch(engine).halt(reason="", who="owner", at=T0)


class KillDuringFirstOrder:
    """An Alpaca account whose first order of the step is followed by ``kill`` from another thread.

    The order is placed, then ``kill`` starts and this call waits until the halt is set, and a
    little longer (the moment a kill that did not wait would already flatten the account).
    """

    def __init__(self, broker: AlpacaBroker, start_kill: Callable[[], None], switch: KillSwitch) -> None:
        self._broker, self._start_kill, self._switch = broker, start_kill, switch
        self.sent: list[str] = []

    def __getattr__(self, name: str):
        return getattr(self._broker, name)

    def submit_order(self, *args, **kwargs):
        placed = self._broker.submit_order(*args, **kwargs)
        self.sent.append(kwargs["client_order_id"])
        if len(self.sent) == 1:
            self._start_kill()
            deadline = time.monotonic() + 10
            while not self._switch.is_halted():
                assert time.monotonic() < deadline, "kill did not halt"
                time.sleep(0.01)
            time.sleep(0.3)
        return placed


def test_a_kill_during_a_step_sends_none_of_its_later_orders_and_returns_when_the_step_has_stopped(
        sqlite_engines: Callable[[], Engine], fake_alpaca: FakeAlpacaServer) -> None:
    panel = walk_panel(bars=40)
    row = 12  # the phase policy buys every asset on this bar
    prices = dict(zip(panel.symbols, panel.close[row].tolist()))
    fake_alpaca.trading.configure(cash=10_000.0, prices=prices, fill_mode="immediate")
    fake_alpaca.require_auth(KEY, SECRET)
    engine = sqlite_engines()
    switch = KillSwitch(engine)
    events: list[str] = []
    reports: list = []

    def run_kill() -> None:
        account = AlpacaBroker(KEY, SECRET, paper=False, url_override=fake_alpaca.url, sleep=lambda _s: None)
        reports.append(kill(KillSwitch(sqlite_engines()), {"live": account}, reason="owner pressed kill",
                            who="owner", at=T0))
        events.append("kill returned")

    killer = threading.Thread(target=run_kill)
    broker = KillDuringFirstOrder(AlpacaBroker(KEY, SECRET, paper=False, url_override=fake_alpaca.url,
                                               sleep=lambda _s: None), killer.start, switch)
    trader = Trader("kill-mid-step", model_for(panel), broker, PanelBarProvider(panel), TradeJournal(engine),  # type: ignore[arg-type]
                    halted=switch.is_halted, in_flight=switch.step_in_flight, clock=FixedClock(T0))

    outcome = trader.step(bar_time(panel, row))
    events.append("step ended")
    killer.join(timeout=30)

    assert events == ["step ended", "kill returned"]  # the kill waited for the step
    assert len(broker.sent) == 1 and len(outcome.not_sent) == 2
    step_orders = [o for o in fake_alpaca.trading.orders if o["client_order_id"].startswith("kill-mid-step")]
    assert [o["client_order_id"] for o in step_orders] == broker.sent  # nothing after the halt reached Alpaca
    assert fake_alpaca.trading.holdings == {}  # the one order sent before the halt was closed by the kill
    assert reports[0].complete and len(reports[0].brokers[0].closing_orders) == 1
    entry = trader.journal.entries("kill-mid-step")[0]
    assert [o["status"] for o in entry.orders].count("not_sent") == 2
    assert any("2 order(s) not sent" in e for e in entry.errors)
    assert switch.steps_in_flight() == []


def test_kill_clears_the_step_of_a_process_that_died_and_reports_a_step_that_does_not_stop(
        sqlite_engines: Callable[[], Engine]) -> None:
    engine = sqlite_engines()
    switch = KillSwitch(engine)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with switch.step_in_flight("ghost", T0, T0):
        pass
    with switch._sessions.begin() as session:  # a row as a process killed mid-step leaves it
        session.add(StepInFlightRow(trader_id="ghost", bar_time=T0, host=socket.gethostname(), pid=dead.pid,
                                    started_at=T0))
    assert kill(switch, {}, reason="kill", who="owner", at=T0, step_wait_seconds=5).complete

    with switch.step_in_flight("stuck", T0, T0):  # a step of this (living) process that never ends
        with pytest.raises(KillIncomplete, match="step still under way after the wait: stuck"):
            kill(switch, {}, reason="kill", who="owner", at=T0, step_wait_seconds=0.2)


def test_the_kill_command_says_no_account_was_reached_when_there_was_none(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from cli.app import app

    monkeypatch.setenv("CAPPUCCINO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CAPPUCCINO_CONFIG", str(tmp_path / "absent.toml"))
    result = CliRunner().invoke(app, ["kill"])
    assert result.exit_code == 0, result.output
    assert "positions closed" not in result.output
    assert "no account was reached" in result.output
