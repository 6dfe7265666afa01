"""The sandbox: several models paper-trade their own accounts at once, for a period, and report."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from cappuccino_core.clock import FixedClock
from cappuccino_core.evaluation import metrics
from cappuccino_core.trading.bars_provider import PanelBarProvider
from cappuccino_core.trading.broker import OrderStatus
from cappuccino_core.trading.journal import StepStatus
from tests.trading.parity import replay_parity
from cappuccino_core.sandbox.runner import Sandbox
from cappuccino_core.sandbox.report import sandbox_status
from cappuccino_core.trading.sim_broker import SimBroker
from cappuccino_core.trading.trader import Trader
from tests.trading.trading_scenarios import BuyFirstAndHold, PhasePolicy, bar_time, model_for, walk_panel

HOUR = timedelta(hours=1)


def _sandbox(engine, panel, models) -> Sandbox:
    return Sandbox(engine, PanelBarProvider(panel), load_model=models.__getitem__, clock=FixedClock(bar_time(panel, 0)))


def test_several_models_trade_their_own_accounts_side_by_side_until_their_period_ends(ledger_for) -> None:
    panel = walk_panel()
    models = {"phase": model_for(panel, PhasePolicy, model_id="phase"),
              "hold": model_for(panel, BuyFirstAndHold, model_id="hold")}
    engine = ledger_for("sqlite").open_engine()
    sandbox = _sandbox(engine, panel, models)
    start = bar_time(panel, 9)
    sandbox.start("phase", trader_id="sbx-phase", start=start, period=40 * HOUR)
    sandbox.start("hold", trader_id="sbx-hold", start=start, period=30 * HOUR, initial_cash=5_000.0)
    for row in range(9, 60):
        sandbox.step_all(bar_time(panel, row))

    journal = sandbox.journal
    assert [e.bar_time for e in journal.entries("sbx-phase")] == [bar_time(panel, r) for r in range(9, 49)]
    assert [e.bar_time for e in journal.entries("sbx-hold")] == [bar_time(panel, r) for r in range(9, 39)]
    assert all(run.ended_at == run.ends_at for run in sandbox.runs())
    phase, hold = (SimBroker(engine, name, costs=models["phase"].costs, initial_cash=cash, clock=FixedClock(start))
                   for name, cash in (("sbx-phase", 10_000.0), ("sbx-hold", 5_000.0)))
    assert all(o.client_order_id.startswith("sbx-phase-") for o in phase.orders())
    assert all(o.client_order_id.startswith("sbx-hold-") for o in hold.orders())
    assert 3 <= len(hold.orders()) < len(phase.orders())  # the risk layers trade the holder a little too
    assert hold.account().equity != pytest.approx(phase.account().equity / 2, rel=1e-3)
    for trader_id in ("sbx-phase", "sbx-hold"):  # each account replays exactly in the backtester
        report = replay_parity(journal.entries(trader_id), sandbox.trader(trader_id).model, panel)
        assert report.within_tolerance, report.to_dict()


def test_sandbox_status_reports_each_run_through_the_metrics_module(ledger_for) -> None:
    panel = walk_panel()
    models = {"hold": model_for(panel, BuyFirstAndHold, model_id="hold")}
    engine = ledger_for("sqlite").open_engine()
    sandbox = _sandbox(engine, panel, models)
    sandbox.start("hold", trader_id="sbx-hold", start=bar_time(panel, 9), period=48 * HOUR, initial_cash=5_000.0)
    for row in range(9, 40):
        sandbox.step_all(bar_time(panel, row))

    status = sandbox_status(engine)
    (run,) = status["runs"]
    entries = sandbox.journal.entries("sbx-hold")
    equity = np.array([e.equity for e in entries])
    index = (panel.close[9:40] / panel.close[9]).mean(axis=1)
    returns, bench = equity[1:] / equity[:-1] - 1, index[1:] / index[:-1] - 1
    assert run["state"] == "active" and run["traded_bars"] == 31 and run["elapsed_seconds"] == 31 * 3600
    assert run["equity"] == pytest.approx(equity[-1]) and run["return"] == pytest.approx(equity[-1] / 5_000.0 - 1)
    assert run["alpha"] == pytest.approx(metrics.alpha(returns, bench), rel=1e-12)
    assert run["sharpe"] == pytest.approx(metrics.sharpe(returns, panel.interval), rel=1e-12)
    assert run["max_drawdown"] == pytest.approx(metrics.max_drawdown(returns), rel=1e-12)
    filled = [o for o in sandbox.trader("sbx-hold").broker.orders() if o.status is OrderStatus.FILLED]
    assert run["trades"] == len(filled) > 3 and run["errors"] == 0 and run["statuses"] == {"traded": 31}
    assert run["risk_events"] == sum(len(e.risk_events) for e in entries) > 0


def test_a_step_that_dies_after_the_bar_was_given_to_the_account_resumes_without_refilling(ledger_for) -> None:
    class PowerCut(BaseException):
        pass

    panel = walk_panel()
    models = {"phase": model_for(panel, PhasePolicy, model_id="phase")}
    ledger = ledger_for("sqlite")
    sandbox = _sandbox(ledger.open_engine(), panel, models)
    sandbox.start("phase", trader_id="sbx", start=bar_time(panel, 9))
    for row in range(9, 13):
        sandbox.step_all(bar_time(panel, row))
    real_step = Trader.step

    def die(trader, moment):
        raise PowerCut

    Trader.step = die
    try:
        with pytest.raises(PowerCut):
            sandbox.step_all(bar_time(panel, 13))  # the orders of bar 12 fill here, then the process dies
    finally:
        Trader.step = real_step
    broker = sandbox.trader("sbx").broker
    filled = broker.fills()
    assert filled and not sandbox.journal.has("sbx", bar_time(panel, 13))

    restarted = _sandbox(ledger.open_engine(), panel, models)
    outcome = restarted.step_all(bar_time(panel, 13))["sbx"]
    assert outcome.status is StepStatus.TRADED
    assert restarted.trader("sbx").broker.fills() == filled  # the bar was not given twice
    for row in range(14, 40):
        restarted.step_all(bar_time(panel, row))
    assert replay_parity(restarted.journal.entries("sbx"), restarted.trader("sbx").model, panel).within_tolerance


def test_starting_a_run_twice_keeps_the_first_and_another_model_under_its_id_is_refused(ledger_for) -> None:
    panel = walk_panel()
    models = {"a": model_for(panel, model_id="a"), "b": model_for(panel, model_id="b")}
    sandbox = _sandbox(ledger_for("sqlite").open_engine(), panel, models)
    first = sandbox.start("a", trader_id="sbx", start=bar_time(panel, 9))
    assert sandbox.start("a", trader_id="sbx", start=bar_time(panel, 20)) == first
    assert first.ends_at - first.started_at == timedelta(days=2)
    with pytest.raises(ValueError, match="already trades 'a'"):
        sandbox.start("b", trader_id="sbx")
    with pytest.raises(KeyError):
        sandbox.start("missing")


def test_a_run_is_not_stepped_outside_its_period_and_ending_it_stops_it(ledger_for) -> None:
    panel = walk_panel()
    sandbox = _sandbox(ledger_for("sqlite").open_engine(), panel, {"a": model_for(panel, model_id="a")})
    sandbox.start("a", trader_id="sbx", start=bar_time(panel, 12), period=10 * HOUR)
    with pytest.raises(ValueError, match="does not trade bar"):
        sandbox.step("sbx", bar_time(panel, 11))
    assert sandbox.step_all(bar_time(panel, 11)) == {}
    assert sandbox.step_all(bar_time(panel, 12))["sbx"].status is StepStatus.TRADED
    sandbox.end("sbx", bar_time(panel, 13))
    assert sandbox.step_all(bar_time(panel, 13)) == {}
    with pytest.raises(KeyError):
        sandbox.end("nobody")
