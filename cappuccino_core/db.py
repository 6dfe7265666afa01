"""The project database: arena, ledgers, journals and stage records share one SQLAlchemy schema.

SQLite under the runtime home is the embedded default; any SQLAlchemy URL (PostgreSQL for
several workers or machines) works. Tables are declared on ``Base`` by the modules that own
them; ``create_schema`` creates every table that has been imported.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, Dialect, Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from cappuccino_core.clock import ensure_utc


class Base(DeclarativeBase):
    """Declarative base of every Cappuccino table."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp column that stores UTC and always reads back UTC-aware (SQLite drops zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC before storing (naive SQLite column); refuse naive datetimes."""
        if value is None:
            return None
        value = ensure_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return a UTC-aware datetime whatever the backend returned."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def default_database_url(home: Path) -> str:
    """Return the SQLite URL under the runtime home (absolute, so it never moves with the cwd)."""
    return f"sqlite:///{(home / 'cappuccino.db').resolve()}"


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL and a busy timeout so several processes can share it."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    """Create every table declared on ``Base`` (idempotent)."""
    Base.metadata.create_all(engine)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory; use ``with factory.begin() as session:`` for one transaction."""
    return sessionmaker(engine, expire_on_commit=False)
