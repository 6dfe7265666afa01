"""Fixtures for the broker tests: the ledger databases and a local fake Alpaca."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from cappuccino_core.db import make_engine
from tests.conftest import postgres_url_or_skip
from tests.fakes.alpaca_server import FakeAlpacaServer, refuse_non_local_http
from tests.trading.alpaca_desk import open_alpaca_accounts


@pytest.fixture(autouse=True)
def _only_local_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that would send an HTTP request anywhere but this machine."""
    refuse_non_local_http(monkeypatch)


@pytest.fixture
def alpaca_account() -> Iterator[Callable[[], FakeAlpacaServer]]:
    """Return ``open()``: a new fake Alpaca account (10,000 USD, immediate fills), stopped after the test."""
    yield from open_alpaca_accounts()


@pytest.fixture
def fake_alpaca() -> Iterator[FakeAlpacaServer]:
    """A fake Alpaca on 127.0.0.1; fails the test if one of its routes broke."""
    with FakeAlpacaServer() as server:
        yield server
    assert server.handler_errors == []


def _schema_on(url: str) -> Iterator[tuple[str, str]]:
    """Create a uniquely named schema on ``url``, yield ``(url, schema)``, then drop it."""
    schema = f"cappuccino_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url, schema
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def shared_postgres_schema_url() -> Iterator[tuple[str, str]]:
    """One PostgreSQL schema for the session (tests keep apart by account id), dropped at the end."""
    yield from _schema_on(postgres_url_or_skip())


@dataclass(frozen=True)
class Ledger:
    """A ledger database for one test: new engines on it, and account ids only this test uses."""

    open_engine: Callable[[], Engine]
    prefix: str

    def account(self, name: str) -> str:
        """Return this test's account id for ``name``."""
        return f"{self.prefix}-{name}"


@pytest.fixture
def ledger_for(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Ledger]]:
    """Return ``make(kind)``: a ``Ledger`` on SQLite (under ``tmp_path``) or PostgreSQL.

    PostgreSQL ledgers share one session schema (tests keep apart by account id); each
    ``open_engine()`` is a new engine on the same database (a "restarted process"), and all
    are disposed after the test.
    """
    engines: list[Engine] = []

    def make(kind: str) -> Ledger:
        if kind == "sqlite":
            url, schema = f"sqlite:///{tmp_path}/ledger.db", None
        else:
            url, schema = request.getfixturevalue("shared_postgres_schema_url")

        def open_engine() -> Engine:
            engine = make_engine(url)
            engines.append(engine)
            if schema is None:
                # WAL with fsync at checkpoints only: halves the time of a commit, and losing
                # power mid-test is not what these tests are about.
                event.listen(engine, "connect", _sqlite_synchronous_normal)
                return engine
            return engine.execution_options(schema_translate_map={None: schema})

        return Ledger(open_engine, f"t{uuid.uuid4().hex[:10]}")

    yield make
    for engine in engines:
        engine.dispose()


def _sqlite_synchronous_normal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, ledger_for: Callable[[str], Ledger]) -> Ledger:
    """The ledger database, once SQLite and once PostgreSQL."""
    return ledger_for(request.param)
