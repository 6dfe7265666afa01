"""The trader step: one model, one account, one closed bar at a time.

On each new closed bar ``Trader.step``:

1. does nothing if the bar is already in the journal (restart safety);
2. registers itself as in flight (``in_flight``: ``kill`` waits for it to end), then records
   ``skipped_halted`` if the halt flag is set, ``skipped_stale`` if the bar or its lookback is
   missing (never trading on old prices);
3. books the previous decision's fills into the risk state (``update_after_fills``);
4. rebuilds the observation with the model's feature spec, normaliser and lookback through
   ``portfolio_env.observe`` (the environment's own code), takes the policy's deterministic
   action and passes it through ``apply_risk``;
5. turns the actions into orders with the env's action mapping (``orders.plan_orders``) and
   submits them with client order ids derived from (trader, bar, symbol); an id the broker
   already holds is not submitted again; the halt flag is read again before every order, and
   once it is set the step's remaining orders are not sent (recorded as ``not_sent``, named in
   ``StepOutcome.not_sent`` and the row's errors);
6. appends the journal row and the new state in one transaction.

Broker refusals (``InsufficientFunds``, ``InvalidOrder``) are recorded and the step goes on.
Transient failures (``TRANSIENT_ERRORS``: broker unavailable, database or network I/O)
propagate without a journal row, so a retry redoes the step idempotently. Any other failure is
recorded as ``error`` and re-raised.

Timing matches the environment: the decision at bar ``t``'s close fills at ``t + 1``'s open
(the ``SimBroker`` fills pending orders when it is given the next bar), and the book is
valued at the close.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime

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
from cappuccino_core.trading.journal import JournalEntry, StepStatus, TradeJournal, TraderState
from cappuccino_core.trading.model import TradingModel
from cappuccino_core.trading.orders import PlannedOrder, client_order_id, fills_from_orders, plan_orders
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
        if self._halted():
            return self._skip(bar_time, StepStatus.SKIPPED_HALTED, "trading is halted")
        try:
            panel = self.bars.panel_until(bar_time)
            self.model.check_panel(panel)
            missing = self._missing_history(panel, bar_time)
            if missing is not None:
                return self._skip(bar_time, StepStatus.SKIPPED_STALE, missing)
            state = self.journal.load_state(self.trader_id) or TraderState.initial(len(self.model.symbols))
            entry, new_state, not_sent = self._trade(panel, state, bar_time)
        except MissingBarsError as exc:
            return self._skip(bar_time, StepStatus.SKIPPED_STALE, str(exc))
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:
            self._skip(bar_time, StepStatus.ERROR, f"{type(exc).__name__}: {exc}")
            raise
        recorded = self.journal.record(entry, new_state)
        status = entry.status if recorded else StepStatus.SKIPPED_DUPLICATE
        return StepOutcome(self.trader_id, bar_time, status, entry if recorded else None,
                           not_sent if recorded else ())

    # -- the decision ------------------------------------------------------------------------

    def _trade(self, panel: MarketPanel, state: TraderState,
               bar_time: datetime) -> tuple[JournalEntry, TraderState, tuple[str, ...]]:
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
        orders, accepted, not_sent = self._submit(bar_time, planned, errors, notes)

        entry = JournalEntry(
            trader_id=self.trader_id, bar_time=bar_time, status=StepStatus.TRADED, recorded_at=self._clock.now(),
            equity=account.equity, cash=account.cash, prices=dict(zip(symbols, close[0].tolist())),
            positions={s: positions[s].qty for s in symbols if s in positions},
            policy_actions=tuple(policy_actions[0].double().tolist()),
            executed_actions=tuple(decision.actions[0].tolist()), orders=tuple(orders), fills=tuple(fills_record),
            risk_events=tuple(_event_record(e, symbols) for e in decision.events()),
            errors=tuple(errors), notes=tuple(notes),
        )
        new_state = TraderState(risk=decision.state, pending=tuple(accepted), awaiting_fills=True,
                                steps=state.steps + 1, last_bar_time=bar_time)
        return entry, new_state, not_sent

    def _submit(self, bar_time: datetime, planned: list[PlannedOrder], errors: list[str],
                notes: list[str]) -> tuple[list[dict], list[str], tuple[str, ...]]:
        """Submit the planned orders; an id the broker already holds (a restarted step) is kept, not resubmitted.

        The halt flag is read before each submission: from the first read that says halted on,
        no order of this step is sent; those are recorded as ``not_sent`` and returned.
        """
        by_symbol = {order.symbol: order for order in planned}
        records, accepted, not_sent = [], [], []
        halted = False
        for symbol in self.model.symbols:
            cid = client_order_id(self.trader_id, bar_time, symbol)
            try:
                existing: Order | None = self.broker.get_order(cid)
            except OrderNotFound:
                existing = None
            if existing is not None:
                notes.append(f"order {cid} was already with the broker (a restarted step); not submitted again")
                records.append(_order_record(existing))
                accepted.append(cid)
                continue
            order = by_symbol.get(symbol)
            if order is None:
                continue
            halted = halted or self._halted()
            if halted:
                records.append({"client_order_id": cid, "symbol": symbol, "side": str(order.side), "qty": order.qty,
                                "notional": order.notional, "status": "not_sent", "order_id": None,
                                "reason": "trading was halted during the step"})
                not_sent.append(cid)
                continue
            try:
                placed = self.broker.submit_order(order.symbol, order.side, qty=order.qty, notional=order.notional,
                                                  client_order_id=cid)
            except (InsufficientFunds, InvalidOrder) as exc:
                errors.append(f"order {cid} refused: {exc}")
                records.append({"client_order_id": cid, "symbol": symbol, "side": str(order.side), "qty": order.qty,
                                "notional": order.notional, "status": "refused", "order_id": None, "reason": str(exc)})
                continue
            records.append(_order_record(placed))
            accepted.append(cid)
        if not_sent:
            errors.append(f"trading was halted during the step: {len(not_sent)} order(s) not sent: "
                          + ", ".join(not_sent))
            logger.warning("%s: bar %s: halted during the step, %d order(s) not sent", self.trader_id,
                           bar_time.isoformat(), len(not_sent))
        return records, accepted, tuple(not_sent)

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
