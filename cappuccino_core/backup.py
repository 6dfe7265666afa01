"""Backups of the runtime home: a consistent snapshot while the system runs, the last N kept, and restore.

What a backup holds: every file under the home (the project database with the lifecycle
board, ledgers and trade journals, the Optuna studies, the MLflow store and its artifacts, the
bar store, the study folders), plus the study storage or the MLflow store when they are SQLite
files outside the home. The backups folder itself, SQLite's ``-wal``/``-shm``/``-journal``
sidecars and lock files are left out.

How it stays consistent while traders and studies write:

* every SQLite database is copied with SQLite's online backup API (``sqlite3.Connection.backup``),
  in one step: the copy is the database as one transaction saw it, with the WAL folded in;
  a plain file copy of a live database can be torn;
* the databases are copied first, then the other files: a file a database row points to (an
  artifact of a registered model version) was written before the row, so it is in the backup;
* the bar store is copied under its writers' lock (``store/bars/.lock``), so a series' data
  file and the store's manifest come from the same write;
* the snapshot is built in ``<name>.partial`` and renamed when complete, with a manifest
  (``backup.json``) holding each file's size and SHA-256: a backup without a manifest, or whose
  files do not match it, is refused by ``restore``.

PostgreSQL stores and tracking servers are not files: the backup names them under ``skipped``
(back them up with the server's own tools, e.g. ``pg_dump``).

``restore`` verifies the whole backup first, refuses a home where something is running (a
flow run recorded in ``flow_runs/``, a trader's step in flight, a study trial whose worker is
alive) unless forced, moves whatever the
home holds aside to ``<home>-before-restore-<time>`` (nothing is deleted) and copies the backup in.
It restores into the home the backup was taken of, or into an empty home elsewhere: MLflow
records artifact locations as absolute paths, so a snapshot restored at another path is then
relocated (``tracking.relocation``: every store's paths rewritten to the new home).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from cappuccino_core import flow_runs
from cappuccino_core.clock import ensure_utc
from cappuccino_core.config import Settings
from cappuccino_core.tracking.relocation import MLFLOW_DB, relocate_home
from cappuccino_core.tracking.store import tracking_uri

logger = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "backup.json"
PREFIX = "backup-"
_PARTIAL = ".partial"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_SIDECARS = ("-wal", "-shm", "-journal")


class BackupError(RuntimeError):
    """A backup cannot be made, read or restored (the message says why, in one line)."""


@dataclass(frozen=True)
class BackupFile:
    """One file of a backup.

    Attributes:
        path: where it lies in the backup (``home/...`` or ``external/...``), POSIX style.
        kind: ``sqlite`` (copied with the online backup API) or ``file``.
        size: bytes.
        sha256: hex digest of the backed-up bytes.
        restore_to: for ``external/`` files, the absolute path it came from.
    """

    path: str
    kind: str
    size: int
    sha256: str
    restore_to: str | None = None


@dataclass(frozen=True)
class Backup:
    """A complete backup: where it is, what home it is of, what it holds and what it could not hold."""

    path: Path
    created_at: datetime
    home: Path
    files: tuple[BackupFile, ...]
    skipped: tuple[str, ...] = ()
    pruned: tuple[Path, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest document (plus the backups pruned when this one was made)."""
        return {"format": FORMAT, "path": str(self.path), "created_at": self.created_at.isoformat(),
                "home": str(self.home), "files": [f.__dict__ for f in self.files], "skipped": list(self.skipped),
                "pruned": [str(p) for p in self.pruned]}

    @property
    def databases(self) -> int:
        """How many SQLite databases the backup holds."""
        return sum(f.kind == "sqlite" for f in self.files)


