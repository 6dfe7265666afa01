"""A hard trial cap: an RDB storage that refuses to create the study's ``cap + 1``-th trial.

``optuna.study.MaxTrialsCallback`` only stops the worker that notices the cap, after the fact;
two workers can still start trials in between. Here the check sits where trials are born:
every trial creation takes a cross-process lock on the study, counts *all* its trials
(complete, pruned, failed, running, waiting) with one SQL ``count``, and either raises
``TrialCapReached`` or inserts the trial before the lock is released. Because the count is in
the database, the cap holds across worker processes, machines (PostgreSQL) and restarts, and
it includes trials created by ``study.enqueue_trial``/``add_trial`` and by
``RetryHeartbeatStaleTrialCallback`` (re-queued crashed trials).

Where the check hooks in (verified against optuna 5.0): ``optuna.create_study``/``load_study``
wrap an ``RDBStorage`` in ``_CachedStorage``, whose ``create_new_trial`` calls the backend's
*private* ``_create_new_trial``; ``RDBStorage.create_new_trial`` calls it too. So this class
overrides ``_create_new_trial``, which covers both paths. ``_CachedStorage`` forwards the
heartbeat methods to the backend, so heartbeats keep working.

Locks: PostgreSQL uses ``pg_advisory_xact_lock(namespace, study_id)`` on a dedicated
connection whose transaction ends only after the new trial is committed (a crashed process
drops its connection and with it the lock). SQLite uses ``fcntl.flock`` on a file next to
the database (``<db>.trial-cap.lock``), which serialises processes on one machine and threads
within one process alike; on SQLite the same lock also covers the claim of a queued trial
(WAITING -> RUNNING), which Optuna's unlocked read would otherwise let two workers make. The lock only protects against writers that use this class: every
worker of a capped study must open its storage with ``open_storage``.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

CAP_ATTR = "cap"
"""Study user attr that holds the trial cap."""

_PG_LOCK_NAMESPACE = 0x43415050  # "CAPP": first key of the two-int advisory lock.
_MEMORY_LOCK = threading.Lock()  # in-memory SQLite lives in one process: a thread lock suffices.
_SUPPORTED_DIALECTS = ("sqlite", "postgresql")


class TrialCapReached(RuntimeError):
    """The study already holds ``cap`` trials (in any state): no new trial may start."""


class CappedRDBStorage(optuna.storages.RDBStorage):
    """``RDBStorage`` whose trial creation is refused once the study holds ``cap`` trials.

    The cap of a study is its user attr ``cap`` (read once per study id, then cached; a study's
    cap never changes) or, for a study without that attr, the ``cap`` given here. A study with
    neither, or whose stored cap differs from a given ``cap``, raises ``ValueError`` at its
    first trial creation. Supported backends: SQLite and PostgreSQL.
    """

    def __init__(self, url: str, *, cap: int | None = None, **kwargs: Any) -> None:
        if cap is not None and cap < 1:
            raise ValueError(f"trial cap must be at least 1, got {cap}")
        super().__init__(url, **kwargs)
        dialect = self.engine.dialect.name
        if dialect not in _SUPPORTED_DIALECTS:
            raise ValueError(f"CappedRDBStorage supports {_SUPPORTED_DIALECTS}, not {dialect!r}")
        self._cap = cap
        self._caps: dict[int, int] = {}

    def cap_for(self, study_id: int) -> int:
        """Return the trial cap of the study (stored attr, else the constructor's ``cap``)."""
        if study_id in self._caps:
            return self._caps[study_id]
        stored = self.get_study_user_attrs(study_id).get(CAP_ATTR)
        name = self.get_study_name_from_id(study_id)
        if stored is None and self._cap is None:
            raise ValueError(f"study {name!r} has no trial cap: create it with prepare_study or pass cap=")
        if stored is not None and self._cap is not None and stored != self._cap:
            raise ValueError(f"study {name!r} has stored cap {stored} but the storage was opened with cap {self._cap}")
        cap = int(stored if stored is not None else self._cap)
        self._caps[study_id] = cap
        return cap

    def count_trials(self, study_id: int) -> int:
        """Count the study's trials in every state with one SQL ``count``."""
        trials = models.TrialModel.__table__
        query = select(func.count()).select_from(trials).where(trials.c.study_id == study_id)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        """Create a trial unless the study holds ``cap`` trials; count and insert under one lock."""
        cap = self.cap_for(study_id)
        with self.study_lock(study_id):
            count = self.count_trials(study_id)
            if count >= cap:
                name = self.get_study_name_from_id(study_id)
                raise TrialCapReached(f"study {name!r} holds {count} trials, its cap is {cap}: no new trial may start")
            return super()._create_new_trial(study_id, template_trial)

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        """Optuna's state change; on SQLite the claim of a WAITING trial (-> RUNNING) is made under the lock.

        Optuna claims a queued trial by reading it and writing RUNNING if it was WAITING. On
        PostgreSQL the read locks the row (``SELECT ... FOR UPDATE``); pysqlite runs the read
        outside a transaction, so two processes could both see WAITING and both run the trial.
        The file lock makes the read and the write one step for every worker of this storage.
        """
        if state == TrialState.RUNNING and self.engine.dialect.name == "sqlite":
            with self._sqlite_file_lock():
                return super().set_trial_state_values(trial_id, state, values)
        return super().set_trial_state_values(trial_id, state, values)

    @contextmanager
    def study_lock(self, study_id: int) -> Iterator[None]:
        """Hold a cross-process lock on the study (see the module docstring for the mechanism)."""
        if self.engine.dialect.name == "postgresql":
            with self._pg_advisory_lock(study_id):
                yield
        else:
            with self._sqlite_file_lock():
                yield

    @contextmanager
    def _pg_advisory_lock(self, study_id: int) -> Iterator[None]:
        # Transaction-scoped: released when this dedicated connection's transaction ends,
        # i.e. after the body (which commits the new trial on another connection) returns.
        with self.engine.connect() as conn, conn.begin():
            conn.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"), {"ns": _PG_LOCK_NAMESPACE, "key": study_id})
            yield

    @contextmanager
    def _sqlite_file_lock(self) -> Iterator[None]:
        database = make_url(self.url).database
        if not database or database == ":memory:":
            with _MEMORY_LOCK:
                yield
            return
        # A fresh open() per call gives a fresh open file description, so flock also
        # excludes other threads of this process, not only other processes.
        with open(Path(database).with_name(Path(database).name + ".trial-cap.lock"), "a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def capped_backend(study: optuna.Study) -> CappedRDBStorage | None:
    """Return the ``CappedRDBStorage`` behind a study, or ``None`` if it uses another storage."""
    storage = study._storage
    backend = getattr(storage, "_backend", storage)  # optuna wraps RDB storages in _CachedStorage
    return backend if isinstance(backend, CappedRDBStorage) else None
