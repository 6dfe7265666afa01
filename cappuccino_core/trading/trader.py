"""The trader step: one model, one account, one closed bar at a time.

On each new closed bar ``Trader.step``:

1. does nothing if the bar is already in the journal (restart safety);
2. registers itself as in flight (``in_flight``: ``kill`` waits for it to end), then closes any
   open plan of an earlier bar as ``abandoned`` (its sent orders kept, the rest never sent);
3. if the bar already has an open plan (a step that died after committing it), carries out
   **that plan** (step 7) and nothing else: no re-planning from an account its first orders
   have changed;
4. records ``skipped_halted`` if the halt flag is set, ``skipped_stale`` if the bar or its
   lookback is missing (never trading on old prices);
5. books the previous decision's fills into the risk state (``update_after_fills``), rebuilds
   the observation with the model's feature spec, normaliser and lookback through
   ``portfolio_env.observe`` (the environment's own code), takes the policy's deterministic
   action and passes it through ``apply_risk``;
6. turns the actions into orders with the env's action mapping (``orders.plan_orders``), client
   order ids derived from (trader, bar, symbol), and commits the decision and its orders as the
   bar's ``TradePlan`` **before the first order is sent**;
7. submits the plan's orders; an id the broker already holds is not submitted again; the halt
   flag is read again before every order, and once it is set the step's remaining orders are
   not sent (recorded as ``not_sent``, named in ``StepOutcome.not_sent`` and the row's errors);
8. appends the journal row and the new state, and closes the plan, in one transaction.

Broker refusals (``InsufficientFunds``, ``InvalidOrder``) are recorded and the step goes on.
Transient failures (``TRANSIENT_ERRORS``: broker unavailable, database or network I/O)
propagate without a journal row, so a retry redoes the step idempotently (resuming its plan
when one was committed). Any other failure is recorded as ``error`` and re-raised; during the
submission the row keeps the orders already sent (pending their fills) and the rest ``not_sent``.

Timing matches the environment: the decision at bar ``t``'s close fills at ``t + 1``'s open
(the ``SimBroker`` fills pending orders when it is given the next bar), and the book is
valued at the close.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import torch
from sqlalchemy.exc import OperationalError

from cappuccino_core.clock import Clock, SystemClock, ensure_utc
from cappuccino_core.env.portfolio_env import normalized_feature_rows, observe
from cappuccino_core.evaluation.backtest import PolicyContext
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.trading.bars_provider import BarProvider, MissingBarsError, bar_time_ns
from cappuccino_core.trading.broker import (
    Broker, BrokerUnavailable, InsufficientFunds, InvalidOrder, Order, OrderNotFound,
)
from cappuccino_core.trading.journal import (
    JournalEntry, PlanStatus, StepStatus, TradeJournal, TradePlan, TraderState,
)
from cappuccino_core.trading.model import TradingModel
from cappuccino_core.trading.orders import PlannedOrder, fills_from_orders, plan_orders
from cappuccino_core.risk.layers import RiskEvent, apply_risk, update_after_fills

logger = logging.getLogger(__name__)

# Failures a retry may fix: the step leaves no journal row and can be rerun as it is.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (BrokerUnavailable, OperationalError, OSError, TimeoutError)


@dataclass(frozen=True)
class StepOutcome:
    """What ``Trader.step`` did: the status, and the journal row when one was written."""

    trader_id: str
    bar_time: datetime
    status: StepStatus
    entry: JournalEntry | None
    not_sent: tuple[str, ...] = ()  # client order ids planned but not sent: the halt came during the step

    def to_dict(self) -> dict[str, Any]:
        """The step as a flow's report records it: status, orders, risk events and errors of its row."""
        entry = self.entry
        return {"trader_id": self.trader_id, "bar_time": self.bar_time.isoformat(), "status": str(self.status),
                "orders": 0 if entry is None else len(entry.orders),
                "risk_events": 0 if entry is None else len(entry.risk_events),
                "errors": [] if entry is None else list(entry.errors)}


