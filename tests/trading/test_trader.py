"""The trader step: parity with the backtester, restart safety, stale data, refusals and risk events."""

from __future__ import annotations

import numpy as np
import pytest

from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.trading.bars_provider import PanelBarProvider
from cappuccino_core.trading.journal import StepStatus, TradeJournal
from tests.trading.parity import replay_parity
from cappuccino_core.risk.layers import RiskConfig
from tests.conftest import make_panel
from tests.trading.trading_scenarios import (
    LOOKBACK, BuyFirstAndHold, Desk, LinearPolicy, bar_time, model_for, walk_panel,
)


def test_a_replayed_trader_takes_the_backtesters_actions_and_follows_its_equity_curve(ledger_for) -> None:
    panel = walk_panel()
    model = model_for(panel)
    desk = Desk(ledger_for("sqlite").open_engine(), "parity", model, panel)
    outcomes = desk.run(range(LOOKBACK - 1, 90))
    assert {o.status for o in outcomes} == {StepStatus.TRADED}
    entries = desk.journal.entries("parity")
    assert not any("cut" in note for e in entries for note in e.notes)
    fills = [f for e in entries for f in e.fills if f["status"] == "filled"]
    events = [ev["rule"] for e in entries for ev in e.risk_events]
    assert len(fills) > 20 and "position_cap" in events  # it traded, through the risk layers

    report = replay_parity(entries, model, panel)
    assert report.within_tolerance, report.to_dict()
    assert report.bars == len(entries)
    assert report.max_abs_action_diff < 1e-6 and report.max_abs_executed_diff < 1e-6
    assert report.max_rel_equity_diff < 1e-9


def test_parity_names_the_first_bar_where_a_broker_could_not_fund_a_rotation(ledger_for) -> None:
    panel = walk_panel()
    model = model_for(panel, LinearPolicy, risk=RiskConfig.off())
    desk = Desk(ledger_for("sqlite").open_engine(), "rotate", model, panel)
    desk.run(range(LOOKBACK - 1, 90))
    entries = desk.journal.entries("rotate")
    cut = [i for i, e in enumerate(entries) if any("cut" in note for note in e.notes)]
    assert cut, "the linear policy should rotate into a buy the account cannot fund yet"
    report = replay_parity(entries, model, panel)
    # The decision is the same; the fills at the next open are not, so the next bar's equity differs.
    assert report.first_divergent_bar == entries[cut[0] + 1].bar_time
    assert "equity differs" in report.reason


def test_a_crash_after_the_orders_but_before_the_journal_row_places_no_order_twice(ledger_for) -> None:
    class PowerCut(BaseException):
        pass

    panel = walk_panel()
    model = model_for(panel)
    ledger = ledger_for("sqlite")
    first = Desk(ledger.open_engine(), "crash", model, panel)
    first.run(range(LOOKBACK - 1, 30))
    crash_row = 30  # a buying bar of the phase policy
    first.feed(crash_row)
    real_record = TradeJournal.record

    def die_before_writing(journal, entry, state=None):
        if entry.status is StepStatus.TRADED:
            raise PowerCut
        return real_record(journal, entry, state)

    TradeJournal.record = die_before_writing
    try:
        with pytest.raises(PowerCut):
            first.trader.step(bar_time(panel, crash_row))
    finally:
        TradeJournal.record = real_record
    submitted = first.broker.orders()
    assert submitted and submitted[-1].client_order_id.startswith(f"crash-{bar_time(panel, crash_row):%Y%m%dT%H%M}")
    assert not first.journal.has("crash", bar_time(panel, crash_row))

    restarted = Desk(ledger.open_engine(), "crash", model, panel)  # a new process: new engine, new objects
    outcome = restarted.trader.step(bar_time(panel, crash_row))
    assert outcome.status is StepStatus.TRADED
    assert restarted.broker.orders() == submitted  # no order placed twice
    assert [o["order_id"] for o in outcome.entry.orders] == [o.id for o in submitted if o.client_order_id in
                                                             {r["client_order_id"] for r in outcome.entry.orders}]
    restarted.run(range(crash_row + 1, 60))
    report = replay_parity(restarted.journal.entries("crash"), model, panel)
    assert report.within_tolerance, report.to_dict()  # the crash left no trace in the outcome


def test_a_bar_already_in_the_journal_is_a_no_op_and_an_older_bar_is_refused(ledger_for) -> None:
    panel = walk_panel()
    desk = Desk(ledger_for("sqlite").open_engine(), "dup", model_for(panel), panel)
    desk.run(range(LOOKBACK - 1, 13))  # row 12 is a buying bar
    orders = desk.broker.orders()
    rows = desk.journal.entries("dup")
    again = desk.trader.step(bar_time(panel, 12))
    assert again.status is StepStatus.SKIPPED_DUPLICATE and again.entry is None
    assert desk.broker.orders() == orders and desk.journal.entries("dup") == rows

    desk.run(range(13, 15))
    orders = desk.broker.orders()
    older = desk.trader.step(bar_time(panel, 5))
    assert older.status is StepStatus.SKIPPED_DUPLICATE
    assert "older than the last bar processed" in older.entry.errors[0]
    assert desk.broker.orders() == orders


