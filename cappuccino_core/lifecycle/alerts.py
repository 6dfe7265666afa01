"""Alerts: to the log, to the database and, when configured, to notification URLs.

Every message is scrubbed first: each configured secret value (API keys, webhook tokens,
passwords) is replaced by ``***`` wherever it occurs, so an alert never carries a secret into
the log, the database or a chat. Notification URLs are Apprise URLs (``discord://``,
``slack://``, ``mailto://``, ``json://host/path`` for a plain JSON webhook, ...), sent with
the Apprise library one URL at a time; each delivery's outcome is returned and logged (a
failed delivery never loses the alert: it is already in the database and the log). A URL is
only ever shown as ``scheme://host[:port]`` (``redaction.describe_url``); its credential-like
parts (user, password, token-like path segments and query values) are scrubbed like the
configured secrets, and so are the records of Apprise's own logger (Apprise's privacy form
does not mask every scheme's path, ``json://`` among them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import apprise
from sqlalchemy import Engine, select

from cappuccino_core.clock import ensure_utc
from cappuccino_core.db import Base, session_factory
from cappuccino_core.lifecycle.tables import ALERT_TABLES, AlertRow
from cappuccino_core.lifecycle.verdict import Level
from cappuccino_core.redaction import (
    MIN_SECRET_LENGTH, REDACTED, ScrubFilter, describe_url, scrub, secrets_with_url_parts,
)

logger = logging.getLogger(__name__)

__all__ = ["REDACTED", "Alert", "AlertLevel", "AlertOutcome", "Alerts", "Delivery", "scrub"]


class AlertLevel(StrEnum):
    """How loud an alert is."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"
    EMERGENCY = "emergency"

    @classmethod
    def from_level(cls, level: Level) -> AlertLevel:
        """Return the alert level of a monitor level (``ok`` is ``info``)."""
        return cls.INFO if level is Level.OK else cls(str(level))


_LOG_LEVELS = {AlertLevel.INFO: logging.INFO, AlertLevel.WARNING: logging.WARNING,
               AlertLevel.CRITICAL: logging.ERROR, AlertLevel.EMERGENCY: logging.CRITICAL}
_NOTIFY_TYPES = {AlertLevel.INFO: apprise.NotifyType.INFO, AlertLevel.WARNING: apprise.NotifyType.WARNING,
                 AlertLevel.CRITICAL: apprise.NotifyType.FAILURE, AlertLevel.EMERGENCY: apprise.NotifyType.FAILURE}


@dataclass(frozen=True)
class Alert:
    """One recorded alert (message already scrubbed)."""

    id: int
    level: AlertLevel
    source: str
    message: str
    at: datetime


@dataclass(frozen=True)
class Delivery:
    """One notification attempt: the URL as ``scheme://host[:port]`` and whether Apprise delivered it."""

    target: str
    delivered: bool


@dataclass(frozen=True)
class AlertOutcome:
    """The recorded alert and its deliveries."""

    alert: Alert
    deliveries: tuple[Delivery, ...]


class Alerts:
    """Raises alerts: scrubbed, logged, stored, and sent to the configured notification URLs."""

    def __init__(self, engine: Engine, *, secrets: Sequence[str] = (), notify_urls: Sequence[str] = ()) -> None:
        """Set up alerting.

        Args:
            engine: the project database (the ``lifecycle_alert`` table is created if needed).
            secrets: values that must never appear in an alert (empty values are ignored).
            notify_urls: Apprise URLs every alert is sent to (none: log and database only); each
                URL and its credential-like parts are scrubbed too.

        Raises:
            ValueError: a secret shorter than 4 characters (scrubbing it would mangle every
                message), or a notification URL Apprise does not understand.
        """
        short = [s for s in secrets if s and len(s) < MIN_SECRET_LENGTH]
        if short:
            raise ValueError(f"{len(short)} secret(s) shorter than {MIN_SECRET_LENGTH} characters cannot be scrubbed")
        self._secrets = secrets_with_url_parts(secrets, notify_urls)
        self._targets: list[tuple[str, apprise.Apprise]] = []
        for i, url in enumerate(notify_urls):
            target = apprise.Apprise()
            if not target.add(url):
                raise ValueError(f"notification URL #{i + 1} is not a URL Apprise understands")
            self._targets.append((f"notification URL #{i + 1} ({describe_url(url)})", target))
        if self._secrets:
            _scrub_apprise_log(self._secrets)
        Base.metadata.create_all(engine, tables=ALERT_TABLES)
        self._sessions = session_factory(engine)

    def raise_alert(self, level: AlertLevel, source: str, message: str, *, at: datetime) -> AlertOutcome:
        """Scrub, log, store and send one alert; return it with the delivery outcomes."""
        level = AlertLevel(level)
        source = scrub(source, self._secrets)
        message = scrub(message, self._secrets)
        at = ensure_utc(at)
        logger.log(_LOG_LEVELS[level], "alert [%s] %s: %s", level, source, message)
        with self._sessions.begin() as session:
            row = AlertRow(level=str(level), source=source, message=message, at=at)
            session.add(row)
            session.flush()
            alert = Alert(row.id, level, source, message, at)
        return AlertOutcome(alert, tuple(self._send(alert)))

    def recent(self, *, last: int = 50, min_level: AlertLevel | None = None) -> list[Alert]:
        """Return the ``last`` alerts (at ``min_level`` or above), oldest first."""
        order = list(AlertLevel)
        with self._sessions() as session:
            query = select(AlertRow).order_by(AlertRow.id.desc()).limit(last)
            if min_level is not None:
                query = query.where(AlertRow.level.in_([str(x) for x in order[order.index(AlertLevel(min_level)):]]))
            rows = session.scalars(query).all()
        return [Alert(r.id, AlertLevel(r.level), r.source, r.message, r.at) for r in reversed(rows)]

    def _send(self, alert: Alert) -> list[Delivery]:
        deliveries = []
        title = f"Cappuccino {alert.level}: {alert.source}"
        body = f"{alert.message}\n({alert.at.isoformat()})"
        for where, target in self._targets:
            delivered = bool(target.notify(body=body, title=title, notify_type=_NOTIFY_TYPES[alert.level]))
            if not delivered:
                logger.error("alert %d could not be delivered to %s", alert.id, where)
            deliveries.append(Delivery(where, delivered))
        return deliveries


def _scrub_apprise_log(secrets: Sequence[str]) -> None:
    """Scrub ``secrets`` from the records of Apprise's logger (its debug lines quote full URLs)."""
    apprise_logger = logging.getLogger("apprise")
    for old in [f for f in apprise_logger.filters if isinstance(f, ScrubFilter)]:
        apprise_logger.removeFilter(old)
    apprise_logger.addFilter(ScrubFilter(secrets))
