"""Planted secrets never show: not in any command's output or log, not in any file under the home."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from cappuccino_core.db import make_engine
from cappuccino_core.lifecycle.alerts import AlertLevel, Alerts
from cappuccino_core.redaction import describe_url, url_secret_parts
from tests.conftest import REPO
from tests.fakes.alpaca_server import FakeAlpacaServer

PAPER_KEY, PAPER_SECRET = "PKPLANTEDPAPER0001", "planted-paper-secret-7Q2"
LIVE_KEY, LIVE_SECRET = "AKPLANTEDLIVE0002", "planted-live-secret-9Z4"
URL_TOKEN, QUERY_TOKEN, FORM_PASSWORD = "NOTIFYSECRETXYZ456", "QUERYTOKEN789abc", "MAILPASS2468"
NOTIFY_URLS = (f"json://127.0.0.1:9/{URL_TOKEN}?token={QUERY_TOKEN} "
               f"form://formuser:{FORM_PASSWORD}@127.0.0.1:9/hook")
PLANTED = (PAPER_KEY, PAPER_SECRET, LIVE_KEY, LIVE_SECRET, URL_TOKEN, QUERY_TOKEN, FORM_PASSWORD)


def leaks(text: str | bytes) -> list[str]:
    """Return the planted values found in ``text`` (plain or URL-quoted)."""
    data = text.encode() if isinstance(text, str) else text
    return [s for s in PLANTED if s.encode() in data or quote(s).encode() in data]


def test_a_notification_url_shows_only_its_scheme_and_host_and_its_token_parts_are_secrets() -> None:
    url = f"json://127.0.0.1:9/hooks/{URL_TOKEN}?token={QUERY_TOKEN}&format=json"
    assert describe_url(url) == "json://127.0.0.1:9"
    assert set(url_secret_parts(url)) == {URL_TOKEN, QUERY_TOKEN}  # not "hooks", not "json"
    assert FORM_PASSWORD in url_secret_parts(f"mailto://mailuser:{FORM_PASSWORD}@localhost")


def test_an_undeliverable_alert_names_its_url_without_the_token_in_the_log_database_and_outcome(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'alerts.db'}")
    url = f"json://127.0.0.1:9/{URL_TOKEN}?token={QUERY_TOKEN}"
    alerts = Alerts(engine, secrets=[LIVE_KEY], notify_urls=[url])
    with caplog.at_level(logging.DEBUG):
        outcome = alerts.raise_alert(AlertLevel.CRITICAL, "test", f"token {URL_TOKEN} and key {LIVE_KEY} in a message",
                                     at=datetime(2024, 6, 1, tzinfo=UTC))
    engine.dispose()
    assert outcome.deliveries[0].delivered is False
    assert outcome.deliveries[0].target == "notification URL #1 (json://127.0.0.1:9)"
    assert outcome.alert.message == "token *** and key *** in a message"
    assert "could not be delivered to notification URL #1 (json://127.0.0.1:9)" in caplog.text
    assert leaks(caplog.text) == []
    assert leaks((tmp_path / "alerts.db").read_bytes()) == []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_planted_secrets_appear_in_no_command_output_and_no_file_under_the_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with FakeAlpacaServer() as fake:
        fake.trading.configure(cash=10_000.0, prices={"BTC/USD": 50_000.0})
        fake.require_auth(LIVE_KEY, LIVE_SECRET)  # the live account answers; the paper keys are refused
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CAPPUCCINO_", "APCA_"))}
        env.update({
            "CAPPUCCINO_HOME": str(home), "CAPPUCCINO_CONFIG": str(tmp_path / "absent.toml"),
            "PYTHONPATH": str(REPO), "APCA_API_KEY_ID": PAPER_KEY, "APCA_API_SECRET_KEY": PAPER_SECRET,
            "CAPPUCCINO_LIVE_API_KEY": LIVE_KEY, "CAPPUCCINO_LIVE_SECRET_KEY": LIVE_SECRET,
            "CAPPUCCINO_NOTIFY_URLS": NOTIFY_URLS, "CAPPUCCINO_ALPACA_LIVE_URL": fake.url,
            "CAPPUCCINO_ALPACA_PAPER_URL": fake.url, "CAPPUCCINO_ALPACA_DATA_URL": fake.url,
        })
        outputs = {}
        for command in (["settings"], ["-v", "kill", "--reason", f"test {LIVE_KEY}"], ["-v", "resume"],
                        ["status", "--json"]):
            done = subprocess.run([sys.executable, "-c", "from cli.app import app; app()", *command],
                                  cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
            outputs[" ".join(command)] = (done.returncode, done.stdout + done.stderr)

    kill_code, kill_output = outputs[f"-v kill --reason test {LIVE_KEY}"]
    assert kill_code == 0, kill_output
    assert "could not be delivered to notification URL #1 (json://127.0.0.1:9)" in kill_output  # delivery was tried
    assert {name: leaks(text) for name, (_code, text) in outputs.items() if leaks(text)} == {}
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "cappuccino.db" for p in files)
    assert {str(p.relative_to(home)): leaks(p.read_bytes()) for p in files if leaks(p.read_bytes())} == {}
