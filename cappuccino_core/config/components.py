"""The core's components built from the flat settings: read the settings here, nowhere below.

The data package takes typed values (a ``BarSource``, a ``FreshnessPolicy``); this module is
where a run's ``Settings`` become them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from cappuccino_core.clock import ensure_utc
from cappuccino_core.config.settings import DataSourceKind, Settings
from cappuccino_core.data.freshness import FreshnessPolicy
from cappuccino_core.data.source import BarSource


def make_source(settings: Settings, *, kind: DataSourceKind | None = None, path: Path | None = None) -> BarSource:
    """Build the bar source the settings (or the overrides) name."""
    kind = DataSourceKind(kind or settings.source)
    if kind is DataSourceKind.SYNTHETIC:
        from cappuccino_core.data.synthetic import SyntheticBarSource, SyntheticMarketConfig

        config = SyntheticMarketConfig(
            seed=settings.synthetic_seed,
            symbols=settings.symbols,
            interval=settings.base_interval,
            plant_strength=settings.synthetic_plant_strength,
        )
        return SyntheticBarSource(config)
    if kind is DataSourceKind.FILES:
        from cappuccino_core.data.files_source import FileBarSource

        directory = path or settings.files_path
        if directory is None:
            raise ValueError("source 'files' needs a directory: --path DIR or CAPPUCCINO_FILES_PATH")
        return FileBarSource(Path(directory))
    from cappuccino_core.data.alpaca_source import AlpacaBarSource

    return AlpacaBarSource(
        api_key=settings.alpaca_api_key.get_secret_value() if settings.alpaca_api_key else None,
        secret_key=settings.alpaca_secret_key.get_secret_value() if settings.alpaca_secret_key else None,
        url_override=settings.alpaca_data_url,
    )


def freshness_policy(settings: Settings, *, as_of: datetime | None = None, allow_stale: bool = False) -> FreshnessPolicy:
    """Build the freshness policy from the settings plus a run's ``--as-of`` / ``--allow-stale``."""
    return FreshnessPolicy(
        staleness_bars=settings.staleness_bars,
        grace=timedelta(minutes=settings.staleness_grace_minutes),
        as_of=None if as_of is None else ensure_utc(as_of),
        allow_stale=allow_stale,
    )
