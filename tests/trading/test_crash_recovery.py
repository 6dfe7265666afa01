"""A crash after order k of n, on a broker that fills at once: the restart carries out the bar's plan, never a new one.

Alpaca fills a market order at once, so after a crash the account already holds the first
orders' fills; re-planning the bar from it would size the other orders differently. These
tests run the real alpaca-py broker against the local fake Alpaca (immediate fills) and compare
a run that crashed and restarted with one that did not, over the same bars.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cappuccino_core.db import make_engine
from cappuccino_core.trading.alpaca_broker import AlpacaBroker
from cappuccino_core.trading.journal import PlanStatus, StepStatus, TradeJournal
from tests.fakes.alpaca_server import FakeAlpacaServer
from tests.trading.alpaca_desk import AlpacaDesk, decisions, sent_orders
from tests.trading.trading_scenarios import LOOKBACK, LinearPolicy, PhasePolicy, bar_time, model_for, walk_panel

LAST_ROW = 40


REPO = Path(__file__).resolve().parents[2]


class PowerCut(BaseException):
    """The process dies (not an ``Exception``: nothing in the trader may catch it)."""


class CrashAfterOrders:
    """The real broker, until it has placed ``k`` orders of the crash bar: then the process dies.

    It also checks that the bar's plan was committed before its first order went out.
    """

    def __init__(self, broker: AlpacaBroker, *, k: int, bar_prefix: str, journal: TradeJournal,
                 trader_id: str, bar: Any) -> None:
        self._broker, self._k, self._prefix = broker, k, bar_prefix
        self._journal, self._trader_id, self._bar = journal, trader_id, bar
        self.placed: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)

    def submit_order(self, symbol, side, **kwargs):
        cid = kwargs["client_order_id"]
        if cid.startswith(self._prefix) and not self.placed:
            stored = self._journal.plan(self._trader_id, self._bar)
            assert stored is not None and stored[1] is PlanStatus.OPEN, "an order went out before its plan was committed"
        placed = self._broker.submit_order(symbol, side, **kwargs)
        if cid.startswith(self._prefix):
            self.placed.append(cid)
            if len(self.placed) == self._k:
                raise PowerCut
        return placed


def no_crash_run(open_account, tmp_path, model, panel, trader_id: str = "desk") -> tuple[FakeAlpacaServer, TradeJournal]:
    server = open_account()
    desk = AlpacaDesk(server, make_engine(f"sqlite:///{tmp_path}/reference.db"), trader_id, model, panel)
    assert {o.status for o in desk.run(range(LOOKBACK - 1, LAST_ROW))} == {StepStatus.TRADED}
    return server, desk.journal


@pytest.mark.parametrize(("policy", "crash_row"), [(PhasePolicy, 12), (LinearPolicy, 21)],
                         ids=["buys", "rotation"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_a_restart_after_a_crash_after_order_k_of_n_sends_the_plans_orders_and_ends_like_a_run_without_a_crash(
        alpaca_account, tmp_path, policy, crash_row: int, k: int) -> None:
    panel = walk_panel(bars=60)
    model = model_for(panel, policy)
    reference, reference_journal = no_crash_run(alpaca_account, tmp_path, model, panel)
    prefix = f"desk-{bar_time(panel, crash_row):%Y%m%dT%H%M}-"
    planned = [o for o in sent_orders(reference) if o[0].startswith(prefix)]
    assert len(planned) == 3, "the crash bar should send one order per asset"

    server = alpaca_account()
    url = f"sqlite:///{tmp_path}/crashed.db"
    crashing = AlpacaDesk(server, make_engine(url), "desk", model, panel,
                          wrap=lambda broker, journal: CrashAfterOrders(
                              broker, k=k, bar_prefix=prefix, journal=journal, trader_id="desk",
                              bar=bar_time(panel, crash_row)))
    crashing.run(range(LOOKBACK - 1, crash_row))
    with pytest.raises(PowerCut):
        crashing.step(crash_row)
    assert [o[0] for o in sent_orders(server) if o[0].startswith(prefix)] == [o[0] for o in planned[:k]]

    restarted = AlpacaDesk(server, make_engine(url), "desk", model, panel)  # a new process
    outcome = restarted.step(crash_row)
    assert outcome.status is StepStatus.TRADED
    assert any("carried out the plan committed" in note for note in outcome.entry.notes)
    restarted.run(range(crash_row + 1, LAST_ROW))

    assert sent_orders(server) == sent_orders(reference)  # same symbols, sides, quantities, client ids
    assert server.trading.holdings == reference.trading.holdings
    assert server.trading.cash == reference.trading.cash
    assert decisions(restarted.journal, "desk") == decisions(reference_journal, "desk")
    assert restarted.journal.open_plans("desk") == []
    assert restarted.journal.plan("desk", bar_time(panel, crash_row))[1] is PlanStatus.DONE


@pytest.mark.postgres
def test_the_plan_survives_a_crash_on_a_postgresql_journal_too(alpaca_account, ledger_for, tmp_path) -> None:
    ledger = ledger_for("postgres")
    trader = ledger.account("desk")
    panel = walk_panel(bars=60)
    model = model_for(panel, LinearPolicy)
    crash_row = 21
    reference, reference_journal = no_crash_run(alpaca_account, tmp_path, model, panel, trader)
    prefix = f"{trader}-{bar_time(panel, crash_row):%Y%m%dT%H%M}-"
    server = alpaca_account()
    crashing = AlpacaDesk(server, ledger.open_engine(), trader, model, panel,
                          wrap=lambda broker, journal: CrashAfterOrders(
                              broker, k=2, bar_prefix=prefix, journal=journal, trader_id=trader,
                              bar=bar_time(panel, crash_row)))
    crashing.run(range(LOOKBACK - 1, crash_row))
    with pytest.raises(PowerCut):
        crashing.step(crash_row)

    restarted = AlpacaDesk(server, ledger.open_engine(), trader, model, panel)
    restarted.run(range(crash_row, LAST_ROW))

    assert sent_orders(server) == sent_orders(reference)
    assert server.trading.holdings == reference.trading.holdings
    assert decisions(restarted.journal, trader) == decisions(reference_journal, trader)


def test_the_unfinished_plan_of_a_past_bar_is_abandoned_its_sent_order_kept_and_the_rest_never_sent(
        alpaca_account, tmp_path) -> None:
    panel = walk_panel(bars=60)
    model = model_for(panel)
    crash_row = 12
    crash_bar = bar_time(panel, crash_row)
    prefix = f"desk-{crash_bar:%Y%m%dT%H%M}-"
    server = alpaca_account()
    url = f"sqlite:///{tmp_path}/crashed.db"
    crashing = AlpacaDesk(server, make_engine(url), "desk", model, panel,
                          wrap=lambda broker, journal: CrashAfterOrders(
                              broker, k=1, bar_prefix=prefix, journal=journal, trader_id="desk", bar=crash_bar))
    crashing.run(range(LOOKBACK - 1, crash_row))
    with pytest.raises(PowerCut):
        crashing.step(crash_row)
    (sent,) = [o for o in sent_orders(server) if o[0].startswith(prefix)]

    restarted = AlpacaDesk(server, make_engine(url), "desk", model, panel)
    nxt = restarted.step(crash_row + 1)  # the crash bar was never stepped again: the next bar came first

    assert nxt.status is StepStatus.TRADED
    abandoned = next(e for e in restarted.journal.entries("desk") if e.bar_time == crash_bar)
    assert abandoned.status is StepStatus.ABANDONED
    assert [o["status"] for o in abandoned.orders] == ["filled", "not_sent", "not_sent"]
    assert "did not finish before bar" in abandoned.errors[-1] and "1 order(s) it had sent kept, 2 not sent" in \
        abandoned.errors[-1]
    assert [o[0] for o in sent_orders(server) if o[0].startswith(prefix)] == [sent[0]]  # never sent late
    assert [f["client_order_id"] for f in nxt.entry.fills] == [sent[0]]  # its fill is booked at the next bar
    assert restarted.journal.plan("desk", crash_bar)[1] is PlanStatus.ABANDONED
    again = restarted.step(crash_row)
    assert again.status is StepStatus.SKIPPED_DUPLICATE
    assert [o[0] for o in sent_orders(server) if o[0].startswith(prefix)] == [sent[0]]


@pytest.mark.parametrize("k", [1, 2])
def test_a_trading_process_killed_with_sigkill_after_order_k_is_resumed_by_the_next_process_without_a_difference(
        alpaca_account, tmp_path, k: int) -> None:
    panel = walk_panel(bars=60)
    model = model_for(panel, LinearPolicy)
    crash_row = 21
    reference, reference_journal = no_crash_run(alpaca_account, tmp_path, model, panel)
    prefix = f"desk-{bar_time(panel, crash_row):%Y%m%dT%H%M}-"
    server = alpaca_account()
    url = f"sqlite:///{tmp_path}/killed.db"
    AlpacaDesk(server, make_engine(url), "desk", model, panel).run(range(LOOKBACK - 1, crash_row))
    server.trading.configure(prices=dict(zip(panel.symbols, panel.close[crash_row].tolist())))
    child = subprocess.Popen([sys.executable, "-m", "tests.trading.trade_child", server.url, url, "desk", "linear",
                              str(crash_row)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Alpaca places the k-th order, then the process dies before it reads the reply.
    server.trading.after_orders(k, prefix, lambda: os.kill(child.pid, signal.SIGKILL))
    assert child.wait(timeout=300) == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    assert len([o for o in sent_orders(server) if o[0].startswith(prefix)]) == k

    restarted = AlpacaDesk(server, make_engine(url), "desk", model, panel)
    restarted.run(range(crash_row, LAST_ROW))

    assert sent_orders(server) == sent_orders(reference)
    assert server.trading.holdings == reference.trading.holdings
    assert decisions(restarted.journal, "desk") == decisions(reference_journal, "desk")
