"""Moving a home: rewrite the absolute paths its stores recorded, so a copied home writes into itself.

MLflow records every artifact location as an absolute URI when it creates it: the
experiment's ``artifact_location``, each run's ``artifact_uri``, each logged model's
``artifact_location`` and each model version's ``source`` / ``storage_location``. A relative
location is not kept relative: MLflow resolves it against the working directory when the
experiment is created. So a home copied to another path still reads and writes the artifacts
of the old one, and once the old one is gone a registered model cannot be loaded.

``relocate_home`` rewrites, in the home's own SQLite stores (the MLflow store, the project
database and the Optuna studies, each in one transaction), every text value that names a path
under the old home (as a path or a ``file://`` URI) to the same path under the new one. The
files themselves are not touched: copy the home first (``cp -a old new``), stop every flow,
worker and trader using it, then relocate the copy. Stores outside the home (a PostgreSQL
study storage, an MLflow tracking server) are not rewritten and are named in ``skipped``;
the backups folder keeps its snapshots of the old home as they were taken.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

MLFLOW_DB = Path("mlflow") / "mlflow.db"
HOME_STORES = (MLFLOW_DB, Path("cappuccino.db"), Path("optuna") / "studies.db")
"""The SQLite files of a home, relative to it (tracking store, project database, study storage)."""

_ARTIFACTS = "/mlflow/artifacts"


class RelocationError(ValueError):
    """The home cannot be relocated as asked; the message says why in one line."""


@dataclass(frozen=True)
class Relocation:
    """What a relocation changed.

    Attributes:
        old_home: the home the stores pointed at.
        new_home: the home they point at now.
        rewritten: per store (path relative to the home), how many values were rewritten.
        remaining: values that still name the old home after the rewrite (0 when complete).
        skipped: stores the home uses but does not hold (not rewritten).
    """

    old_home: str
    new_home: str
    rewritten: dict[str, int]
    remaining: int
    skipped: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """Return the relocation as a JSON-ready dict."""
        return {"old_home": self.old_home, "new_home": self.new_home, "rewritten": dict(self.rewritten),
                "remaining": self.remaining, "skipped": list(self.skipped)}


def recorded_home(home: Path) -> Path | None:
    """Return the home the MLflow store of ``home`` records its artifacts under (None: no store or no local artifacts).

    Raises:
        RelocationError: the store's experiments name artifacts under several homes.
    """
    db = Path(home) / MLFLOW_DB
    if not db.is_file():
        return None
    with _connect(db) as conn:
        locations = [row[0] for row in conn.execute("SELECT artifact_location FROM experiments")]
    homes = {_home_of(loc) for loc in locations} - {None}
    if len(homes) > 1:
        raise RelocationError(f"{db}: experiments keep artifacts under several homes ({', '.join(sorted(homes))}): "
                              "say which one to replace with --from")
    return Path(homes.pop()) if homes else None


def relocate_home(home: Path, old_home: Path | None = None, *, skipped: tuple[str, ...] = ()) -> Relocation:
    """Point every store of ``home`` that names ``old_home`` (default: ``recorded_home``) at ``home`` instead.

    Raises:
        RelocationError: ``home`` has no MLflow store, no old home is recorded or given, or
            one of the two lies inside the other.
    """
    new = Path(home).expanduser().resolve()
    if not (new / MLFLOW_DB).is_file():
        raise RelocationError(f"{new} has no MLflow store ({MLFLOW_DB}): not a Cappuccino home, or nothing to relocate")
    old = Path(old_home).expanduser().absolute() if old_home is not None else recorded_home(new)
    if old is None:
        raise RelocationError(f"{new / MLFLOW_DB} records no artifact folder of a home: give the old home with --from")
    if old == new:
        return Relocation(str(old), str(new), {str(s): 0 for s in HOME_STORES if (new / s).is_file()}, 0, skipped)
    if old.is_relative_to(new) or new.is_relative_to(old):
        raise RelocationError(f"the old home {old} and the new home {new} lie inside one another: copy it elsewhere")
    pairs = ((old.as_uri() + "/", new.as_uri() + "/"), (str(old) + "/", str(new) + "/"))
    rewritten, remaining = {}, 0
    for store in HOME_STORES:
        path = new / store
        if path.is_file():
            rewritten[str(store)] = _rewrite(path, pairs, str(old))
            remaining += _count(path, (str(old) + "/", old.as_uri() + "/"))
    return Relocation(str(old), str(new), rewritten, remaining, skipped)


def _rewrite(db: Path, pairs: tuple[tuple[str, str], ...], old: str) -> int:
    """Replace each ``(old, new)`` prefix pair in every text value of ``db`` in one transaction; return values changed."""
    with _connect(db) as conn:
        conn.execute("BEGIN IMMEDIATE")
        before = conn.total_changes
        for table, column in _text_columns(conn):
            for was, now in pairs:
                conn.execute(f'UPDATE "{table}" SET "{column}" = REPLACE("{column}", ?, ?) '
                             f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0', (was, now, was))
            conn.execute(f'UPDATE "{table}" SET "{column}" = ? WHERE "{column}" = ?', (pairs[1][1].rstrip("/"), old))
        changed = conn.total_changes - before
        conn.execute("COMMIT")
    return changed


def _count(db: Path, needles: tuple[str, ...]) -> int:
    with _connect(db) as conn:
        return sum(conn.execute(f'SELECT count(*) FROM "{table}" WHERE typeof("{column}") = \'text\' AND '
                                + " OR ".join(f'instr("{column}", ?) > 0' for _ in needles), needles).fetchone()[0]
                   for table, column in _text_columns(conn))


def _text_columns(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name NOT LIKE 'sqlite_%'")]
    columns = []
    for table in tables:
        for _, name, declared, *_ in conn.execute(f'PRAGMA table_info("{table}")'):
            kind = (declared or "").upper()
            if not kind or any(word in kind for word in ("CHAR", "TEXT", "CLOB", "JSON")):
                columns.append((table, name))
    return columns


@contextmanager
def _connect(db: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)  # explicit BEGIN/COMMIT
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


def _home_of(location: str | None) -> str | None:
    """The home whose artifact folder ``location`` (a ``file://`` URI) lies in, or None."""
    if not location or not location.startswith("file://"):
        return None
    path = unquote(urlparse(location).path)
    cut = path.find(_ARTIFACTS)
    if cut <= 0:
        return None
    rest = path[cut + len(_ARTIFACTS):]
    return path[:cut] if rest == "" or rest.startswith("/") else None
