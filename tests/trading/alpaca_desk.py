"""A trader on the fake Alpaca account through the real alpaca-py broker, and what to compare between runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from cappuccino_core.clock import FixedClock
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.trading.alpaca_broker import AlpacaBroker
from cappuccino_core.trading.bars_provider import PanelBarProvider
from cappuccino_core.trading.journal import TradeJournal
from cappuccino_core.trading.model import TradingModel
from cappuccino_core.trading.trader import StepOutcome, Trader
from tests.fakes.alpaca_server import FakeAlpacaServer, assert_local_url
from tests.trading.trading_scenarios import bar_time

KEY, SECRET = "PKTRADERDESK000000001", "trader-desk-s3cr3t"


def open_alpaca_accounts() -> Iterator[Callable[[], FakeAlpacaServer]]:
    """Yield ``open()``: a new fake Alpaca account (10,000 USD, immediate fills); stop them all after."""
    servers: list[FakeAlpacaServer] = []

    def open_account() -> FakeAlpacaServer:
        server = FakeAlpacaServer()
        server.start()
        server.trading.configure(cash=10_000.0, fill_mode="immediate")
        server.require_auth(KEY, SECRET)
        servers.append(server)
        return server

    yield open_account
    for server in servers:
        server.stop()
        assert server.handler_errors == []


@dataclass
class AlpacaDesk:
    """One trader on a fake Alpaca account: the bar's close is the price orders fill at.

    Retry waits are recorded in ``sleeps``, not slept.
    """

    server: FakeAlpacaServer
    engine: Engine
    trader_id: str
    model: TradingModel
    panel: MarketPanel
    wrap: Callable[[AlpacaBroker, TradeJournal], Any] | None = None
    max_retries: int = 5
    timeout_seconds: float = 5.0
    sleeps: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        broker = AlpacaBroker(KEY, SECRET, paper=True, url_override=self.server.url, sleep=self.sleeps.append,
                              max_retries=self.max_retries, timeout_seconds=self.timeout_seconds)
        assert_local_url(broker.base_url)
        self.journal = TradeJournal(self.engine)
        self.broker = broker if self.wrap is None else self.wrap(broker, self.journal)
        self.trader = Trader(self.trader_id, self.model, self.broker, PanelBarProvider(self.panel), self.journal,
                             clock=FixedClock(bar_time(self.panel, 0)))

    def step(self, row: int) -> StepOutcome:
        self.server.trading.configure(prices=dict(zip(self.panel.symbols, self.panel.close[row].tolist())))
        return self.trader.step(bar_time(self.panel, row))

    def run(self, rows: range) -> list[StepOutcome]:
        return [self.step(row) for row in rows]


def sent_orders(server: FakeAlpacaServer) -> list[tuple]:
    """What reached Alpaca: client id, symbol, side, quantity, notional, status and filled units, in order."""
    return [(o["client_order_id"], o["symbol"], o["side"], o["qty"], o["notional"], o["status"], o["filled_qty"])
            for o in server.trading.orders]


def decisions(journal: TradeJournal, trader_id: str) -> list[tuple]:
    """Each bar's status, account, actions and orders as the journal holds them (notes aside)."""
    return [(e.bar_time, e.status, e.equity, e.cash, e.positions, e.policy_actions, e.executed_actions,
             [(o["client_order_id"], o["side"], o["qty"], o["notional"], o["status"]) for o in e.orders],
             [(f["client_order_id"], f["filled_qty"]) for f in e.fills])
            for e in journal.entries(trader_id)]
