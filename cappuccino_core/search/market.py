"""The bars a study trains on: planned from the store, read back identically by every worker."""

from __future__ import annotations

from datetime import timedelta

from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.store import BarStore, NotStoredError
from cappuccino_core.features.market import panel_from_store
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.search.spec import StudySpec
from cappuccino_core.search.split import HistorySplit, plan_split, search_panel


class DataMismatchError(RuntimeError):
    """The store's bars differ from those the study was prepared on."""


def plan_store_split(store: BarStore, symbols: tuple[str, ...], base_interval: Interval, *,
                     holdout_weeks: float, replay_weeks: float = 0.0) -> HistorySplit:
    """Split the history every symbol covers: from the latest first bar to the earliest last bar."""
    coverages = []
    for symbol in symbols:
        coverage = store.coverage(symbol, base_interval)
        if coverage is None:
            raise NotStoredError(f"no {base_interval} bars stored for {symbol}; run `cappuccino data ingest` first")
        coverages.append(coverage)
    first = max(c.first_bar for c in coverages)
    end = min(c.last_bar for c in coverages) + timedelta(seconds=base_interval.seconds)
    return plan_split(first, end, holdout_weeks=holdout_weeks, replay_weeks=replay_weeks)


def study_panel(store: BarStore, spec: StudySpec, interval: Interval) -> MarketPanel:
    """The whole study period (search, holdout and replay) at ``interval``; hash-checked if recorded."""
    panel = panel_from_store(
        store, spec.symbols, interval=interval, base_interval=spec.base_interval,
        max_gap_bars=spec.max_gap_bars, start=spec.split.search_start, end=spec.split.replay_end,
    )
    expected = spec.data_hashes.get(str(interval))
    if expected is not None and expected != panel.data_hash:
        raise DataMismatchError(
            f"study {spec.name!r} was prepared on {interval} bars with hash {expected[:12]}, but the store now "
            f"gives {panel.data_hash[:12]} for {spec.split.search_start.isoformat()} .. {spec.split.replay_end.isoformat()}: "
            "a worker must train on the same data as the rest of the study"
        )
    return panel


class PanelCache:
    """Search panels by interval, built once per process."""

    def __init__(self, store: BarStore, spec: StudySpec) -> None:
        self._store, self._spec, self._panels = store, spec, {}

    def full(self, interval: Interval) -> MarketPanel:
        if interval not in self._panels:
            self._panels[interval] = study_panel(self._store, self._spec, interval)
        return self._panels[interval]

    def search(self, interval: Interval) -> MarketPanel:
        return search_panel(self.full(interval), self._spec.split)
