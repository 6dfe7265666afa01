"""Load a training panel from the bar store: the one path from stored bars to features.

Bars are read at the store's base interval and, when a longer interval is asked for,
resampled (complete buckets only) before features are computed.
"""

from __future__ import annotations

from datetime import datetime

from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.resample import resample_bars
from cappuccino_core.data.store import BarStore
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.features.panel_builder import build_panel
from cappuccino_core.features.spec import FeatureSpec


def supported_intervals(base: Interval, candidates: tuple[Interval, ...]) -> tuple[Interval, ...]:
    """Return the candidates that can be built from bars stored at ``base`` (equal or whole multiples)."""
    return tuple(i for i in candidates if i.seconds >= base.seconds and i.seconds % base.seconds == 0)


def panel_from_store(
    store: BarStore,
    symbols: tuple[str, ...],
    *,
    interval: Interval,
    base_interval: Interval,
    spec: FeatureSpec = FeatureSpec(),
    max_gap_bars: int = 3,
    start: datetime | None = None,
    end: datetime | None = None,
) -> MarketPanel:
    """Build the aligned multi-asset panel of ``symbols`` at ``interval`` from stored bars in ``[start, end)``.

    Raises:
        ValueError: ``interval`` cannot be built from ``base_interval``.
        NotStoredError: a symbol has no stored bars at ``base_interval``.
    """
    if interval not in supported_intervals(base_interval, (interval,)):
        raise ValueError(f"{interval} bars cannot be built from stored {base_interval} bars")
    bars = {}
    for symbol in symbols:
        stored = store.read(symbol, base_interval, start=start, end=end)
        bars[symbol] = stored if interval == base_interval else resample_bars(stored, source=base_interval, target=interval)
    return build_panel(bars, interval=interval, spec=spec, max_gap_bars=max_gap_bars)
