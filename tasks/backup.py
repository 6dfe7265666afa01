"""Thin Prefect task over ``cappuccino_core.backup``: one snapshot of the home, the last N kept."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from cappuccino_core.backup import back_up_home
from cappuccino_core.config import Settings
from tasks.retry import retry_on


# A disk or database hiccup may pass; a missing home or a bad setting (BackupError) will not.
@task(retries=2, retry_delay_seconds=[30, 120], retry_condition_fn=retry_on(OSError), cache_policy=NONE)
def back_up(settings: Settings, at: datetime, keep: int | None) -> dict[str, Any]:
    """Snapshot the home of ``settings``; a retry starts a new backup (a partial one never counts as a backup)."""
    return back_up_home(settings, at=at, keep=keep).to_dict()
