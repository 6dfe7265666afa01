"""The backup flow under Prefect's test harness: a snapshot of the home, the last N kept."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from flows.backup import BackupParams, backup

from cappuccino_core.backup import list_backups, read_backup

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_the_backup_flow_snapshots_the_home_and_keeps_the_last_n(prefect_harness, cappuccino_env) -> None:
    home = cappuccino_env
    home.mkdir(parents=True)
    with sqlite3.connect(home / "cappuccino.db") as connection:
        connection.execute("CREATE TABLE t (a INTEGER)")
        connection.execute("INSERT INTO t VALUES (1)")

    reports = [backup(params=BackupParams(keep=2, at=T0 + timedelta(days=d))) for d in range(3)]

    assert [r.files for r in reports] == [1, 1, 1] and reports[0].databases == 1
    kept = list_backups(home / "backups")
    assert [str(p) for p in kept] == [r.path for r in reports[1:]]
    assert reports[2].pruned == [reports[0].path]
    assert read_backup(kept[-1]).files[0].path == "home/cappuccino.db"
