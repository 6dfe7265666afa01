"""The bar table every module exchanges: one symbol, one interval, a polars DataFrame.

Contract (what every ``BarSource`` returns and what the ``BarStore`` reads back):

* columns ``timestamp, open, high, low, close, volume`` and optionally
  ``trade_count, vwap``; no others;
* ``timestamp`` is the bar's **open** time, ``pl.Datetime("us", "UTC")``;
* prices and volume are ``Float64``; ``trade_count`` is ``Float64`` too (may be null);
* rows sorted ascending by timestamp, timestamps unique.

Sources may return rows that break the quality rules (a broken feed is data too);
``quality.validate_bars`` decides what is refused before anything is stored.
"""

from __future__ import annotations

import polars as pl

TIMESTAMP_DTYPE = pl.Datetime("us", "UTC")
REQUIRED_COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume")
OPTIONAL_COLUMNS: tuple[str, ...] = ("trade_count", "vwap")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")

BAR_SCHEMA: dict[str, pl.DataType] = {
    "timestamp": TIMESTAMP_DTYPE,
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "trade_count": pl.Float64(),
    "vwap": pl.Float64(),
}
