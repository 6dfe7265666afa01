"""Thin Prefect tasks over the arena core. Retries only after I/O failures (database, MLflow, network).

Every task is safe to retry or repeat: admission is idempotent, matches are recorded with a
compare-and-set under idempotent match ids, and the mirror redoes only what it has not finished.
A refused holdout, a model that fails to load or a bug fails the task at once.
"""

from __future__ import annotations

from typing import Any

import requests
from prefect import task
from prefect.cache_policies import NONE
from sqlalchemy.exc import OperationalError

from cappuccino_core.arena import service
from cappuccino_core.arena.config import ArenaConfig
from cappuccino_core.config import Settings
from tasks.retry import retry_on

IO_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError, TimeoutError, OperationalError, requests.exceptions.ConnectionError, requests.exceptions.Timeout,
)
"""Database and network failures a retry may fix (all arena tasks are safe to repeat)."""

_retry_on_io = retry_on(*IO_ERRORS)


def _open(settings: Settings, arena_id: str, config: ArenaConfig):
    site = service.ArenaSite.from_settings(settings)
    return service.open_arena(site, arena_id, config), site


@task(cache_policy=NONE, retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_retry_on_io)
def admit_candidates(settings: Settings, arena_id: str, config: ArenaConfig) -> list[str]:
    """Register the registry's new candidates as entrants, in registration order; return their ids."""
    arena, site = _open(settings, arena_id, config)
    return service.admit(arena, site)


@task(cache_policy=NONE, retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_retry_on_io)
def mirror_matches(settings: Settings, arena_id: str, config: ArenaConfig) -> int:
    """Mirror every recorded match MLflow does not have yet and sync the king; return how many."""
    arena, site = _open(settings, arena_id, config)
    return service.mirror_arena(arena, site)


@task(cache_policy=NONE, retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_retry_on_io,
      task_run_name="play-{arena_id}")
def play_matches(settings: Settings, arena_id: str, config: ArenaConfig, max_matches: int | None) -> list[dict[str, Any]]:
    """Play every pending match (one coarse task: the server never sees a task per match)."""
    arena, site = _open(settings, arena_id, config)
    return [service.match_summary(r) for r in service.play(arena, site, max_matches=max_matches)]


@task(cache_policy=NONE, retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_retry_on_io)
def arena_history(settings: Settings, arena_id: str) -> dict[str, Any]:
    """The arena's standing with every match it played (for the pipeline's report)."""
    return service.arena_status(settings, arena_id=arena_id, last=10**6)


@task(cache_policy=NONE, retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_retry_on_io)
def arena_report(settings: Settings, arena_id: str) -> dict[str, Any]:
    """The arena's standing (``service.arena_status``)."""
    return service.arena_status(settings, arena_id=arena_id)