@dataclass(frozen=True)
class RestoreReport:
    """What ``restore`` did."""

    backup: Path
    home: Path
    files: int
    moved_aside: Path | None  # where the home's previous content went (None: the home was empty)
    forced_over: tuple[str, ...] = ()  # what was running when --force restored over it
    relocated_from: Path | None = None  # the backed-up home, when restored into another (empty) one

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary."""
        return {"backup": str(self.backup), "home": str(self.home), "files": self.files,
                "moved_aside": None if self.moved_aside is None else str(self.moved_aside),
                "forced_over": list(self.forced_over),
                "relocated_from": None if self.relocated_from is None else str(self.relocated_from)}


# -- backing up ------------------------------------------------------------------------------


def back_up(home: Path, backups_dir: Path, *, at: datetime, keep: int,
            external_sqlite: tuple[Path, ...] = (), skipped: tuple[str, ...] = ()) -> Backup:
    """Snapshot ``home`` (and SQLite stores outside it) into ``backups_dir``; keep the last ``keep`` backups.

    Args:
        home: the runtime home.
        backups_dir: where backups go (may lie inside the home: it is never backed up itself).
        at: the backup's time (its name: ``backup-YYYYmmddTHHMMSSZ``).
        keep: how many complete backups to keep, this one included (>= 1).
        external_sqlite: SQLite database files outside the home to include (study storage, MLflow store).
        skipped: stores that cannot be backed up as files, named for the manifest.

    Raises:
        BackupError: the home does not exist, or ``keep`` < 1.
    """
    home, backups_dir = home.resolve(), backups_dir.resolve()
    if keep < 1:
        raise BackupError(f"backup keep must be at least 1, got {keep}")
    if not home.is_dir():
        raise BackupError(f"nothing to back up: the home {home} does not exist")
    at = ensure_utc(at)
    backups_dir.mkdir(parents=True, exist_ok=True)
    final = _free_name(backups_dir, PREFIX + at.strftime("%Y%m%dT%H%M%SZ"))
    partial = final.with_name(final.name + _PARTIAL)
    shutil.rmtree(partial, ignore_errors=True)
    sources = [(path, f"home/{path.relative_to(home).as_posix()}", None) for path in _home_files(home, backups_dir)]
    sources += [(path.resolve(), f"external/{i}-{path.name}", str(path.resolve()))
                for i, path in enumerate(external_sqlite) if path.exists()]
    databases = [s for s in sources if _is_sqlite(s[0])]
    others = [s for s in sources if not _is_sqlite(s[0])]
    files = [_copy(source, relative, restore_to, partial, sqlite=True) for source, relative, restore_to in databases]
    # Then the files: every file a database row points to was written before the row. Folders
    # whose writers hold a ``.lock`` (the bar store) are copied under that lock: a data file and
    # its manifest are taken from one write, not from two.
    with _writer_locks(home, backups_dir):
        for source, relative, restore_to in others:
            try:
                files.append(_copy(source, relative, restore_to, partial, sqlite=False))
            except FileNotFoundError:  # removed between the listing and the copy (a scratch file)
                logger.info("backup: %s went away during the backup; not included", source)
    backup = Backup(final, at, home, tuple(files), tuple(skipped))
    (partial / MANIFEST).write_text(json.dumps(backup.to_dict() | {"path": None, "pruned": None}, indent=2))
    os.replace(partial, final)
    pruned = prune(backups_dir, keep=keep)
    logger.info("backup %s: %d file(s), %d database(s); pruned %d", final, len(files), backup.databases, len(pruned))
    return Backup(final, at, home, tuple(files), tuple(skipped), tuple(pruned))


def back_up_home(settings: Settings, *, at: datetime, keep: int | None = None) -> Backup:
    """Back up the home of ``settings`` into its backups folder, with the stores it keeps outside the home."""
    home = settings.home.resolve()
    external, skipped = [], []
    stores = {"study storage": settings.study_storage, "MLflow store": tracking_uri(home)}
    for what, url in stores.items():
        if url is None:
            continue
        path = _sqlite_file(url)
        if path is None:
            skipped.append(f"{what} {_redact(url)}: not a file; back it up with the server's own tools (pg_dump)")
        elif not path.resolve().is_relative_to(home):
            external.append(path)
    return back_up(home, backups_folder(settings), at=at, keep=settings.backup_keep if keep is None else keep,
                   external_sqlite=tuple(external), skipped=tuple(skipped))


def backups_folder(settings: Settings) -> Path:
    """Where the backups of ``settings`` go: ``backup_dir``, else ``<home>/backups``."""
    return (settings.backup_dir or settings.home / "backups").resolve()


def _sqlite_file(url: str) -> Path | None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def list_backups(backups_dir: Path) -> list[Path]:
    """Return the complete backups in ``backups_dir`` (a manifest present), oldest first."""
    if not backups_dir.is_dir():
        return []
    return sorted(p for p in backups_dir.iterdir()
                  if p.is_dir() and p.name.startswith(PREFIX) and not p.name.endswith(_PARTIAL)
                  and (p / MANIFEST).is_file())


def prune(backups_dir: Path, *, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` complete backups; return those deleted (nothing else is touched)."""
    backups = list_backups(backups_dir)
    doomed = backups[:-keep] if keep > 0 else backups
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def _copy(source: Path, relative: str, restore_to: str | None, partial: Path, *, sqlite: bool) -> BackupFile:
    target = partial / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if sqlite:
        _sqlite_snapshot(source, target)
    else:
        shutil.copy2(source, target)
    return BackupFile(relative, "sqlite" if sqlite else "file", target.stat().st_size, _sha256(target), restore_to)


