"""The data gate in front of every study: refuse to train on stale or broken bars."""

from __future__ import annotations

from datetime import datetime

from cappuccino_core.config import Settings
from cappuccino_core.data.freshness import FreshnessVerdict, require_fresh
from cappuccino_core.config.components import freshness_policy
from cappuccino_core.data.ingest import data_status
from cappuccino_core.data.store import BarStore


def require_training_data(settings: Settings, now: datetime, *, as_of: datetime | None = None,
                          allow_stale: bool = False) -> FreshnessVerdict:
    """Pass only when every stored series is fresh (as of ``as_of`` if given) and none is broken.

    Raises:
        StaleDataError: naming each stale or broken series.
        ValueError: the store is empty.
    """
    policy = freshness_policy(settings, as_of=as_of, allow_stale=allow_stale)
    status = data_status(BarStore(settings.bars_dir), policy, now)
    return require_fresh(status.reports, policy, now=policy.as_of or now)
