"""The sandbox (Phase 5): promoted models paper-trade their own ``SimBroker`` accounts side by side.

Each sandbox run is one model on one virtual account (``account_id = trader_id``) for a period
(default 2 days) measured in bar time from its start, so a replay runs the same as real time.
Runs are rows of ``sandbox_run`` (created by ``Sandbox``); the models are loaded through a
``ModelLoader`` from the reference stored with the run (the lifecycle passes the registry
loader, ``operations.site.model_loader``, so only a verified registered version trades).

``Sandbox.step(trader_id, bar_time)`` first gives the account the bar (``SimBroker.on_bar``:
the previous decision's orders fill at its open, positions are marked at its close), unless the
account has seen it already, then runs the trader's step. Both halves are idempotent, so a
crashed step can simply be rerun. The risk layers are the owner's defaults (``RiskConfig()``)
unless a run is started with others; they are stored with the run.

Each run trades bars of its model's interval (``bars.at(run.interval)``). The sandbox is
stepped on a clock of ``bars.interval`` (the base interval): ``due(clock_bar)`` says which
runs have a bar of their interval that has just closed, and which (``closed_bar``); the others
wait for theirs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update

from cappuccino_core.clock import Clock, SystemClock, ensure_utc
from cappuccino_core.db import Base, session_factory
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.trading.bars_provider import BarProvider, closed_bar, next_close
from cappuccino_core.trading.journal import TradeJournal
from cappuccino_core.trading.model import TradingModel
from cappuccino_core.risk.layers import RiskConfig
from cappuccino_core.sandbox.runs import (  # noqa: F401 - re-exported
    SandboxRun,
    SandboxRunRow,
    load_run,
    load_runs,
    run_from_row,
    sandbox_trader_id,
)
from cappuccino_core.trading.sim_broker import SimBroker
from cappuccino_core.trading.trader import StepOutcome, Trader

logger = logging.getLogger(__name__)

DEFAULT_PERIOD = timedelta(days=2)

ModelLoader = Callable[[str], TradingModel]
"""Loads a model from the reference stored with a run (e.g. a checkpoint directory)."""


class Sandbox:
    """Starts, steps and ends sandbox runs in the project database."""

    def __init__(
        self,
        engine: Engine,
        bars: BarProvider,
        *,
        load_model: ModelLoader,
        clock: Clock | None = None,
        halted: Callable[[], bool] | None = None,
        in_flight: Callable[[str, datetime, datetime], AbstractContextManager[None]] | None = None,
    ) -> None:
        """Set up the sandbox.

        Args:
            engine: the project database (runs, journal and the virtual accounts).
            bars: the bars every sandbox model trades on (live store or a replay panel).
            load_model: loads a run's model from its reference (the lifecycle's is the registry
                loader, ``operations.site.model_loader``).
            clock: the wall clock (start times, journal and order timestamps).
            halted: the halt flag every trader checks (the kill switch).
            in_flight: where each step registers while under way (``KillSwitch.step_in_flight``).
        """
        self.engine = engine
        self.bars = bars
        self.journal = TradeJournal(engine)
        self._load_model = load_model
        self._clock = clock or SystemClock()
        self._halted = halted
        self._in_flight = in_flight
        self._sessions = session_factory(engine)
        self._traders: dict[str, Trader] = {}
        Base.metadata.create_all(engine, tables=[SandboxRunRow.__table__])

    def start(
        self,
        model_ref: str,
        *,
        trader_id: str | None = None,
        start: datetime | None = None,
        period: timedelta = DEFAULT_PERIOD,
        initial_cash: float = 10_000.0,
        risk: RiskConfig | None = None,
    ) -> SandboxRun:
        """Start a run (or return the stored one with this trader id, unchanged).

        Args:
            model_ref: what ``load_model`` loads (a checkpoint directory by default).
            trader_id: the trader and account id (default derived from ``model_ref``).
            start: first bar time traded (default now).
            period: how long the run trades, in bar time (default 2 days).
            initial_cash: the virtual account's starting cash.
            risk: risk layers (default the owner's, ``RiskConfig()``).
        """
        if period <= timedelta(0):
            raise ValueError(f"a sandbox period must be positive, got {period}")
        trader_id = trader_id or sandbox_trader_id(model_ref)
        begin = ensure_utc(start) if start is not None else self._clock.now()
        risk = risk if risk is not None else RiskConfig()
        model = self._load_model(model_ref)  # refuse a model that cannot be loaded now, not at its first bar
        with self._sessions.begin() as session:
            row = session.get(SandboxRunRow, trader_id)
            if row is None:
                row = SandboxRunRow(trader_id=trader_id, model_ref=model_ref, started_at=begin, ends_at=begin + period,
                                    ended_at=None, initial_cash=initial_cash, interval=model.interval.value,
                                    risk=json.dumps(risk.to_dict()),
                                    created_at=self._clock.now())
                session.add(row)
                logger.info("sandbox %s: started %s until %s", trader_id, model_ref, row.ends_at.isoformat())
            elif row.model_ref != model_ref:
                raise ValueError(f"sandbox {trader_id} already trades {row.model_ref!r}, not {model_ref!r}")
            return run_from_row(row)

    def runs(self) -> list[SandboxRun]:
        """Return every run, oldest first."""
        return load_runs(self._sessions)

    def active(self, bar_time: datetime) -> list[SandboxRun]:
        """Return the runs that trade the bar that opened at ``bar_time``."""
        bar_time = ensure_utc(bar_time)
        return [run for run in self.runs() if run.active_at(bar_time)]

    def due(self, clock_bar: datetime) -> list[tuple[SandboxRun, datetime]]:
        """Return the runs a bar of whose interval closed with the clock bar ``clock_bar``, each with that bar.

        A run whose interval's bar has not closed yet (a 4h run on three of every four 1h
        bars), or whose bar is outside its period, is left out; each is logged in one line.
        """
        clock_bar = ensure_utc(clock_bar)
        due = []
        for run in self.runs():
            if not run.active_at(clock_bar):
                continue
            bar = closed_bar(clock_bar, self.bars.interval, run.interval)
            if bar is not None and run.active_at(bar):
                due.append((run, bar))
            elif bar is None:
                logger.info("sandbox %s: no new closed %s bar at %s (the next closes at %s)", run.trader_id,
                            run.interval.value, (clock_bar + self.bars.interval.timedelta).isoformat(),
                            next_close(clock_bar, self.bars.interval, run.interval).isoformat())
            else:
                logger.info("sandbox %s: its %s bar %s opened before the run started", run.trader_id,
                            run.interval.value, bar.isoformat())
        return due

    def end_due(self, bar_time: datetime) -> list[str]:
        """Mark runs whose period is over at ``bar_time`` as ended; return their ids."""
        bar_time = ensure_utc(bar_time)
        ended = []
        with self._sessions.begin() as session:
            for row in session.scalars(select(SandboxRunRow).where(SandboxRunRow.ended_at.is_(None))):
                if bar_time >= row.ends_at:
                    row.ended_at = row.ends_at
                    ended.append(row.trader_id)
        return ended

    def end(self, trader_id: str, at: datetime | None = None) -> None:
        """End a run now (or at ``at``); later bars are not traded. An ended run stays as it ended.

        Raises:
            KeyError: there is no run with this id.
        """
        at = ensure_utc(at) if at is not None else self._clock.now()
        self._run(trader_id)
        with self._sessions.begin() as session:
            session.execute(update(SandboxRunRow).where(SandboxRunRow.trader_id == trader_id,
                                                        SandboxRunRow.ended_at.is_(None)).values(ended_at=at))

    def step(self, trader_id: str, bar_time: datetime) -> StepOutcome:
        """Give the run's account the bar, then run its trader's step (both idempotent).

        Raises:
            KeyError: there is no run with this id.
            ValueError: the run does not trade this bar (not started, ended, or not a bar of its interval).
        """
        bar_time = ensure_utc(bar_time)
        run = self._run(trader_id)
        if int(bar_time.timestamp()) % run.interval.seconds:
            raise ValueError(f"sandbox {trader_id} trades {run.interval.value} bars; {bar_time.isoformat()} "
                             f"is not one (step the sandbox with step_all or due on the base clock)")
        if not run.active_at(bar_time):
            raise ValueError(f"sandbox {trader_id} does not trade bar {bar_time.isoformat()} (runs "
                             f"{run.started_at.isoformat()} to {(run.ended_at or run.ends_at).isoformat()})")
        trader = self.trader(trader_id)
        broker = trader.broker
        assert isinstance(broker, SimBroker)
        broker.feed_bar(trader.bars, bar_time)
        return trader.step(bar_time)

    def step_all(self, clock_bar: datetime) -> dict[str, StepOutcome]:
        """End the runs that are due, then step every run whose interval's bar closed with ``clock_bar`` on it."""
        self.end_due(clock_bar)
        return {run.trader_id: self.step(run.trader_id, bar) for run, bar in self.due(clock_bar)}

    def trader(self, trader_id: str) -> Trader:
        """Return the run's trader (its model loaded once per ``Sandbox``)."""
        if trader_id not in self._traders:
            run = self._run(trader_id)
            model = self._load_model(run.model_ref).with_risk(run.risk)
            model = replace(model, env_config=replace(model.env_config, initial_cash=run.initial_cash))
            broker = SimBroker(self.engine, trader_id, costs=model.costs, initial_cash=run.initial_cash,
                               clock=self._clock)
            self._traders[trader_id] = Trader(trader_id, model, broker, self.bars.at(model.interval), self.journal,
                                              halted=self._halted, in_flight=self._in_flight, clock=self._clock)
        return self._traders[trader_id]

    def env_config(self, trader_id: str) -> EnvConfig:
        """Return the environment config the run trades under: the model's, with the run's cash and risk layers."""
        return self.trader(trader_id).model.env_config

    def _run(self, trader_id: str) -> SandboxRun:
        return load_run(self._sessions, trader_id)