@contextmanager
def _writer_locks(home: Path, backups_dir: Path) -> Iterator[None]:
    """Hold the exclusive ``flock`` of every ``.lock`` file under the home (the bar store's writers' lock)."""
    with ExitStack() as stack:
        for root, dirs, names in os.walk(home):
            dirs[:] = sorted(d for d in dirs if (Path(root) / d).resolve() != backups_dir)
            if ".lock" in names:
                handle = stack.enter_context(open(Path(root) / ".lock", "a+b"))  # noqa: SIM115 - closed by the stack
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                stack.callback(fcntl.flock, handle.fileno(), fcntl.LOCK_UN)
        yield


def _home_files(home: Path, backups_dir: Path) -> list[Path]:
    """Every file under ``home`` worth keeping, sorted (not the backups, sidecars or locks)."""
    found = []
    for root, dirs, names in os.walk(home):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if (root_path / d).resolve() != backups_dir)
        for name in sorted(names):
            if name.endswith(_SIDECARS) or name.endswith(".lock") or (name.startswith(".") and name.endswith(".tmp")):
                continue  # SQLite's sidecars, locks, a write in progress (``.<name>.tmp``, replaced when done)
            path = root_path / name
            if path.is_file() and not path.is_symlink():
                found.append(path)
    return found


