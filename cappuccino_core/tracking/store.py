"""Where Cappuccino's MLflow record lives, and creating that store once.

The default store is a SQLite file and an artifact folder under the runtime home, both by
absolute path: MLflow's own default (``sqlite:///mlflow.db``, ``./mlruns``) is relative to the
working directory and silently moves with it. ``MLFLOW_TRACKING_URI`` (for example a
PostgreSQL URL or an ``http://`` tracking server shared by several machines) wins when set.

Two processes creating a fresh store at the same moment can break it for good, so
``ensure_store`` creates (or upgrades) it under a file lock; call it once before any worker starts.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

from typing import TYPE_CHECKING

import cappuccino_core

if TYPE_CHECKING:  # MLflow is imported by the functions that talk to it: reading a path must stay cheap
    from mlflow.tracking import MlflowClient

    TrackingClient = MlflowClient
    """The client of one tracking and registry store; code outside ``tracking``/``registry`` names it so."""

logger = logging.getLogger(__name__)

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
_SQLITE_PREFIX = "sqlite:///"
_SERVER_SCHEMES = frozenset({"http", "https", "databricks", "databricks-uc", "uc"})


def tracking_uri(home: Path) -> str:
    """Return ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<absolute home>/mlflow/mlflow.db``.

    Raises:
        ValueError: ``MLFLOW_TRACKING_URI`` names a relative SQLite file or a relative path
            (it would move with the working directory).
    """
    override = os.environ.get(TRACKING_URI_ENV, "").strip()
    if override:
        _require_absolute(override)
        return override
    return _SQLITE_PREFIX + str(Path(home).expanduser().resolve() / "mlflow" / "mlflow.db")


def artifact_root(home: Path) -> str:
    """Return the absolute ``file://`` URI of the artifact folder ``<home>/mlflow/artifacts``."""
    return (Path(home).expanduser().resolve() / "mlflow" / "artifacts").as_uri()


def is_local_store(uri: str) -> bool:
    """True when ``uri`` is a SQLite file (created and locked by ``ensure_store`` itself)."""
    return uri.startswith(_SQLITE_PREFIX)


def is_tracking_server(uri: str) -> bool:
    """True when ``uri`` is a tracking server (``http(s)://``, ``databricks``), which picks artifact locations."""
    return urlparse(uri).scheme in _SERVER_SCHEMES


def experiment_artifact_location(uri: str, home: Path) -> str | None:
    """Return the artifact location for new experiments: None on a tracking server, else ``artifact_root(home)``.

    A database URI (SQLite, PostgreSQL, MySQL) read directly by ``MlflowClient`` has no
    artifact root of its own: MLflow would fall back to ``./mlruns`` in the working directory.
    (With a database shared by several machines the artifacts then stay on the machine that
    wrote them; share artifacts through a tracking server instead.)
    """
    return None if is_tracking_server(uri) else artifact_root(home)


def client(uri: str) -> MlflowClient:
    """Return an ``MlflowClient`` whose tracking and registry stores are both ``uri``."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_store(uri: str, *, default_artifact_root: str | None = None) -> None:
    """Create or upgrade the store at ``uri``; for SQLite, safe when several processes call it at once.

    SQLite: under an exclusive ``fcntl`` lock on ``<db>.lock`` the tables are created (fresh
    file) or migrated to this MLflow's schema (after copying the file to
    ``<db>.pre-upgrade-<revision>``); then the store is opened once, which creates MLflow's
    default experiment. Idempotent. Other URIs (PostgreSQL, a tracking server): one cheap
    call that makes the backend create its tables, with no lock, so call it once before
    workers start; an out-of-date PostgreSQL schema is reported by MLflow (run
    ``mlflow db upgrade`` there, after a backup).

    Args:
        uri: tracking URI (absolute).
        default_artifact_root: artifact root of MLflow's default experiment on a fresh SQLite
            store (default: ``<db folder>/artifacts``); Cappuccino's experiments set their own.
    """
    _require_absolute(uri)
    if not is_local_store(uri):
        client(uri).search_experiments(max_results=1)
        return
    db_path = _sqlite_path(uri)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    root = default_artifact_root or (db_path.parent / "artifacts").as_uri()
    with _exclusive_lock(db_path.with_name(db_path.name + ".lock")):
        _create_or_upgrade_sqlite(uri, db_path)
        # Opening the tracking store creates the default experiment; do it inside the lock too.
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = SqlAlchemyStore(uri, root)
        store.engine.dispose()


def code_version() -> str:
    """Return the git commit of the code running (``-dirty`` if it has changes), or ``pkg-<version>``.

    The commit is read from the checkout that holds the ``cappuccino_core`` package. When the
    package is not inside a git checkout (an installed wheel), the package version is
    returned as ``pkg-<version>``. Never invents a value.

    Raises:
        RuntimeError: the package sits in a git checkout but git cannot read it (the
            message carries git's own error, e.g. an ownership ("dubious ownership") refusal).
    """
    repo = Path(cappuccino_core.__file__).resolve().parent.parent
    if not (repo / ".git").exists():
        return f"pkg-{cappuccino_core.__version__}"
    commit = _git(repo, "rev-parse", "HEAD")
    dirty = _git(repo, "status", "--porcelain")
    return commit + ("-dirty" if dirty else "")


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError as exc:
        raise RuntimeError(f"{repo} is a git checkout but the git program is not installed") from exc
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip()}")
    return done.stdout.strip()


def _require_absolute(uri: str) -> None:
    if is_local_store(uri):
        path = uri[len(_SQLITE_PREFIX):]
        if not path.startswith("/"):
            raise ValueError(
                f"tracking URI {uri!r} names a relative SQLite file; use sqlite:////absolute/path.db"
            )
        return
    parsed = urlparse(uri)
    if not parsed.scheme:
        raise ValueError(f"tracking URI {uri!r} has no scheme; use an absolute sqlite:/// or server URI")
    if parsed.scheme == "file":
        raise ValueError(
            f"tracking URI {uri!r}: MLflow's plain file store is not supported; use sqlite:////abs/path.db"
        )


def _sqlite_path(uri: str) -> Path:
    return Path(unquote(uri[len(_SQLITE_PREFIX):].split("?")[0]))


@contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _create_or_upgrade_sqlite(uri: str, db_path: Path) -> None:
    # MLflow's own helpers, the ones `mlflow db upgrade` runs; called here under our lock.
    from mlflow.store.db import utils as db_utils

    engine = db_utils.create_sqlalchemy_engine_with_retry(uri)
    try:
        current, head = db_utils._get_schema_version(engine), db_utils._get_latest_schema_revision()
        if current is None:  # no alembic_version table: a fresh (or empty) file
            logger.info("creating MLflow store %s", db_path)
            db_utils._initialize_tables(engine)
        elif current != head:
            backup = db_path.with_name(f"{db_path.name}.pre-upgrade-{current}")
            shutil.copy2(db_path, backup)
            logger.warning("upgrading MLflow store %s from schema %s to %s (backup: %s)", db_path, current, head, backup)
            db_utils._upgrade_db(engine)
    finally:
        engine.dispose()
