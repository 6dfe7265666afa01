"""Alerts: scrubbed of secrets, logged, stored, and posted to notification URLs (a local webhook)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import Engine, select

from cappuccino_core.lifecycle.alerts import AlertLevel, Alerts, scrub
from cappuccino_core.lifecycle.tables import AlertRow
from cappuccino_core.lifecycle.verdict import Level

T0 = datetime(2024, 6, 1, tzinfo=UTC)
API_SECRET = "sk-live-0123456789abcdef"
API_KEY = "AKLIVEKEY42"


class Webhook:
    """A local HTTP endpoint that records the bodies posted to it and answers ``status``."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("Content-Length", 0))
                hook.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def apprise_url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/hooks/cappuccino"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def test_scrub_replaces_every_occurrence_of_every_secret() -> None:
    text = f"key={API_KEY} secret={API_SECRET} again {API_SECRET}"
    assert scrub(text, [API_KEY, API_SECRET, ""]) == "key=*** secret=*** again ***"
    assert scrub("token abcdef", ["abcd", "abcdef"]) == "token ***"  # the longer secret first


def test_an_alert_goes_to_the_log_the_database_and_the_webhook_without_its_secrets(
        engine: Engine, webhook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    alerts = Alerts(engine, secrets=[API_KEY, API_SECRET], notify_urls=[webhook.apprise_url])
    message = f"live broker refused the order: 401 for key {API_KEY} / {API_SECRET}"

    with caplog.at_level(logging.INFO):
        outcome = alerts.raise_alert(AlertLevel.CRITICAL, "monitor", message, at=T0)

    expected = "live broker refused the order: 401 for key *** / ***"
    assert outcome.alert.message == expected
    assert [d.delivered for d in outcome.deliveries] == [True]
    (body,) = webhook.bodies
    assert body["title"] == "Cappuccino critical: monitor" and body["message"].startswith(expected)
    assert body["type"] == "failure"
    with engine.connect() as connection:
        stored = connection.execute(select(AlertRow.level, AlertRow.source, AlertRow.message, AlertRow.at)).all()
    assert [tuple(r) for r in stored] == [("critical", "monitor", expected, T0)]
    assert any(r.levelno == logging.ERROR and expected in r.getMessage() for r in caplog.records)
    for text in [caplog.text, json.dumps(webhook.bodies), repr(stored)]:
        assert API_SECRET not in text and API_KEY not in text


def test_a_failed_delivery_is_reported_and_the_alert_is_kept(engine: Engine, webhook: Webhook,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    webhook.status = 500
    alerts = Alerts(engine, notify_urls=[webhook.apprise_url])
    with caplog.at_level(logging.ERROR):
        outcome = alerts.raise_alert(AlertLevel.WARNING, "health", "trader missed its bar", at=T0)
    assert [d.delivered for d in outcome.deliveries] == [False]
    assert len(webhook.bodies) == 1
    assert [a.message for a in alerts.recent()] == ["trader missed its bar"]
    assert any("could not be delivered" in r.getMessage() for r in caplog.records)


def test_without_notification_urls_alerts_are_logged_and_stored_only(engine: Engine) -> None:
    outcome = Alerts(engine).raise_alert(AlertLevel.INFO, "promotion", "models:/m/2 is production", at=T0)
    assert outcome.deliveries == ()
    assert Alerts(engine).recent()[0].message == "models:/m/2 is production"


def test_recent_alerts_come_oldest_first_filtered_by_level(engine: Engine) -> None:
    alerts = Alerts(engine)
    for i, level in enumerate([AlertLevel.INFO, AlertLevel.EMERGENCY, AlertLevel.WARNING, AlertLevel.CRITICAL]):
        alerts.raise_alert(level, "test", f"alert {i}", at=T0 + timedelta(minutes=i))
    assert [a.message for a in alerts.recent(last=3)] == ["alert 1", "alert 2", "alert 3"]
    assert [a.level for a in alerts.recent(min_level=AlertLevel.CRITICAL)] == [AlertLevel.EMERGENCY,
                                                                               AlertLevel.CRITICAL]


def test_monitor_levels_map_to_alert_levels() -> None:
    assert [AlertLevel.from_level(level) for level in Level] == list(AlertLevel)


def test_secrets_too_short_to_scrub_and_urls_apprise_does_not_know_are_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="shorter than 4"):
        Alerts(engine, secrets=["abc"])
    with pytest.raises(ValueError, match="notification URL #1"):
        Alerts(engine, notify_urls=["nosuchscheme://whatever"])
