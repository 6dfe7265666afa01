"""The live model's share of the live account: capital allocated in ramp steps, the rest held back.

The live Alpaca account is dedicated to Cappuccino; the live model trades only its ramp
capital (``ramp.ramp_state``: 25 %, then 50 %, then 100 % of ``live_capital``). When the
model goes live the account's equity minus the first step's capital is set aside as a
**reserve**, a fixed amount of cash the trader never sees: ``ReservedBroker`` reports the
account's cash and equity minus the reserve, so the model sizes its orders from its
capital and its profits and losses are its own. Moving to the next step takes the added
capital out of the reserve. Each allocation is a row of ``live_allocation`` (durable, one per
step, unique), and the capital added at a step is an *injection* the track record removes
from the return across that bar (``records.journal_record``), so a step up is not a gain.

A live account that holds less than the capital of a step raises ``LiveAccountTooSmall``:
the model does not trade on money that is not there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Double, Engine, Integer, String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from cappuccino_core.clock import ensure_utc
from cappuccino_core.db import Base, UTCDateTime, session_factory
from cappuccino_core.lifecycle.ramp import RampState
from cappuccino_core.lifecycle.stages import Stage
from cappuccino_core.lifecycle.store import LifecycleStore
from cappuccino_core.trading.broker import Account, Broker, Order, OrderSide, Position

logger = logging.getLogger(__name__)


class LiveAllocationRow(Base):
    """One ramp step of one live stint: the capital the model trades and the cash held back."""

    __tablename__ = "live_allocation"
    __table_args__ = (UniqueConstraint("trader_id", "went_live_at", "step", name="uq_live_allocation_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trader_id: Mapped[str] = mapped_column(String(64), index=True)
    model_id: Mapped[str] = mapped_column(String(300))
    went_live_at: Mapped[datetime] = mapped_column(UTCDateTime)
    step: Mapped[int] = mapped_column(Integer)
    fraction: Mapped[float] = mapped_column(Double)
    capital: Mapped[float] = mapped_column(Double)
    reserve: Mapped[float] = mapped_column(Double)
    effective_bar: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class Allocation:
    """One ramp step as allocated."""

    step: int
    fraction: float
    capital: float
    reserve: float
    effective_bar: datetime

    def to_dict(self) -> dict[str, object]:
        """Return the allocation as a JSON-ready dict."""
        return {"step": self.step, "fraction": self.fraction, "capital": self.capital, "reserve": self.reserve,
                "effective_bar": self.effective_bar.isoformat()}


class LiveAccountTooSmall(RuntimeError):
    """The live account holds less than the capital a ramp step needs."""


def went_live_at(store: LifecycleStore, model_id: str) -> datetime | None:
    """Return when the model last moved to live (``None`` if it never did)."""
    moves = [t for t in store.transitions(model_id) if t.to_stage is Stage.LIVE]
    return moves[-1].at if moves else None


def allocations(engine: Engine, trader_id: str, went_live: datetime) -> list[Allocation]:
    """Return the allocations of the live stint that began at ``went_live``, by step."""
    Base.metadata.create_all(engine, tables=[LiveAllocationRow.__table__])
    with session_factory(engine)() as session:
        rows = session.scalars(select(LiveAllocationRow).where(
            LiveAllocationRow.trader_id == trader_id, LiveAllocationRow.went_live_at == ensure_utc(went_live))
            .order_by(LiveAllocationRow.step))
        return [Allocation(r.step, r.fraction, r.capital, r.reserve, r.effective_bar) for r in rows]


def injections(allocated: list[Allocation]) -> dict[datetime, float]:
    """Return the capital added at each step after the first, by the bar it was added at."""
    return {b.effective_bar: b.capital - a.capital for a, b in zip(allocated, allocated[1:], strict=False)}


def allocate(engine: Engine, *, trader_id: str, model_id: str, went_live: datetime, ramp: RampState,
             account: Account, bar_time: datetime, at: datetime) -> Allocation:
    """Return the allocation for ``bar_time``, recording a new one when the ramp reached a new step.

    Raises:
        LiveAccountTooSmall: the account cannot fund the step's capital.
    """
    current = allocations(engine, trader_id, went_live)
    latest = current[-1] if current else None
    if latest is not None and ramp.step <= latest.step:
        return latest
    if latest is None:
        reserve = account.equity - ramp.capital
    else:
        reserve = latest.reserve - (ramp.capital - latest.capital)
    if reserve < 0:
        raise LiveAccountTooSmall(f"the live account cannot fund step {ramp.step + 1} of the ramp "
                                  f"({ramp.capital:.2f} {account.currency}): it lacks {-reserve:.2f}")
    row = LiveAllocationRow(trader_id=trader_id, model_id=model_id, went_live_at=ensure_utc(went_live),
                            step=ramp.step, fraction=ramp.fraction, capital=ramp.capital, reserve=reserve,
                            effective_bar=ensure_utc(bar_time), recorded_at=ensure_utc(at))
    try:
        with session_factory(engine).begin() as session:
            session.add(row)
    except IntegrityError:
        logger.info("%s: ramp step %d was allocated concurrently", trader_id, ramp.step)
        return allocations(engine, trader_id, went_live)[-1]
    logger.warning("%s: live capital %.2f (step %d, %.0f%%), %.2f held back", trader_id, ramp.capital,
                   ramp.step + 1, 100 * ramp.fraction, reserve)
    return Allocation(ramp.step, ramp.fraction, ramp.capital, reserve, ensure_utc(bar_time))


class ReservedBroker:
    """A broker whose account shows cash and equity less a reserve; everything else is the broker's."""

    def __init__(self, broker: Broker, reserve: float) -> None:
        if reserve < 0:
            raise ValueError(f"a reserve is >= 0, got {reserve}")
        self.broker = broker
        self.reserve = reserve

    def account(self) -> Account:
        """The account less the reserve (cash never below 0).

        Raises:
            LiveAccountTooSmall: the equity left after the reserve is not positive.
        """
        account = self.broker.account()
        equity = account.equity - self.reserve
        if equity <= 0:
            raise LiveAccountTooSmall(f"the live account's equity does not cover the reserve held back "
                                      f"({self.reserve:.2f} {account.currency})")
        return Account(cash=max(account.cash - self.reserve, 0.0), equity=equity, currency=account.currency)

    def positions(self) -> dict[str, Position]:
        return self.broker.positions()

    def submit_order(self, symbol: str, side: OrderSide, *, qty: float | None = None, notional: float | None = None,
                     client_order_id: str) -> Order:
        return self.broker.submit_order(symbol, side, qty=qty, notional=notional, client_order_id=client_order_id)

    def get_order(self, order_id: str) -> Order:
        return self.broker.get_order(order_id)

    def cancel_order(self, order_id: str) -> None:
        self.broker.cancel_order(order_id)

    def cancel_all(self) -> list[str]:
        return self.broker.cancel_all()

    def close_all(self) -> list[Order]:
        return self.broker.close_all()
