"""Alerts that repeat a condition, raised once per quiet period rather than on every check.

The health flow runs every 5 minutes and the traders every bar: a condition that lasts
(stale data, a live model that may not trade) would otherwise send the same alert a dozen
times an hour. ``alert_once`` raises an alert unless one from the same source at the same
level was recorded within ``quiet`` (default one hour); the condition is still in every
flow's report.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cappuccino_core.clock import ensure_utc
from cappuccino_core.lifecycle.alerts import AlertLevel, AlertOutcome
from cappuccino_core.operations.site import LifecycleSite

DEFAULT_QUIET = timedelta(hours=1)
_LOOK_BACK = 500  # recent alerts searched for a repeat


def alert_once(site: LifecycleSite, level: AlertLevel, source: str, message: str, *, at: datetime,
               quiet: timedelta = DEFAULT_QUIET) -> AlertOutcome | None:
    """Raise the alert unless ``source`` raised one at ``level`` within ``quiet`` before ``at``; return it or ``None``."""
    at = ensure_utc(at)
    level = AlertLevel(level)
    for alert in site.alerts.recent(last=_LOOK_BACK, min_level=level):
        if alert.source == source and alert.level is level and at - quiet < alert.at <= at:
            return None
    return site.alert(level, source, message, at=at)
