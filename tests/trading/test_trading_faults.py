"""Alpaca faults during a trading step: refusals stop at once, outages are retried then reported, recovery trades right.

The real alpaca-py broker against the fake Alpaca (immediate fills); each faulty run is compared
with a run of the same bars on an account that never failed.
"""

from __future__ import annotations

import pytest

from cappuccino_core.db import make_engine
from cappuccino_core.trading.broker import BrokerError, BrokerUnavailable
from cappuccino_core.trading.journal import PlanStatus, StepStatus
from tests.trading.alpaca_desk import AlpacaDesk, decisions, sent_orders
from tests.trading.trading_scenarios import LOOKBACK, bar_time, model_for, walk_panel

FAULT_ROW = 12  # the phase policy buys all three assets on this bar
LAST_ROW = 30
RETRIES = 2
FORBIDDEN = {"code": 40310000 + 1, "message": "forbidden."}  # Alpaca's refusal of the keys, not of the balance

# Where in the step the fault strikes: (path, how many requests to that path to let through first,
# whether the bar's plan was committed by then, how many of its orders reached Alpaca).
WHERE = {
    "account read": ("/v2/account", 0, False, 0),
    "positions read": ("/v2/positions", 0, False, 0),
    "order lookup": ("/v2/orders:by_client_order_id", 0, True, 0),  # is the first order already there?
    "second order": ("/v2/orders", 1, True, 1),
}


def desk_on(account, tmp_path, name: str, **broker) -> AlpacaDesk:
    panel = walk_panel(bars=60)
    return AlpacaDesk(account, make_engine(f"sqlite:///{tmp_path}/{name}.db"), "desk", model_for(panel), panel,
                      max_retries=RETRIES, **broker)


def reference_run(alpaca_account, tmp_path) -> AlpacaDesk:
    desk = desk_on(alpaca_account(), tmp_path, "reference")
    assert {o.status for o in desk.run(range(LOOKBACK - 1, LAST_ROW))} == {StepStatus.TRADED}
    return desk


def orders_of_bar(desk: AlpacaDesk, row: int) -> list[str]:
    prefix = f"desk-{bar_time(desk.panel, row):%Y%m%dT%H%M}-"
    return [o["client_order_id"] for o in desk.server.trading.orders if o["client_order_id"].startswith(prefix)]


def strike(desk: AlpacaDesk, fault: str, where: str) -> None:
    path, after, _, _ = WHERE[where]
    if fault == "timeout":
        desk.server.fail_next(stall_seconds=1.0, drop_connection=True, path=path, after=after, times=RETRIES + 1)
    else:
        desk.server.fail_next(status=int(fault), path=path, after=after, times=RETRIES + 1)


@pytest.mark.parametrize("where", list(WHERE))
@pytest.mark.parametrize("fault", ["429", "500", "timeout"])
def test_an_outage_during_a_step_is_retried_then_reported_and_the_retried_step_trades_as_if_nothing_happened(
        alpaca_account, tmp_path, fault: str, where: str) -> None:
    reference = reference_run(alpaca_account, tmp_path)
    desk = desk_on(alpaca_account(), tmp_path, "faulty", timeout_seconds=0.3)
    desk.run(range(LOOKBACK - 1, FAULT_ROW))
    strike(desk, fault, where)

    with pytest.raises(BrokerUnavailable) as raised:
        desk.step(FAULT_ROW)

    message = str(raised.value)
    assert "\n" not in message and f"failed {RETRIES + 1} times (retries exhausted)" in message
    assert ("HTTP " + fault if fault != "timeout" else "Timeout") in message
    assert desk.sleeps == [1.0, 2.0]  # the broker's backoff, then it gave up
    assert not desk.journal.has("desk", bar_time(desk.panel, FAULT_ROW))  # no row: the step may be retried
    _, _, planned, sent = WHERE[where]
    plan = desk.journal.plan("desk", bar_time(desk.panel, FAULT_ROW))
    assert (plan is not None) == planned  # the reads come before the plan, the orders after it
    assert len(orders_of_bar(desk, FAULT_ROW)) == sent

    assert desk.step(FAULT_ROW).status is StepStatus.TRADED  # the task's retry, once Alpaca is back
    desk.run(range(FAULT_ROW + 1, LAST_ROW))
    assert desk.server.pending_faults == 0
    ids = [o["client_order_id"] for o in desk.server.trading.orders]
    assert len(ids) == len(set(ids))  # no client id twice
    assert sent_orders(desk.server) == sent_orders(reference.server)
    assert desk.server.trading.holdings == reference.server.trading.holdings
    assert decisions(desk.journal, "desk") == decisions(reference.journal, "desk")


