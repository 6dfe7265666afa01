"""Where studies live: the storage URL, opening a capped storage, preparing and loading a study.

Two processes initialising a fresh SQLite file race (``table studies already exists``), so a
study is prepared once (``prepare_study``) before any worker starts; workers then only
``load_study``. Heartbeats are always on, so a worker that crashes mid-trial leaves a trial
that the next worker fails (and, with ``retry_stale >= 1``, re-queues as WAITING).

Sampler seeds: two workers with the same TPE seed propose the same parameters (the startup
trials are plain seeded random draws). ``load_study`` therefore seeds the sampler with
``sampler_seed + slot``, where ``slot`` is claimed atomically from the study's storage
(0 for the first worker ever to load the study, 1 for the next, ...). A single worker on a
fresh study is thus seeded with exactly ``sampler_seed`` and is reproducible; concurrent or
restarted workers get distinct seeds. Pass ``worker_index`` to choose the slot yourself.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.study import StudyDirection
from sqlalchemy.engine import make_url

from cappuccino_core.study.cap import CAP_ATTR, CappedRDBStorage

logger = logging.getLogger(__name__)

SAMPLER_SEED_ATTR = "sampler_seed"
STOPPED_EARLY_ATTR = "stopped_early"
STOP_REASON_ATTR = "stop_reason"
RESERVED_ATTRS = frozenset({CAP_ATTR, SAMPLER_SEED_ATTR, STOPPED_EARLY_ATTR, STOP_REASON_ATTR})
_WORKER_SLOTS_ATTR = "cappuccino:worker_slots"  # study system attr: slots claimed so far


class StudyNotFound(LookupError):
    """The named study does not exist in the given storage."""

    def __init__(self, name: str, url: str) -> None:
        super().__init__(f"study {name!r} not found in storage {redact_url(url)}")
        self.name = name


def redact_url(url: str) -> str:
    """Return the URL with any password hidden (storage URLs end up in error messages)."""
    return make_url(url).render_as_string(hide_password=True)


def default_storage_url(home: Path) -> str:
    """Return ``sqlite:///<absolute home>/optuna/studies.db``, creating the folder."""
    folder = (home / "optuna").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'studies.db'}"


def sqlite_path(url: str) -> Path | None:
    """Return the database file of a SQLite URL, ``None`` for other backends or in-memory."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def open_storage(
    url: str,
    *,
    cap: int | None = None,
    heartbeat_interval: int = 60,
    grace_period: int | None = None,
    retry_stale: int = 1,
) -> CappedRDBStorage:
    """Open a capped RDB storage with heartbeats (creates the schema on a fresh database).

    Args:
        url: SQLAlchemy URL (SQLite or PostgreSQL).
        cap: Cap for studies that have no stored ``cap`` attr (normally left ``None``).
        heartbeat_interval: Seconds between heartbeats of a running trial.
        grace_period: Seconds without heartbeat before a running trial counts as crashed
            (Optuna's default when ``None``: ``2 * heartbeat_interval``).
        retry_stale: How often a crashed trial is re-queued as WAITING (0: it just FAILs).
    """
    if retry_stale < 0:
        raise ValueError(f"retry_stale must be >= 0, got {retry_stale}")
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine_kwargs: dict[str, Any]
    if make_url(url).get_backend_name() == "sqlite":
        # Two workers plus their heartbeat threads write to one file: wait for locks, don't fail.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}  # long trials outlive idle server connections
    with warnings.catch_warnings():
        # Heartbeats and the retry callback are marked experimental; we use them deliberately.
        warnings.simplefilter("ignore", ExperimentalWarning)
        callback = RetryHeartbeatStaleTrialCallback(max_retry=retry_stale) if retry_stale > 0 else None
        return CappedRDBStorage(
            url,
            cap=cap,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=callback,
        )


def prepare_study(
    url: str,
    name: str,
    *,
    direction: Literal["maximize", "minimize"] = "maximize",
    sampler_seed: int,
    cap: int,
    attrs: dict[str, Any],
) -> None:
    """Create the storage schema and the study once, before any worker starts (idempotent).

    An existing study of that name is reused if it agrees: same direction, same cap, and the
    same value for every attr it already stores (new attrs are added). Anything else raises
    ``ValueError`` naming both values: a study's cap and setup never change under its trials.
    On SQLite the file is switched to WAL (a persistent setting) so readers don't block writers.
    """
    if cap < 1:
        raise ValueError(f"trial cap must be at least 1, got {cap}")
    reserved = RESERVED_ATTRS & attrs.keys()
    if reserved:
        raise ValueError(f"attrs may not set reserved keys {sorted(reserved)}")
    wanted = {CAP_ATTR: cap, SAMPLER_SEED_ATTR: sampler_seed, **attrs}
    wanted = {key: json.loads(json.dumps(value)) for key, value in wanted.items()}  # as stored
    storage = open_storage(url)
    if sqlite_path(url) is not None:
        with storage.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True)
    if study.direction != StudyDirection[direction.upper()]:
        raise ValueError(f"study {name!r} exists with direction {study.direction.name.lower()}, asked for {direction}")
    stored = study.user_attrs
    for key, value in wanted.items():
        if key in stored and stored[key] != value:
            raise ValueError(f"study {name!r} has {key}={stored[key]!r}; asked for {key}={value!r}")
    for key, value in wanted.items():
        if key not in stored:
            study.set_user_attr(key, value)


def claim_worker_slot(storage: CappedRDBStorage, study_id: int) -> int:
    """Atomically take the study's next worker slot (0, 1, 2, ... over the study's lifetime)."""
    with storage.study_lock(study_id):
        slot = int(storage.get_study_system_attrs(study_id).get(_WORKER_SLOTS_ATTR, 0))
        storage.set_study_system_attr(study_id, _WORKER_SLOTS_ATTR, slot + 1)
    return slot


def load_study(
    url: str,
    name: str,
    *,
    sampler_seed: int,
    worker_index: int | None = None,
    heartbeat_interval: int = 60,
    grace_period: int | None = None,
    retry_stale: int = 1,
) -> optuna.Study:
    """Load a prepared study for one worker: capped storage, heartbeats, seeded TPE.

    The sampler is ``TPESampler(multivariate=True, constant_liar=True, seed=sampler_seed + slot)``
    with ``slot = worker_index`` or, when ``None``, a slot claimed from storage (module docstring).
    The storage enforces the cap stored by ``prepare_study``; a study without one is refused.
    """
    if worker_index is not None and worker_index < 0:
        raise ValueError(f"worker_index must be >= 0, got {worker_index}")
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise StudyNotFound(name, url)
    storage = open_storage(
        url, heartbeat_interval=heartbeat_interval, grace_period=grace_period, retry_stale=retry_stale
    )
    study_id = study_id_or_raise(storage, name, url)
    storage.cap_for(study_id)  # refuse a study without a cap now, not at its first trial
    slot = claim_worker_slot(storage, study_id) if worker_index is None else worker_index
    seed = sampler_seed + slot
    logger.info("study %r: worker slot %d, TPE seed %d", name, slot, seed)
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler)


def study_id_or_raise(storage: CappedRDBStorage, name: str, url: str) -> int:
    """Return the id of the named study, or raise ``StudyNotFound`` naming study and storage."""
    try:
        return storage.get_study_id_from_name(name)
    except KeyError as exc:
        raise StudyNotFound(name, url) from exc
