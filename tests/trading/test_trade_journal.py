"""The trade journal: append-only rows per (trader, bar) and an exact trader state."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

import torch

from cappuccino_core.accounting import ExecutionCosts, execute_actions
from cappuccino_core.trading.journal import JournalEntry, StepStatus, TradeJournal, TraderState
from cappuccino_core.risk.layers import RiskConfig, apply_risk, update_after_fills

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _state_after_some_trading() -> TraderState:
    config = RiskConfig(trailing_stop=0.05, move_to_cash_threshold=0.2, conviction_threshold=0.1)
    state = TraderState.initial(2).risk
    cash, holdings = torch.tensor([1000.0], dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)
    for price in ([10.0, 20.0], [10.3, 19.1], [10.1, 21.7]):
        prices = torch.tensor([price], dtype=torch.float64)
        decision = apply_risk(torch.tensor([[0.3, 0.2]]), state, cash=cash, holdings=holdings, prices=prices, config=config)
        fills = execute_actions(cash, holdings, decision.actions, prices, ExecutionCosts())
        cash, holdings = fills.cash, fills.holdings
        state = update_after_fills(decision.state, fills=fills, prices_after=prices * 1.01, cash=cash,
                                   holdings=holdings, config=config)
    return TraderState(risk=state, pending=("a", "b"), awaiting_fills=True, steps=3, last_bar_time=T0)


def test_the_trader_state_round_trips_bit_for_bit() -> None:
    state = _state_after_some_trading()
    back = TraderState.from_json(state.to_json(), state.last_bar_time)
    for field in fields(state.risk):
        original, restored = getattr(state.risk, field.name), getattr(back.risk, field.name)
        assert restored.dtype == original.dtype and torch.equal(restored, original), field.name
    assert (back.pending, back.awaiting_fills, back.steps) == (("a", "b"), True, 3)


def test_a_bar_is_recorded_once_with_its_state_and_a_second_record_changes_nothing(tmp_path) -> None:
    from cappuccino_core.db import make_engine

    journal = TradeJournal(make_engine(f"sqlite:///{tmp_path}/j.db"))
    state = _state_after_some_trading()
    entry = JournalEntry("t1", T0, StepStatus.TRADED, T0, equity=1000.0, cash=400.0, prices={"BTC/USD": 10.0},
                         positions={"BTC/USD": 60.0}, policy_actions=(0.5,), executed_actions=(0.3,),
                         orders=({"client_order_id": "x", "symbol": "BTC/USD"},),
                         risk_events=({"rule": "position_cap", "symbol": "BTC/USD", "reason": "capped"},))
    assert journal.record(entry, state)
    other = JournalEntry("t1", T0, StepStatus.ERROR, T0 + timedelta(hours=1), errors=("late",))
    assert not journal.record(other, TraderState.initial(2))
    assert journal.entries("t1") == [entry]
    assert journal.load_state("t1").steps == 3  # the refused record did not touch the state either
    journal.record(JournalEntry("t1", T0 - timedelta(hours=1), StepStatus.SKIPPED_STALE, T0, errors=("old",)))
    journal.record(JournalEntry("t2", T0, StepStatus.SKIPPED_HALTED, T0, errors=("halted",)))
    assert [e.bar_time for e in journal.entries("t1")] == [T0 - timedelta(hours=1), T0]
    assert journal.last_bar_time("t1") == T0 and journal.last_bar_time("nobody") is None
    assert journal.status_counts("t1") == {"traded": 1, "skipped_stale": 1}
    assert journal.trader_ids() == ["t1", "t2"] and journal.has("t2", T0) and not journal.has("t2", T0 - timedelta(hours=1))
