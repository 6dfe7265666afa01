"""One trader step in a child process, on the fake Alpaca (for tests that kill the process mid-step).

    python -m tests.trading.trade_child URL DATABASE_URL TRADER_ID POLICY ROW
"""

from __future__ import annotations

import sys

from cappuccino_core.clock import FixedClock
from cappuccino_core.db import make_engine
from cappuccino_core.trading.alpaca_broker import AlpacaBroker
from cappuccino_core.trading.bars_provider import PanelBarProvider
from cappuccino_core.trading.journal import TradeJournal
from cappuccino_core.trading.trader import Trader
from tests.fakes.alpaca_server import assert_local_url
from tests.trading.alpaca_desk import KEY, SECRET
from tests.trading.trading_scenarios import LinearPolicy, PhasePolicy, bar_time, model_for, walk_panel

POLICIES = {"phase": PhasePolicy, "linear": LinearPolicy}


def main(url: str, database_url: str, trader_id: str, policy: str, row: int) -> None:
    assert_local_url(url)
    panel = walk_panel(bars=60)
    broker = AlpacaBroker(KEY, SECRET, paper=True, url_override=url, sleep=lambda _s: None, timeout_seconds=5.0)
    trader = Trader(trader_id, model_for(panel, POLICIES[policy]), broker, PanelBarProvider(panel),
                    TradeJournal(make_engine(database_url)), clock=FixedClock(bar_time(panel, 0)))
    trader.step(bar_time(panel, row))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
