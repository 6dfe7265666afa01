"""The risk layers on hand-built price paths, filled by the real accounting.

Each bar of a ``Book`` is: decide at the bar's price, fill at that same price (no slippage
or fees unless a test sets them), and mark the book at it, so thresholds are exact.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from cappuccino_core.accounting import ExecutionCosts, execute_actions, portfolio_value
from cappuccino_core.risk.layers import (
    RiskConfig,
    RiskDecision,
    RiskRule,
    RiskState,
    apply_risk,
    cooldown_bars_for,
    update_after_fills,
)

FREE = ExecutionCosts(fee_rate=0.0, slippage_bps=0.0, min_order_notional=1.0)
F64 = torch.float64


def only(**rules: object) -> RiskConfig:
    """A config with every rule off except the ones given."""
    return dataclasses.replace(RiskConfig.off(), **rules)


class Book:
    """``n`` books over ``a`` assets stepped through apply_risk -> execute_actions -> update_after_fills."""

    def __init__(self, config: RiskConfig, *, n: int = 1, a: int = 1, cash: float = 10_000.0,
                 costs: ExecutionCosts = FREE) -> None:
        self.config, self.costs = config, costs
        self.cash = torch.full((n,), cash, dtype=F64)
        self.holdings = torch.zeros(n, a, dtype=F64)
        self.state = RiskState.initial(n, a)

    def step(self, actions: list | torch.Tensor, prices: list | torch.Tensor) -> RiskDecision:
        actions_t = torch.as_tensor(actions, dtype=F64).reshape(self.holdings.shape)
        prices_t = torch.as_tensor(prices, dtype=F64).reshape(self.holdings.shape)
        decision = apply_risk(actions_t, self.state, cash=self.cash, holdings=self.holdings,
                              prices=prices_t, config=self.config)
        fills = execute_actions(self.cash, self.holdings, decision.actions, prices_t, self.costs)
        self.state = update_after_fills(decision.state, fills=fills, prices_after=prices_t, cash=fills.cash,
                                        holdings=fills.holdings, config=self.config)
        self.cash, self.holdings = fills.cash, fills.holdings
        return decision

    def equity(self, prices: list) -> float:
        return float(portfolio_value(self.cash, self.holdings, torch.tensor([prices], dtype=F64))[0])


def fired(decision: RiskDecision, rule: RiskRule) -> bool:
    mask = decision.triggers.get(rule)
    return mask is not None and bool(mask.any())


# --- position rules ---------------------------------------------------------------------------


def test_stop_loss_sells_the_position_exactly_at_ten_percent_below_entry_and_not_before() -> None:
    book = Book(only(stop_loss=0.10))
    book.step([1.0], [100.0])
    assert float(book.state.entry_price[0, 0]) == 100.0
    for price in (95.0, 90.01):
        decision = book.step([0.0], [price])
        assert not fired(decision, RiskRule.STOP_LOSS), f"stop-loss fired early at {price}"
        assert float(book.holdings[0, 0]) == pytest.approx(100.0)
    decision = book.step([0.5], [90.0])  # the policy even wants to buy more
    assert float(decision.actions[0, 0]) == -1.0
    assert float(book.holdings[0, 0]) == 0.0
    assert float(book.state.entry_price[0, 0]) == 0.0  # cleared when flat
    (event,) = decision.events()
    assert (event.rule, event.book, event.asset) == (RiskRule.STOP_LOSS, 0, 0)
    assert event.value == pytest.approx(-0.10) and event.threshold == pytest.approx(-0.10)
    assert "entry price" in event.reason
    assert int(book.state.count(RiskRule.STOP_LOSS)[0]) == 1


def test_entry_price_is_the_volume_weighted_fill_price_and_survives_partial_sells() -> None:
    costs = ExecutionCosts(fee_rate=0.001, slippage_bps=10.0, min_order_notional=1.0)
    book = Book(only(), costs=costs)
    book.step([0.5], [100.0])
    first_units = float(book.holdings[0, 0])
    assert float(book.state.entry_price[0, 0]) == pytest.approx(100.0 * 1.001, rel=1e-12)  # slippage in, fee out
    book.step([1.0], [120.0])
    second_units = float(book.holdings[0, 0]) - first_units
    expected = (first_units * 100.0 * 1.001 + second_units * 120.0 * 1.001) / (first_units + second_units)
    assert float(book.state.entry_price[0, 0]) == pytest.approx(expected, rel=1e-12)
    before = float(book.state.entry_price[0, 0])
    book.step([-0.5], [130.0])
    assert float(book.state.entry_price[0, 0]) == before
    book.step([-1.0], [130.0])
    assert float(book.state.entry_price[0, 0]) == 0.0


def test_trailing_stop_triggers_at_exactly_its_fraction_below_the_high_water_mark() -> None:
    book = Book(only(trailing_stop=0.05))
    book.step([1.0], [100.0])
    for price in (110.0, 120.0, 116.0):
        book.step([0.0], [price])
    assert float(book.state.high_water[0, 0]) == 120.0
    decision = book.step([0.0], [114.01])
    assert not fired(decision, RiskRule.TRAILING_STOP)
    decision = book.step([0.0], [114.0])  # 120 * (1 - 0.05)
    assert fired(decision, RiskRule.TRAILING_STOP) and float(decision.actions[0, 0]) == -1.0
    (event,) = decision.events()
    assert event.value == pytest.approx(-0.05)
    assert float(book.holdings[0, 0]) == 0.0 and float(book.state.high_water[0, 0]) == 0.0


def test_buys_are_capped_so_each_position_lands_at_the_maximum_fraction() -> None:
    book = Book(only(max_position_fraction=0.30), a=3)
    decision = book.step([1.0, 1.0, 0.2], [100.0, 50.0, 10.0])
    prices = [100.0, 50.0, 10.0]
    weights = book.holdings[0] * torch.tensor(prices, dtype=F64) / book.equity(prices)
    # Without the cap the two big buys would each get 1/2.2 of the cash (45 %).
    assert weights[0].item() == pytest.approx(0.30, rel=1e-12)
    assert weights[1].item() == pytest.approx(0.30, rel=1e-12)
    assert weights[2].item() == pytest.approx(0.2 / 2.2, rel=1e-12)  # the small buy keeps its cash share
    assert decision.triggers[RiskRule.POSITION_CAP][0].tolist() == [True, True, False]
    capped = [e for e in decision.events() if e.rule is RiskRule.POSITION_CAP]
    assert [e.value for e in capped] == pytest.approx([1 / 2.2, 1 / 2.2])
    # A position already at the cap gets no more.
    decision = book.step([1.0, 0.0, 0.0], prices)
    assert float(decision.actions[0, 0]) == 0.0


def test_capped_buys_land_at_or_below_the_cap_when_fees_and_slippage_apply() -> None:
    costs = ExecutionCosts(fee_rate=0.0025, slippage_bps=5.0, min_order_notional=1.0)
    book = Book(only(max_position_fraction=0.30), a=2, costs=costs)
    book.step([1.0, 1.0], [100.0, 20.0])
    weights = book.holdings[0] * torch.tensor([100.0, 20.0], dtype=F64) / book.equity([100.0, 20.0])
    assert bool((weights <= 0.30).all()) and bool((weights > 0.299).all())


def test_a_position_above_the_cap_is_trimmed_to_it_and_one_exactly_at_the_cap_is_left_alone() -> None:
    book = Book(only(max_position_fraction=0.30), a=2)
    book.holdings = torch.tensor([[30.0, 0.0]], dtype=F64)
    book.cash = torch.tensor([7_000.0], dtype=F64)
    decision = book.step([0.0, 0.0], [100.0, 10.0])  # 3,000 of 10,000: exactly at the cap
    assert not fired(decision, RiskRule.POSITION_TRIM) and float(decision.actions[0, 0]) == 0.0
    decision = book.step([0.3, 0.0], [150.0, 10.0])  # 4,500 of 11,500: above
    assert fired(decision, RiskRule.POSITION_TRIM)
    assert float(book.holdings[0, 0]) * 150.0 / book.equity([150.0, 10.0]) == pytest.approx(0.30, rel=1e-12)
    (event,) = decision.events()
    assert event.value == pytest.approx(4_500.0 / 11_500.0) and event.threshold == 0.30


def test_dampening_scales_the_policy_actions_but_never_a_forced_sell() -> None:
    book = Book(only(action_dampening=0.5, stop_loss=0.10), a=3)
    book.step([0.4, 0.4, 0.0], [100.0, 100.0, 100.0])
    decision = book.step([0.8, -0.6, 0.4], [100.0, 90.0, 100.0])  # asset 1 hits its stop-loss
    assert decision.actions[0].tolist() == pytest.approx([0.4, -1.0, 0.2])


# --- portfolio rules --------------------------------------------------------------------------


def test_portfolio_trailing_stop_fires_at_exactly_one_and_a_half_percent_below_the_peak_and_not_before() -> None:
    book = Book(only(portfolio_trailing_stop=0.015), a=2)
    book.step([0.5, 0.5], [100.0, 100.0])  # 50 units of each
    book.step([0.0, 0.0], [110.0, 100.0])
    assert float(book.state.equity_peak[0]) == 10_500.0
    decision = book.step([0.0, 0.0], [106.86, 100.0])  # 10,343 > 10,342.5
    assert not fired(decision, RiskRule.PORTFOLIO_TRAILING_STOP)
    decision = book.step([0.0, 0.0], [106.85, 100.0])  # 50 * 206.85 = 10,342.5 = 10,500 * 0.985
    assert fired(decision, RiskRule.PORTFOLIO_TRAILING_STOP)
    (event,) = decision.events()
    assert event.value == pytest.approx(-0.015) and event.threshold == -0.015


def test_portfolio_trailing_stop_sells_everything_blocks_buys_and_preempts_position_stops() -> None:
    book = Book(only(portfolio_trailing_stop=0.015, stop_loss=0.01), a=2)
    book.step([0.5, 0.5], [100.0, 100.0])
    book.step([0.0, 0.0], [110.0, 100.0])  # equity peak 10,500
    decision = book.step([1.0, 1.0], [106.85, 98.0])  # 10,242.5: below; asset 1 also at its -2 % stop
    assert decision.actions[0].tolist() == [-1.0, -1.0]  # everything sold, the policy's buys blocked
    assert book.holdings.abs().sum().item() == 0.0
    events = decision.events()
    assert [e.rule for e in events] == [RiskRule.PORTFOLIO_TRAILING_STOP]  # portfolio first; no position stop
    assert events[0].value == pytest.approx(10_242.5 / 10_500.0 - 1.0)
    assert not bool(book.state.in_cycle[0])


def test_profit_taking_sells_half_of_every_position_at_plus_three_percent_once_per_cycle() -> None:
    book = Book(only(profit_take_threshold=0.03, profit_take_fraction=0.5), a=2)
    book.step([0.5, 0.5], [100.0, 100.0])  # 50 units each, cycle starts at 10,000
    assert bool(book.state.in_cycle[0]) and float(book.state.cycle_start_equity[0]) == 10_000.0
    decision = book.step([0.0, 0.0], [102.99, 103.0])  # +2.995 %
    assert not fired(decision, RiskRule.PROFIT_TAKE)
    decision = book.step([0.3, -0.2], [103.0, 103.0])  # +3 % exactly
    assert decision.actions[0].tolist() == [-0.5, -0.5]  # the buy is overridden, the small sell deepened
    assert book.holdings[0].tolist() == [25.0, 25.0]
    (event,) = decision.events()
    assert event.rule is RiskRule.PROFIT_TAKE and event.value == pytest.approx(0.03)
    decision = book.step([0.0, 0.0], [110.0, 110.0])  # far above +3 %: same cycle, no second time
    assert not fired(decision, RiskRule.PROFIT_TAKE)
    book.step([-1.0, -1.0], [110.0, 110.0])  # flat: the cycle ends
    assert not bool(book.state.in_cycle[0]) and not bool(book.state.profit_taken[0])
    cash = float(book.cash[0])
    book.step([1.0, 0.0], [110.0, 110.0])  # a new cycle from this cash
    assert float(book.state.cycle_start_equity[0]) == pytest.approx(cash)
    decision = book.step([0.0, 0.0], [113.3, 110.0])  # +3 % of the new start
    assert fired(decision, RiskRule.PROFIT_TAKE)
    assert int(book.state.count(RiskRule.PROFIT_TAKE)[0]) == 2


def test_move_to_cash_blocks_buys_for_exactly_the_cooldown_then_allows_them() -> None:
    book = Book(only(move_to_cash_threshold=0.06, cooldown_bars=3))
    book.step([1.0], [100.0])
    decision = book.step([0.0], [94.01])
    assert not fired(decision, RiskRule.MOVE_TO_CASH)
    decision = book.step([1.0], [94.0])  # 6 % below the book's peak of 10,000
    assert fired(decision, RiskRule.MOVE_TO_CASH) and float(decision.actions[0, 0]) == -1.0
    assert float(book.holdings[0, 0]) == 0.0
    for _ in range(2):  # the trigger bar plus two more make three bars without buys
        decision = book.step([1.0], [94.0])
        assert int(decision.count(RiskRule.COOLDOWN)[0]) == 1 and float(decision.actions[0, 0]) == 0.0
        assert float(book.holdings[0, 0]) == 0.0
    decision = book.step([1.0], [94.0])
    assert not fired(decision, RiskRule.COOLDOWN) and float(book.holdings[0, 0]) == 100.0
    assert int(book.state.count(RiskRule.COOLDOWN)[0]) == 2
    assert int(book.state.count(RiskRule.MOVE_TO_CASH)[0]) == 1


def test_cooldown_hours_become_bars_of_the_trading_interval_rounded_up() -> None:
    assert cooldown_bars_for(24, "1h") == 24
    assert cooldown_bars_for(24, "4h") == 6
    assert cooldown_bars_for(24, "15m") == 96
    assert cooldown_bars_for(1, "4h") == 1
    with pytest.raises(ValueError, match="hours"):
        cooldown_bars_for(-1, "1h")


def test_portfolio_rules_run_before_the_cap_so_profit_taking_proceeds_cannot_overfill_a_position() -> None:
    prices = [105.0, 105.0, 105.0, 105.0]

    def setup(config: RiskConfig) -> Book:
        book = Book(config, a=4)
        book.step([0.2, 0.2, 0.2, 0.0], [100.0] * 4)  # 20 units of three assets; the cycle starts at 10,000
        return book

    book = setup(only(max_position_fraction=0.30, profit_take_threshold=0.03))
    decision = book.step([0.0, 0.0, 0.0, 1.0], prices)  # +3 %: profit-taking sells, the cap sees the proceeds
    assert fired(decision, RiskRule.PROFIT_TAKE) and fired(decision, RiskRule.POSITION_CAP)
    weight = float(book.holdings[0, 3]) * 105.0 / book.equity(prices)
    assert weight == pytest.approx(0.30, rel=1e-12)

    # The other order: the cap judged on the book before profit-taking, whose sells come after.
    other = setup(only(max_position_fraction=0.30))
    prices_t = torch.tensor([prices], dtype=F64)
    capped_first = apply_risk(torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=F64), other.state, cash=other.cash,
                              holdings=other.holdings, prices=prices_t, config=other.config).actions
    then_profit = torch.where(other.holdings > 0, torch.minimum(capped_first, torch.tensor(-0.5, dtype=F64)),
                              capped_first)
    fills = execute_actions(other.cash, other.holdings, then_profit, prices_t, FREE)
    other_weight = float(fills.holdings[0, 3]) * 105.0 / float(portfolio_value(fills.cash, fills.holdings, prices_t)[0])
    assert other_weight > 0.5  # 0.7725 of 7,150 cash instead of 3,090


def test_conviction_filter_drops_weak_buys_counts_them_and_never_touches_sells() -> None:
    book = Book(only(conviction_threshold=0.7), a=3)
    book.holdings = torch.tensor([[0.0, 0.0, 10.0]], dtype=F64)
    decision = book.step([0.01, 1.0, -0.01], [100.0, 100.0, 100.0])
    # No history: momentum 0.5, regime 1, drawdown part 1; size 0.01/1.01 / 0.3 of equity vs 1.0.
    assert decision.actions[0].tolist() == pytest.approx([0.0, 1.0, -0.01])
    assert decision.triggers[RiskRule.CONVICTION][0].tolist() == [True, False, False]
    (event,) = decision.events()
    size = (0.01 / 1.01) * (10_000.0 / 11_000.0) / 1.0
    assert event.value == pytest.approx((size + 0.5 + 1.0 + 1.0) / 4)
    assert int(book.state.count(RiskRule.CONVICTION)[0]) == 1


def test_conviction_prefers_buying_a_rising_asset_to_a_falling_one() -> None:
    book = Book(only(conviction_threshold=0.0), a=2)
    for step in range(30):
        book.step([0.0, 0.0], [100.0 * 1.01**step, 100.0 * 0.99**step])
    decision = book.step([0.5, 0.5], [100.0 * 1.01**30, 100.0 * 0.99**30])
    score = decision.measures.score
    assert score is not None and float(score[0, 0]) > float(score[0, 1])


# --- state, batching, events, validation -----------------------------------------------------


def test_a_quiet_bar_passes_the_policy_actions_through_unchanged() -> None:
    book = Book(RiskConfig(), a=3)
    book.step([0.2, 0.2, 0.0], [100.0, 50.0, 10.0])
    actions = torch.tensor([[0.1, -0.3, 0.25]], dtype=F64)
    decision = book.step(actions, [100.5, 50.1, 10.0])
    assert torch.equal(decision.actions, actions)
    assert decision.events() == []


def test_reset_rows_clears_the_state_of_those_books_only() -> None:
    book = Book(only(move_to_cash_threshold=0.02, cooldown_bars=5), n=3, a=2)
    book.step([[1.0, 0.0]] * 3, [[100.0, 10.0]] * 3)
    book.step([[0.0, 0.0]] * 3, [[97.0, 10.0]] * 3)  # moves all three to cash
    state = book.state
    assert bool((state.cooldown > 0).all()) and bool((state.count(RiskRule.MOVE_TO_CASH) == 1).all())
    reset = state.reset_rows(torch.tensor([False, True, False]))
    fresh = RiskState.initial(3, 2)
    for field in dataclasses.fields(RiskState):
        got, before, zero = getattr(reset, field.name), getattr(state, field.name), getattr(fresh, field.name)
        assert torch.equal(got[1], zero[1]), field.name
        assert torch.equal(got[0], before[0]) and torch.equal(got[2], before[2]), field.name
    with pytest.raises(ValueError, match="shape"):
        state.reset_rows(torch.tensor([True, False]))


def test_batched_books_get_exactly_the_decisions_each_book_gets_alone() -> None:
    config = RiskConfig(stop_loss=0.02, trailing_stop=0.03, move_to_cash_threshold=0.04, cooldown_bars=5,
                        portfolio_trailing_stop=0.015, profit_take_threshold=0.03,
                        conviction_threshold=0.55, conviction_fast_bars=4, conviction_slow_bars=12)
    costs = ExecutionCosts()
    n, a, steps = 5, 3, 80
    gen = torch.Generator().manual_seed(7)
    prices = 100 * torch.exp(torch.randn(steps, n, a, generator=gen, dtype=F64).mul(0.02).cumsum(0))
    actions = torch.rand(steps, n, a, generator=gen, dtype=F64) * 2 - 1
    batched = Book(config, n=n, a=a, costs=costs)
    alone = [Book(config, n=1, a=a, costs=costs) for _ in range(n)]
    counts = {rule: 0 for rule in RiskRule}
    for t in range(steps):
        decision = batched.step(actions[t], prices[t])
        for row, single in enumerate(alone):
            single_decision = single.step(actions[t, row : row + 1], prices[t, row : row + 1])
            assert torch.equal(single_decision.actions[0], decision.actions[row]), f"bar {t}, book {row}"
        for rule, mask in decision.triggers.items():
            counts[rule] += int(mask.sum())
    for row, single in enumerate(alone):
        one_row = batched.state.select([row])
        for field in dataclasses.fields(RiskState):
            assert torch.equal(getattr(single.state, field.name), getattr(one_row, field.name)), field.name
    # The path was rough enough to fire every rule, so the comparison above is not vacuous.
    assert all(count > 0 for count in counts.values()), counts


def test_over_a_random_run_no_buy_lands_a_position_above_the_cap() -> None:
    config = RiskConfig(max_position_fraction=0.25)
    n, a, steps = 16, 4, 120
    gen = torch.Generator().manual_seed(3)
    prices = 50 * torch.exp(torch.randn(steps, n, a, generator=gen, dtype=F64).mul(0.01).cumsum(0))
    book = Book(config, n=n, a=a)
    for t in range(steps):
        before = book.holdings.clone()
        book.step(torch.rand(n, a, generator=gen, dtype=F64) * 2 - 1, prices[t])
        equity = portfolio_value(book.cash, book.holdings, prices[t]).unsqueeze(1)
        weights = book.holdings * prices[t] / equity
        bought = book.holdings > before
        assert bool((weights[bought] <= 0.25 * (1 + 1e-9)).all()), f"bar {t}"
        assert bool((book.holdings >= 0).all()) and bool((book.cash >= -1e-9).all())


def test_events_name_the_book_label_and_are_listed_in_application_order() -> None:
    book = Book(only(stop_loss=0.10, max_position_fraction=0.6), n=2, a=2)
    book.step([[0.5, 0.5], [0.5, 0.5]], [[100.0, 100.0], [100.0, 100.0]])
    decision = book.step([[0.0, 1.0], [0.0, 0.0]], [[80.0, 100.0], [100.0, 100.0]])
    events = decision.events(row_labels=[41, 42])
    assert [(e.book, e.rule, e.asset) for e in events] == [
        (41, RiskRule.STOP_LOSS, 0),
        (41, RiskRule.POSITION_CAP, 1),  # the stop-loss proceeds count towards the cap
    ]
    with pytest.raises(ValueError, match="labels"):
        decision.events(row_labels=[1])


def test_dust_positions_count_as_flat_and_trigger_nothing() -> None:
    book = Book(only(stop_loss=0.10), costs=FREE)
    book.holdings = torch.tensor([[0.005]], dtype=F64)  # 0.50 at 100: below the 1.0 dust line
    book.state = dataclasses.replace(book.state, entry_price=torch.tensor([[200.0]], dtype=F64))
    decision = book.step([0.0], [100.0])
    assert not fired(decision, RiskRule.STOP_LOSS)
    assert not bool(book.state.in_cycle[0])


def test_config_refuses_thresholds_out_of_range_and_round_trips_through_a_dict() -> None:
    for bad in ({"stop_loss": 0.0}, {"stop_loss": 1.5}, {"max_position_fraction": 1.2}, {"action_dampening": 0.0},
                {"profit_take_fraction": 0.0}, {"cooldown_bars": -1}, {"conviction_threshold": 1.5},
                {"conviction_weights": (0.0, 0.0, 0.0, 0.0)}, {"conviction_slow_bars": 10}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RiskConfig(**bad)
    config = RiskConfig(trailing_stop=0.05, move_to_cash_threshold=0.06, conviction_threshold=0.4)
    assert RiskConfig.from_dict(config.to_dict()) == config


def test_apply_risk_refuses_a_bad_price_naming_the_book_and_asset() -> None:
    state = RiskState.initial(2, 2)
    prices = torch.tensor([[100.0, 100.0], [100.0, math.nan]], dtype=F64)
    with pytest.raises(ValueError, match=r"prices\[1, 1\]"):
        apply_risk(torch.zeros(2, 2), state, cash=torch.ones(2, dtype=F64), holdings=torch.zeros(2, 2, dtype=F64),
                   prices=prices, config=RiskConfig())
    with pytest.raises(ValueError, match="holdings must have shape"):
        apply_risk(torch.zeros(2, 2), state, cash=torch.ones(2, dtype=F64), holdings=torch.zeros(2, 3, dtype=F64),
                   prices=prices.nan_to_num(1.0), config=RiskConfig())