def test_missing_and_stale_bars_are_skipped_with_an_error_and_no_orders(ledger_for) -> None:
    panel = walk_panel()
    gap_row = 40
    keep = np.r_[0:gap_row, gap_row + 1 : panel.num_bars]  # the bar at gap_row never arrived
    holed = make_panel(panel.close[keep], open_=panel.open[keep], features=panel.features[keep])
    holed = MarketPanel(**{**holed.__dict__, "timestamps": panel.timestamps[keep]})
    desk = Desk(ledger_for("sqlite").open_engine(), "stale", model_for(panel), panel, PanelBarProvider(holed))

    early = desk.trader.step(bar_time(panel, LOOKBACK - 3))
    assert early.status is StepStatus.SKIPPED_STALE and "fewer than 10 bars" in early.entry.errors[0]
    desk.run(range(LOOKBACK - 1, gap_row))
    orders = desk.broker.orders()
    missing = desk.trader.step(bar_time(panel, gap_row))
    assert missing.status is StepStatus.SKIPPED_STALE
    assert f"no bar at {bar_time(panel, gap_row).isoformat()}" in missing.entry.errors[0]
    assert desk.broker.orders() == orders
    beyond = desk.trader.step(bar_time(panel, panel.num_bars - 1) + (bar_time(panel, 1) - bar_time(panel, 0)))
    assert beyond.status is StepStatus.SKIPPED_STALE and desk.broker.orders() == orders
    assert desk.journal.status_counts("stale")[StepStatus.SKIPPED_STALE] == 3


def test_risk_events_and_their_reasons_land_in_the_journal(ledger_for) -> None:
    # Two assets; the first crashes 2% a bar after the policy has bought it.
    steps = 40
    close = np.ones((steps, 2)) * 100.0
    close[20:, 0] = 100.0 * 0.98 ** np.arange(1, steps - 19)
    panel = make_panel(close)
    risk = RiskConfig(stop_loss=0.10, max_position_fraction=None, portfolio_trailing_stop=None,
                      profit_take_threshold=None)
    model = model_for(panel, BuyFirstAndHold, risk=risk)
    desk = Desk(ledger_for("sqlite").open_engine(), "risky", model, panel)
    desk.run(range(LOOKBACK - 1, steps))
    entries = desk.journal.entries("risky")
    stops = [(e, ev) for e in entries for ev in e.risk_events if ev["rule"] == "stop_loss"]
    assert len(stops) == 1
    entry, event = stops[0]
    entry_price = next(f.price for f in desk.broker.fills() if f.symbol == "A0/USD")
    assert entry.prices["A0/USD"] <= entry_price * 0.9 < entries[entries.index(entry) - 1].prices["A0/USD"]
    assert event["symbol"] == "A0/USD" and "at or below -10.00%" in event["reason"]
    assert entry.policy_actions[0] == 0.0 and entry.executed_actions[0] == -1.0
    assert [o["side"] for o in entry.orders] == ["sell"]
    assert "A0/USD" not in desk.broker.positions()


def test_a_refused_order_is_recorded_and_the_trader_goes_on(ledger_for) -> None:
    panel = walk_panel()
    desk = Desk(ledger_for("sqlite").open_engine(), "refused", model_for(panel), panel,
                min_qty={"A1/USD": 1e9})  # no order in A1 can ever be big enough
    outcomes = desk.run(range(LOOKBACK - 1, 30))
    assert {o.status for o in outcomes} == {StepStatus.TRADED}
    refused = [o for e in desk.journal.entries("refused") for o in e.orders if o["status"] == "refused"]
    assert refused and all(o["symbol"] == "A1/USD" and "qty must be >=" in o["reason"] for o in refused)
    assert {o.symbol for o in desk.broker.orders()} == {"A0/USD", "A2/USD"}


def test_a_halted_trader_records_the_bar_and_places_nothing(ledger_for) -> None:
    panel = walk_panel()
    halt = {"on": False}
    desk = Desk(ledger_for("sqlite").open_engine(), "halt", model_for(panel), panel, halted=lambda: halt["on"])
    desk.run(range(LOOKBACK - 1, 12))
    halt["on"] = True
    orders = desk.broker.orders()
    outcome = desk.run(range(12, 13))[0]
    assert outcome.status is StepStatus.SKIPPED_HALTED and outcome.entry.errors == ("trading is halted",)
    assert desk.broker.orders() == orders
