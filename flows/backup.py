"""The ``backup`` flow, daily: a consistent snapshot of the home while the system runs, the last N kept.

What is backed up and how it stays consistent: ``cappuccino_core.backup``. The same as
``cappuccino backup``; ``cappuccino restore BACKUP`` brings one back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow
from pydantic import BaseModel, Field

from cappuccino_core.clock import SystemClock, ensure_utc
from cappuccino_core.config import load_settings
from tasks import backup as backup_tasks


class BackupParams(BaseModel):
    """What a run may set."""

    keep: int | None = Field(None, ge=1, description="Backups to keep (default: the backup_keep setting).")
    at: datetime | None = Field(None, description="The backup's time (UTC), its name; default now.")


class BackupReport(BaseModel):
    """The backup made: where, how many files, what the stores outside the home left out, what was pruned."""

    path: str
    files: int
    databases: int
    skipped: list[str]
    pruned: list[str]


@flow(name="backup")
def backup(params: BackupParams = BackupParams()) -> BackupReport:
    """Back up the home and prune the oldest backups."""
    at = ensure_utc(params.at) if params.at is not None else SystemClock().now()
    made: dict[str, Any] = backup_tasks.back_up(load_settings(), at, params.keep)
    return BackupReport(path=made["path"], files=len(made["files"]),
                        databases=sum(f["kind"] == "sqlite" for f in made["files"]), skipped=made["skipped"],
                        pruned=made["pruned"])
