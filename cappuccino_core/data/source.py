"""The ``BarSource`` protocol: where bars come from (Alpaca, files, the synthetic market)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

import polars as pl

from cappuccino_core.data.intervals import Interval


@runtime_checkable
class BarSource(Protocol):
    """Fetches historical bars for one symbol at one interval.

    Contract:
        * ``start`` and ``end`` are UTC-aware datetimes; the window is ``[start, end)``
          on bar open times.
        * The result follows ``cappuccino_core.data.bars`` (UTC ``timestamp`` of the bar's
          open, float prices and volume, sorted ascending). Rows are as the source delivered
          them: validation is the caller's job (``quality.validate_bars``).
        * Only complete bars are returned: a bar whose interval has not ended by ``end``
          or by the source's clock is not included.
        * Deterministic for the same arguments where the source allows it (files, synthetic).
        * Failures raise ``SourceError`` (I/O, retries exhausted, credentials refused) or
          ``BarDataError`` (a reply or file that cannot be read as bars), naming the symbol.
    """

    name: str

    def fetch(self, symbol: str, interval: Interval, start: datetime, end: datetime) -> pl.DataFrame:
        """Return the bars of ``symbol`` at ``interval`` with open time in ``[start, end)``."""
        ...

    def intervals(self, symbol: str) -> tuple[Interval, ...]:
        """Return the intervals this source can deliver natively for ``symbol``."""
        ...