def _sqlite_snapshot(source: Path, target: Path) -> None:
    """Copy a live SQLite database with the online backup API, in one step (one consistent read)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=60)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=-1)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no WAL beside it
    finally:
        dst.close()
        src.close()


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(16) == _SQLITE_MAGIC
    except OSError:
        return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _free_name(folder: Path, name: str) -> Path:
    candidate, n = folder / name, 1
    while candidate.exists() or candidate.with_name(candidate.name + _PARTIAL).exists():
        n += 1
        candidate = folder / f"{name}-{n}"
    return candidate


# -- reading and restoring -------------------------------------------------------------------


def read_backup(path: Path) -> Backup:
    """Read and verify a backup: its manifest, every file's size and SHA-256, every database's integrity.

    Raises:
        BackupError: not a Cappuccino backup, an unknown format, a missing, extra-short or
            altered file, or a database that fails SQLite's integrity check.
    """
    path = path.resolve()
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise BackupError(f"{path} is not a Cappuccino backup (no {MANIFEST})")
    try:
        doc = json.loads(manifest.read_text())
        if doc.get("format") != FORMAT:
            raise BackupError(f"{path}: unknown backup format {doc.get('format')!r} (this version reads {FORMAT})")
        files = tuple(BackupFile(**f) for f in doc["files"])
        backup = Backup(path, ensure_utc(datetime.fromisoformat(doc["created_at"])), Path(doc["home"]), files,
                        tuple(doc.get("skipped", ())))
    except BackupError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{path}: the manifest {MANIFEST} is unreadable ({type(exc).__name__}: {exc})") from None
    for f in files:
        stored = path / f.path
        if ".." in Path(f.path).parts or not f.path.startswith(("home/", "external/")):
            raise BackupError(f"{path}: the manifest names a file outside the backup: {f.path!r}")
        if not stored.is_file():
            raise BackupError(f"{path} is incomplete: {f.path} is missing")
        if stored.stat().st_size != f.size or _sha256(stored) != f.sha256:
            raise BackupError(f"{path} is corrupted: {f.path} does not match its SHA-256 in {MANIFEST}")
        if f.kind == "sqlite":
            _check_integrity(stored, path, f.path)
    return backup


def resolve_backup(name: str, backups_dir: Path) -> Path:
    """Return the backup ``name`` names: a path, or a folder name in ``backups_dir`` (``latest``: the newest)."""
    if name == "latest":
        found = list_backups(backups_dir)
        if not found:
            raise BackupError(f"no backup in {backups_dir}")
        return found[-1]
    given = Path(name).expanduser()
    if given.exists() or given.is_absolute() or "/" in name:
        return given
    return backups_dir / name


def restore(path: Path, home: Path, *, at: datetime, force: bool = False,
            backups_dir: Path | None = None) -> RestoreReport:
    """Restore the backup at ``path`` into ``home`` (see the module docstring).

    A backups folder inside the home (``backups_dir``, and the folder ``path`` lies in) stays in place.

    Raises:
        BackupError: the backup does not verify, it is of another home, or something is running
            in the home and ``force`` is False.
    """
    backup = read_backup(path)
    home = home.resolve()
    elsewhere = backup.home.resolve() != home
    if elsewhere:
        _check_fresh_home(backup, home)
    running = running_in_home(home)
    if running and not force:
        raise BackupError(f"not restoring over {home}: still running: {'; '.join(running)} "
                          "(stop them, or pass --force)")
    at = ensure_utc(at)
    keep_in_place = {backup.path.parent.resolve()} | ({backups_dir.resolve()} if backups_dir is not None else set())
    moved = _move_aside(home, keep_in_place, at)
    for f in backup.files:
        target = home / f.path.removeprefix("home/") if f.restore_to is None else Path(f.restore_to)
        if f.restore_to is not None and target.exists():
            aside = target.with_name(f"{target.name}.before-restore-{at:%Y%m%dT%H%M%SZ}")
            os.replace(target, aside)
            for suffix in _SIDECARS:
                Path(str(target) + suffix).unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(backup.path / f.path, target)
    relocated = None
    if elsewhere and (home / MLFLOW_DB).is_file():
        relocated = relocate_home(home, backup.home)  # the stores name the backed-up home's paths
        if relocated.remaining:
            raise BackupError(f"restored {backup.path} into {home}, but {relocated.remaining} value(s) in its stores "
                              f"still name {backup.home}: run `cappuccino home relocate --from {backup.home}`")
    logger.info("restored %s into %s (%d files); the previous content is in %s", backup.path, home,
                   len(backup.files), moved)
    return RestoreReport(backup.path, home, len(backup.files), moved, tuple(running) if force else (),
                         relocated_from=None if relocated is None else backup.home)


def _check_fresh_home(backup: Backup, home: Path) -> None:
    """A backup goes into another home only when that home is empty and the backup holds nothing outside its home."""
    if home.exists() and any(home.iterdir()):
        raise BackupError(f"{backup.path} is a backup of {backup.home}, not of {home}, which is not empty: restore "
                          f"it there (CAPPUCCINO_HOME={backup.home}) or into an empty home")
    outside = [f.restore_to for f in backup.files if f.restore_to is not None]
    if outside:
        raise BackupError(f"{backup.path} holds stores outside {backup.home} ({', '.join(sorted(outside))}): "
                          f"restore it into {backup.home} only")


def running_in_home(home: Path) -> list[str]:
    """Return what runs in ``home`` on this host: flow runs, trader steps in flight, study trials whose worker lives."""
    running = [f"flow run {r.flow_name} (pid {r.pid})" for r in flow_runs.recorded(home)
               if r.host == socket.gethostname() and not r.is_dead()]
    database = home / "cappuccino.db"
    if database.exists():
        rows = _query(database, "SELECT trader_id, pid, host FROM lifecycle_step_in_flight")
        running += [f"trader step {t} (pid {pid})" for t, pid, host in rows
                    if host == socket.gethostname() and flow_runs.pid_alive(int(pid))]
    studies = home / "optuna" / "studies.db"
    if studies.exists():
        rows = _query(studies, "SELECT a.value_json FROM trials t JOIN trial_user_attributes a "
                               "ON a.trial_id = t.trial_id WHERE t.state = 'RUNNING' AND a.key = 'worker'")
        for (value,) in rows:
            host, _, pid = str(json.loads(value)).rpartition(":")
            if host == socket.gethostname() and pid.isdigit() and flow_runs.pid_alive(int(pid)):
                running.append(f"study worker (pid {pid})")
    return sorted(set(running))


def _query(database: Path, sql: str) -> list[tuple]:
    """Rows of ``sql`` in a read-only connection; none when the table does not exist (yet)."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        return connection.execute(sql).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        connection.close()


def _check_integrity(database: Path, backup: Path, relative: str) -> None:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        verdict = connection.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{backup} is corrupted: {relative} is not a readable database ({exc})") from None
    finally:
        connection.close()
    if verdict != "ok":
        raise BackupError(f"{backup} is corrupted: {relative} fails SQLite's integrity check ({verdict})")


def _move_aside(home: Path, keep_in_place: set[Path], at: datetime) -> Path | None:
    """Move the home's content (not the backups folders in it) to ``<home>-before-restore-<time>``."""
    if not home.exists():
        home.mkdir(parents=True)
        return None
    entries = [p for p in home.iterdir() if p.resolve() not in keep_in_place]
    if not entries:
        return None
    aside = _free_name(home.parent, f"{home.name}-before-restore-{at:%Y%m%dT%H%M%SZ}")
    aside.mkdir()
    for entry in entries:
        os.replace(entry, aside / entry.name)
    return aside