def test_an_outage_during_the_orders_that_lasts_past_the_bar_abandons_the_rest_of_its_plan(
        alpaca_account, tmp_path) -> None:
    desk = desk_on(alpaca_account(), tmp_path, "faulty")
    desk.run(range(LOOKBACK - 1, FAULT_ROW))
    strike(desk, "500", "second order")
    with pytest.raises(BrokerUnavailable):
        desk.step(FAULT_ROW)
    (first,) = orders_of_bar(desk, FAULT_ROW)

    outcome = desk.step(FAULT_ROW + 1)  # Alpaca is back, but the bar has passed

    assert outcome.status is StepStatus.TRADED
    row = desk.journal.entries("desk")[-2]
    assert (row.bar_time, row.status) == (bar_time(desk.panel, FAULT_ROW), StepStatus.ABANDONED)
    assert orders_of_bar(desk, FAULT_ROW) == [first]
    assert [f["client_order_id"] for f in outcome.entry.fills] == [first]
    ids = [o["client_order_id"] for o in desk.server.trading.orders]
    assert len(ids) == len(set(ids))


def test_refused_keys_at_the_account_read_stop_the_step_at_once_with_one_line_and_no_retry(
        alpaca_account, tmp_path) -> None:
    desk = desk_on(alpaca_account(), tmp_path, "forbidden")
    desk.run(range(LOOKBACK - 1, FAULT_ROW))
    before = len(desk.server.trading.orders)
    desk.server.fail_next(status=403, json_body=FORBIDDEN, path="/v2/account", times=RETRIES + 1)

    with pytest.raises(BrokerError) as raised:
        desk.step(FAULT_ROW)

    assert not isinstance(raised.value, BrokerUnavailable)
    assert str(raised.value) == ("get account: Alpaca refused the credentials (HTTP 403); "
                                 "check the API key and secret settings")
    assert [r.path for r in desk.server.requests].count("/v2/account") == FAULT_ROW - LOOKBACK + 2  # one try
    assert desk.sleeps == [] and len(desk.server.trading.orders) == before
    entry = desk.journal.entries("desk")[-1]
    assert entry.status is StepStatus.ERROR and entry.errors == (f"BrokerError: {raised.value}",)
    assert desk.step(FAULT_ROW).status is StepStatus.SKIPPED_DUPLICATE  # not retried behind the owner's back


def test_refused_keys_at_an_order_stop_the_plan_keep_the_sent_order_and_the_next_bar_trades(
        alpaca_account, tmp_path) -> None:
    desk = desk_on(alpaca_account(), tmp_path, "forbidden")
    desk.run(range(LOOKBACK - 1, FAULT_ROW))
    desk.server.fail_next(status=403, json_body=FORBIDDEN, path="/v2/orders", after=1)

    with pytest.raises(BrokerError, match="refused the credentials") as raised:
        desk.step(FAULT_ROW)

    assert not isinstance(raised.value, BrokerUnavailable) and desk.sleeps == []
    entry = desk.journal.entries("desk")[-1]
    assert entry.status is StepStatus.ERROR
    assert [o["status"] for o in entry.orders] == ["filled", "failed", "not_sent"]
    refused = entry.orders[1]["client_order_id"]
    posts = [r for r in desk.server.requests if r.method == "POST" and r.path == "/v2/orders"]
    assert sum(refused in r.body for r in posts) == 1  # tried once, not retried
    assert any(f"order {refused} failed: BrokerError: " in e for e in entry.errors)
    assert desk.journal.plan("desk", bar_time(desk.panel, FAULT_ROW))[1] is PlanStatus.FAILED

    sent = orders_of_bar(desk, FAULT_ROW)
    assert sent == [entry.orders[0]["client_order_id"]]
    nxt = desk.step(FAULT_ROW + 1)  # the owner fixed the keys
    assert nxt.status is StepStatus.TRADED
    assert [f["client_order_id"] for f in nxt.entry.fills] == sent  # the sent order's fill is booked
    assert orders_of_bar(desk, FAULT_ROW) == sent
    ids = [o["client_order_id"] for o in desk.server.trading.orders]
    assert len(ids) == len(set(ids))
