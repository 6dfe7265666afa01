"""Fixtures of the lifecycle tests: project databases (SQLite and PostgreSQL), a guard on HTTP, a fake Alpaca."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from cappuccino_core.db import make_engine
from tests.conftest import postgres_url_or_skip
from tests.fakes.alpaca_server import FakeAlpacaServer, refuse_non_local_http

EngineFactory = Callable[[], Engine]


@pytest.fixture(autouse=True)
def _only_local_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that would send an HTTP request (through requests) anywhere but this machine."""
    refuse_non_local_http(monkeypatch)


@pytest.fixture
def fake_alpaca() -> Iterator[FakeAlpacaServer]:
    """A fake Alpaca on 127.0.0.1; fails the test if one of its routes broke."""
    with FakeAlpacaServer() as server:
        yield server
    assert server.handler_errors == []


@pytest.fixture
def sqlite_engines(tmp_path: Path) -> Iterator[EngineFactory]:
    """Return ``open_engine()``: a new engine on one SQLite file (a new process, as far as the data goes)."""
    engines: list[Engine] = []

    def open_engine() -> Engine:
        engine = make_engine(f"sqlite:///{tmp_path / 'project.db'}")
        engines.append(engine)
        return engine

    yield open_engine
    for engine in engines:
        engine.dispose()


@pytest.fixture
def postgres_engines() -> Iterator[EngineFactory]:
    """Return ``open_engine()`` on a fresh PostgreSQL schema, dropped after the test."""
    url = postgres_url_or_skip()
    schema = f"cappuccino_lifecycle_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engines: list[Engine] = []

    def open_engine() -> Engine:
        engine = make_engine(url)
        engines.append(engine)
        return engine.execution_options(schema_translate_map={None: schema})

    try:
        yield open_engine
    finally:
        for engine in engines:
            engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def open_engine(request: pytest.FixtureRequest) -> EngineFactory:
    """``open_engine()`` on SQLite, then on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_engines")


@pytest.fixture
def engine(sqlite_engines: EngineFactory) -> Engine:
    """One SQLite project database (for tests where the backend does not matter)."""
    return sqlite_engines()