class Trader:
    """Trades one model on one broker account, bar by bar."""

    def __init__(
        self,
        trader_id: str,
        model: TradingModel,
        broker: Broker,
        bars: BarProvider,
        journal: TradeJournal,
        *,
        halted: Callable[[], bool] | None = None,
        in_flight: Callable[[str, datetime, datetime], AbstractContextManager[None]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Set up the trader.

        Args:
            trader_id: the trader's id (1-64 characters; part of every client order id).
            model: the policy and its inputs; ``model.env_config`` gives costs and risk layers.
            broker: the account it trades.
            bars: where the latest bars come from.
            journal: where each bar is recorded.
            halted: returns True while trading must stop (the kill switch); read before the step
                and before every order; default never.
            in_flight: ``(trader_id, bar_time, now)`` -> a context the step runs in, so that
                ``kill`` can wait for it (``KillSwitch.step_in_flight``); default none.
            clock: what ``recorded_at`` is read from (default the system clock).
        """
        if not trader_id or len(trader_id) > 64:
            raise ValueError(f"trader_id must be 1-64 characters, got {trader_id!r}")
        self.trader_id = trader_id
        self.model = model
        self.broker = broker
        self.bars = bars
        self.journal = journal
        self.risk = model.env_config.effective_risk
        self._halted = halted or (lambda: False)
        self._in_flight = in_flight or (lambda _trader, _bar, _now: nullcontext())
        self._clock = clock or SystemClock()

    def step(self, bar_time: datetime) -> StepOutcome:
        """Process the closed bar that opened at ``bar_time`` (see the module docstring)."""
        bar_time = ensure_utc(bar_time)
        if self.journal.has(self.trader_id, bar_time):
            logger.info("%s: bar %s already processed", self.trader_id, bar_time.isoformat())
            return StepOutcome(self.trader_id, bar_time, StepStatus.SKIPPED_DUPLICATE, None)
        last = self.journal.last_bar_time(self.trader_id)
        if last is not None and bar_time < last:
            return self._skip(bar_time, StepStatus.SKIPPED_DUPLICATE,
                              f"bar {bar_time.isoformat()} is older than the last bar processed, {last.isoformat()}")
        with self._in_flight(self.trader_id, bar_time, self._clock.now()):
            return self._step(bar_time)

    def _step(self, bar_time: datetime) -> StepOutcome:
        self._abandon_past_plans(bar_time)
        stored = self.journal.plan(self.trader_id, bar_time)
        if stored is not None and stored[1] is PlanStatus.OPEN:
            plan = stored[0]
            logger.warning("%s: bar %s: resuming the plan committed at %s (a restarted step)", self.trader_id,
                           bar_time.isoformat(), plan.created_at.isoformat())
            return self._carry_out(plan, resumed=True)
        if self._halted():
            return self._skip(bar_time, StepStatus.SKIPPED_HALTED, "trading is halted")
        try:
            panel = self.bars.panel_until(bar_time)
            self.model.check_panel(panel)
            missing = self._missing_history(panel, bar_time)
            if missing is not None:
                return self._skip(bar_time, StepStatus.SKIPPED_STALE, missing)
            state = self.journal.load_state(self.trader_id) or TraderState.initial(len(self.model.symbols))
            plan = self._decide(panel, state, bar_time)
        except MissingBarsError as exc:
            return self._skip(bar_time, StepStatus.SKIPPED_STALE, str(exc))
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:
            self._skip(bar_time, StepStatus.ERROR, f"{type(exc).__name__}: {exc}")
            raise
        # Committed before the first order: from here on a restart carries out this plan.
        stored_plan = self.journal.save_plan(plan)
        return self._carry_out(stored_plan, resumed=stored_plan is not plan)

    # -- the decision ------------------------------------------------------------------------

    def _decide(self, panel: MarketPanel, state: TraderState, bar_time: datetime) -> TradePlan:
        """Read the account, book the previous fills, run the policy and the risk layers, plan the orders."""
        model, symbols = self.model, self.model.symbols
        row = panel.num_bars - 1
        close = torch.from_numpy(np.ascontiguousarray(panel.close[row], dtype=np.float64)).unsqueeze(0)
        account, positions = self.broker.account(), self.broker.positions()
        holdings = torch.tensor([[positions[s].qty if s in positions else 0.0 for s in symbols]], dtype=torch.float64)
        cash = torch.tensor([account.cash], dtype=torch.float64)
        errors: list[str] = [f"position in {s} is not traded by the model; left alone" for s in positions
                             if s not in symbols]
        notes: list[str] = []

        risk_state, fills_record = state.risk, []
        if state.awaiting_fills:
            previous = [self._final(self.broker.get_order(cid), errors) for cid in state.pending]
            fills_record = [_fill_record(o) for o in previous]
            fills, fill_notes = fills_from_orders(previous, symbols, cash=account.cash, holdings=holdings[0],
                                                  costs=model.costs)
            notes.extend(fill_notes)
            risk_state = update_after_fills(risk_state, fills=fills, prices_after=close, cash=cash, holdings=holdings,
                                            config=self.risk)

        lookback = model.env_config.lookback
        window = normalized_feature_rows(panel.rows(row - lookback + 1, row + 1), model.normalizer,
                                         model.env_config.obs_clip)
        obs = observe(window, torch.tensor([lookback - 1]), lookback, cash, holdings, close)
        context = PolicyContext(panel, torch.tensor([row]), state.steps, cash, holdings, close)
        with torch.no_grad():
            policy_actions = model.policy.act(obs, context).clamp(-1.0, 1.0)
        decision = apply_risk(policy_actions.to(torch.float64), risk_state, cash=cash, holdings=holdings,
                              prices=close, config=self.risk)
        planned, plan_notes = plan_orders(self.trader_id, bar_time, symbols, cash=account.cash, holdings=holdings,
                                          actions=decision.actions, prices=close, costs=model.costs)
        notes.extend(plan_notes)
        now = self._clock.now()
        entry = JournalEntry(
            trader_id=self.trader_id, bar_time=bar_time, status=StepStatus.TRADED, recorded_at=now,
            equity=account.equity, cash=account.cash, prices=dict(zip(symbols, close[0].tolist())),
            positions={s: positions[s].qty for s in symbols if s in positions},
            policy_actions=tuple(policy_actions[0].double().tolist()),
            executed_actions=tuple(decision.actions[0].tolist()), fills=tuple(fills_record),
            risk_events=tuple(_event_record(e, symbols) for e in decision.events()),
            errors=tuple(errors), notes=tuple(notes),
        )
        new_state = TraderState(risk=decision.state, pending=(), awaiting_fills=True, steps=state.steps + 1,
                                last_bar_time=bar_time)
        by_symbol = {order.symbol: order for order in planned}
        orders = tuple(by_symbol[s] for s in symbols if s in by_symbol)
        return TradePlan(self.trader_id, bar_time, entry, orders, new_state, now)

    # -- carrying a plan out -----------------------------------------------------------------

    def _carry_out(self, plan: TradePlan, *, resumed: bool) -> StepOutcome:
        """Send the plan's orders the broker does not hold yet; write the bar's row and the state."""
        errors, notes = list(plan.decision.errors), list(plan.decision.notes)
        if resumed:
            notes.append(f"carried out the plan committed at {plan.created_at.isoformat()} (a restarted step); "
                         "nothing was re-planned")
        submission = self._submit(plan, errors, notes)
        status = StepStatus.TRADED if submission.failure is None else StepStatus.ERROR
        entry = replace(plan.decision, status=status, recorded_at=self._clock.now(), orders=tuple(submission.records),
                        errors=tuple(errors), notes=tuple(notes))
        state = replace(plan.state, pending=tuple(submission.accepted))
        recorded = self.journal.record(entry, state)
        if not recorded:
            self.journal.close_plan(self.trader_id, plan.bar_time, PlanStatus.DONE, entry.recorded_at)
        if submission.failure is not None:
            raise submission.failure
        return StepOutcome(self.trader_id, plan.bar_time, entry.status if recorded else StepStatus.SKIPPED_DUPLICATE,
                           entry if recorded else None, submission.not_sent if recorded else ())

    def _submit(self, plan: TradePlan, errors: list[str], notes: list[str]) -> _Submission:
        """Submit the plan's orders; an id the broker already holds (a restarted step) is kept, not resubmitted.

        The halt flag is read before each submission: from the first read that says halted on,
        no order of this step is sent; those are recorded as ``not_sent`` and returned. A
        transient failure propagates (the plan stays open; a retry resumes it). Any other failure
        ends the submission: the order is recorded ``failed``, the rest ``not_sent``, and the
        failure is returned to be raised once the row is written.
        """
        records, accepted, not_sent = [], [], []
        halted = False
        failure: Exception | None = None
        for order in plan.orders:
            cid = order.client_order_id
            existing = self._held_by_broker(cid)
            if existing is not None:
                notes.append(f"order {cid} was already with the broker (a restarted step); not submitted again")
                records.append(_order_record(existing))
                accepted.append(cid)
                continue
            halted = halted or self._halted()
            if halted or failure is not None:
                reason = "trading was halted during the step" if halted else "an earlier order of the step failed"
                records.append(_planned_record(order, "not_sent", reason))
                not_sent.append(cid)
                continue
            try:
                placed = self.broker.submit_order(order.symbol, order.side, qty=order.qty, notional=order.notional,
                                                  client_order_id=cid)
            except (InsufficientFunds, InvalidOrder) as exc:
                errors.append(f"order {cid} refused: {exc}")
                records.append(_planned_record(order, "refused", str(exc)))
                continue
            except TRANSIENT_ERRORS:
                raise
            except Exception as exc:
                failure = exc
                errors.append(f"order {cid} failed: {type(exc).__name__}: {exc}")
                records.append(_planned_record(order, "failed", f"{type(exc).__name__}: {exc}"))
                continue
            records.append(_order_record(placed))
            accepted.append(cid)
        if not_sent:
            why = "trading was halted during the step" if halted else "an order of the step failed"
            errors.append(f"{why}: {len(not_sent)} order(s) not sent: " + ", ".join(not_sent))
            logger.warning("%s: bar %s: %s, %d order(s) not sent", self.trader_id, plan.bar_time.isoformat(), why,
                           len(not_sent))
        return _Submission(records, accepted, tuple(not_sent), failure)

    def _held_by_broker(self, client_order_id: str) -> Order | None:
        try:
            return self.broker.get_order(client_order_id)
        except OrderNotFound:
            return None

    def _abandon_past_plans(self, bar_time: datetime) -> None:
        """Close every open plan of an earlier bar: its sent orders are kept, the others never sent.

        Its row (status ``abandoned``) carries the plan's state with the sent orders pending,
        so their fills are booked at this bar like any decision's.
        """
        for plan in self.journal.open_plans(self.trader_id):
            if plan.bar_time >= bar_time:
                continue
            records, accepted, not_sent = [], [], []
            for order in plan.orders:
                existing = self._held_by_broker(order.client_order_id)
                if existing is None:
                    records.append(_planned_record(order, "not_sent", f"its bar passed before it was sent; "
                                                                       f"abandoned at {bar_time.isoformat()}"))
                    not_sent.append(order.client_order_id)
                else:
                    records.append(_order_record(existing))
                    accepted.append(order.client_order_id)
            reason = (f"the plan of bar {plan.bar_time.isoformat()} did not finish before bar {bar_time.isoformat()}: "
                      f"abandoned; {len(accepted)} order(s) it had sent kept, {len(not_sent)} not sent"
                      + (": " + ", ".join(not_sent) if not_sent else ""))
            logger.warning("%s: %s", self.trader_id, reason)
            entry = replace(plan.decision, status=StepStatus.ABANDONED, recorded_at=self._clock.now(),
                            orders=tuple(records), errors=(*plan.decision.errors, reason))
            if not self.journal.record(entry, replace(plan.state, pending=tuple(accepted))):
                self.journal.close_plan(self.trader_id, plan.bar_time, PlanStatus.ABANDONED, entry.recorded_at)

    def _final(self, order: Order, errors: list[str]) -> Order:
        """Return the order as it ended; one still open a bar later is cancelled (and recorded)."""
        if order.status.is_open:
            errors.append(f"order {order.client_order_id} still {order.status.value} a bar later; cancelling it")
            try:
                self.broker.cancel_order(order.id)
            except InvalidOrder as exc:  # it ended between the read and the cancel; the re-read below says how
                errors.append(f"order {order.client_order_id}: cancel refused: {exc}")
            order = self.broker.get_order(order.id)
        return order

    # -- skipping ----------------------------------------------------------------------------

    def _missing_history(self, panel: MarketPanel, bar_time: datetime) -> str | None:
        """Return why the panel cannot be traded at ``bar_time`` (no such bar, too little history), or None."""
        last = int(panel.timestamps[-1])
        if last != bar_time_ns(bar_time):
            have = np.datetime64(last, "ns").astype("datetime64[s]")
            return (f"no bar at {bar_time.isoformat()} for every symbol; the latest common bar opened at {have}Z: "
                    "not trading on old prices")
        lookback = self.model.env_config.lookback
        row = panel.num_bars - 1
        if row + 1 < lookback or panel.segment[row - lookback + 1] != panel.segment[row]:
            return f"fewer than {lookback} bars without a gap before {bar_time.isoformat()}"
        return None

    def _skip(self, bar_time: datetime, status: StepStatus, reason: str) -> StepOutcome:
        logger.warning("%s: bar %s %s: %s", self.trader_id, bar_time.isoformat(), status.value, reason)
        entry = JournalEntry(self.trader_id, bar_time, status, self._clock.now(), errors=(reason,))
        recorded = self.journal.record(entry)
        return StepOutcome(self.trader_id, bar_time, status if recorded else StepStatus.SKIPPED_DUPLICATE,
                           entry if recorded else None)


@dataclass(frozen=True)
class _Submission:
    """What sending a plan's orders did."""

    records: list[dict]
    accepted: list[str]
    not_sent: tuple[str, ...]
    failure: Exception | None


def _planned_record(order: PlannedOrder, status: str, reason: str) -> dict:
    return {"client_order_id": order.client_order_id, "symbol": order.symbol, "side": str(order.side),
            "qty": order.qty, "notional": order.notional, "status": status, "order_id": None, "reason": reason}


def _order_record(order: Order) -> dict:
    return {"client_order_id": order.client_order_id, "symbol": order.symbol, "side": str(order.side),
            "qty": order.qty, "notional": order.notional, "status": str(order.status), "order_id": order.id,
            "reason": order.reason}


def _fill_record(order: Order) -> dict:
    return {"client_order_id": order.client_order_id, "symbol": order.symbol, "side": str(order.side),
            "status": str(order.status), "filled_qty": order.filled_qty, "filled_avg_price": order.filled_avg_price,
            "fee": order.fee, "reason": order.reason}


def _event_record(event: RiskEvent, symbols: tuple[str, ...]) -> dict:
    return {"rule": str(event.rule), "symbol": None if event.asset is None else symbols[event.asset],
            "reason": event.reason, "value": event.value, "threshold": event.threshold}
