"""The backtester lists its trades: round trips per asset, who closed them, what they made."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.evaluation.backtest import END_EXIT, POLICY_EXIT, backtest
from cappuccino_core.risk.layers import RiskConfig
from tests.conftest import make_panel

STOP_ONLY = RiskConfig(stop_loss=0.10, max_position_fraction=None, portfolio_trailing_stop=None, profit_take_threshold=None)


def _crash_panel():
    """Asset 0 is flat for 20 bars, then falls 2% a bar; asset 1 stays flat."""
    close = np.full((60, 2), 100.0)
    close[20:, 0] = 100.0 * 0.98 ** np.arange(1, 41)
    panel = make_panel(close)
    return panel, FeatureNormalizer.fit(panel.features)


class Scripted:
    """Plays a fixed action per step (then nothing)."""

    name = "scripted"

    def __init__(self, actions: dict[int, list[float]]) -> None:
        self.actions = actions

    def act(self, obs, context):
        row = self.actions.get(context.steps, [0.0, 0.0])
        return torch.tensor([row], dtype=torch.float32).expand(len(context.rows), 2)


def test_a_stop_loss_exit_is_named_as_the_risk_rule_and_its_loss_is_the_fills_cash_flows() -> None:
    panel, normalizer = _crash_panel()
    config = EnvConfig(lookback=5, fee_rate=0.0, slippage_bps=0.0, start_invested=False).with_risk(STOP_ONLY)
    report = backtest(Scripted({0: [0.5, 0.0]}), panel, normalizer, config, start_row=10, bars=40)
    assert [t.exit_reason for t in report.trades] == ["stop_loss"]
    trade = report.trades[0]
    assert trade.symbol == panel.symbols[0] and trade.entry_step == 0 and trade.exit_step == 25 - 10
    buy, sell = report.fill_qty[0] * report.fill_price[0], -report.fill_qty[1] * report.fill_price[1]
    assert trade.pnl == pytest.approx(sell - buy) and trade.pnl < 0
    assert trade.entry_ns == panel.timestamps[11] and trade.exit_ns == panel.timestamps[26]  # fills at the next open
    assert list(report.fill_reason) == [POLICY_EXIT, "stop_loss"]
    assert report.metrics.trade_count == 1 and report.metrics.win_rate_trades == 0.0


def test_the_same_sell_asked_by_the_policy_is_a_policy_exit() -> None:
    panel, normalizer = _crash_panel()
    config = EnvConfig(lookback=5, fee_rate=0.0, slippage_bps=0.0, start_invested=False, risk=RiskConfig.off())
    report = backtest(Scripted({0: [0.5, 0.0], 3: [-1.0, 0.0]}), panel, normalizer, config, start_row=10, bars=40)
    assert [(t.exit_reason, t.exit_step) for t in report.trades] == [(POLICY_EXIT, 3)]


def test_selling_the_starting_book_closes_a_long_trade_and_positions_left_open_are_marked_at_the_end() -> None:
    panel, normalizer = _crash_panel()
    config = EnvConfig(lookback=5, fee_rate=0.001, slippage_bps=0.0, risk=RiskConfig.off())  # starts invested
    report = backtest(Scripted({2: [-1.0, 0.0]}), panel, normalizer, config, start_row=10, bars=40)
    by_symbol = {t.symbol: t for t in report.trades}
    sold, kept = by_symbol[panel.symbols[0]], by_symbol[panel.symbols[1]]
    assert all(t.side == 1 for t in report.trades)  # never a phantom short
    assert sold.entry_step == -1 and sold.exit_reason == POLICY_EXIT and sold.entry_ns == panel.timestamps[10]
    assert sold.entry_notional == pytest.approx(config.initial_cash / 2)
    assert sold.pnl == pytest.approx(-report.fill_fee[0])  # flat prices: the fee is the whole loss
    assert kept.exit_reason == END_EXIT and not kept.closed and kept.exit_step == 40 and kept.pnl == pytest.approx(0.0)
    assert report.metrics.trade_count == 1  # the open one is not a closed trade
