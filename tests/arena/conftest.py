"""Arena test fixtures: the project database on SQLite and on PostgreSQL (in a throw-away schema)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

import cappuccino_core.arena.store  # noqa: F401 - declares the arena tables on Base
from cappuccino_core.db import create_schema, make_engine


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def arena_engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    """An engine with the arena tables: a SQLite file under ``tmp_path``, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'arena.db'}")
        create_schema(engine)
        yield engine
        engine.dispose()
        return
    base = make_engine(request.getfixturevalue("postgres_url"))
    schema = f"arena_test_{uuid.uuid4().hex[:12]}"
    with base.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = base.execution_options(schema_translate_map={None: schema})
    try:
        create_schema(engine)
        yield engine
    finally:
        with base.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        base.dispose()
