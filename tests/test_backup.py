"""Backups of the home: a consistent snapshot, the last N kept, and a restore that brings everything back."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from cappuccino_core.backup import BackupError, back_up, back_up_home, list_backups, read_backup, restore
from cappuccino_core.config import Settings
from cappuccino_core.db import default_database_url, make_engine
from cappuccino_core.lifecycle.alerts import AlertLevel, Alerts
from cappuccino_core.operations.status_board import status_board
from cappuccino_core.lifecycle.kill_switch import KillSwitch
from cappuccino_core.operations.registry_mirror import mirror_lifecycle, model_id_for
from cappuccino_core.lifecycle.stages import Stage
from cappuccino_core.lifecycle.store import LifecycleStore
from cappuccino_core.search import runner
from cappuccino_core.tracking.store import ensure_store
from cappuccino_core.trading.journal import TradeJournal
from tests.arena.registry_fixtures import SYMBOLS, Registry, register_random_candidate, training_study
from tests.search.conftest import fill_store
from tests.trading.trading_scenarios import LOOKBACK, Desk, model_for, walk_panel

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 1, tzinfo=UTC)
MODEL = "backup-model"


def build_home(home: Path) -> tuple[Settings, list[str]]:
    """A home with bars, a training study, two registered versions moved through stages, journals and a halt."""
    settings = Settings(home=home, symbols=SYMBOLS)
    reg = Registry(runner.StudyLocation.from_settings(settings), fill_store(settings.bars_dir, days=70))
    ensure_store(reg.loc.tracking_uri)
    spec = training_study(reg, "backup-study", holdout_weeks=2, model_name=MODEL)
    ids = [model_id_for(MODEL, register_random_candidate(reg, spec, i, seed=i)) for i in range(2)]
    engine = make_engine(default_database_url(home))
    store = LifecycleStore(engine)
    for model_id in ids:
        store.move(model_id, Stage.ARENA, who="arena", why="registered", at=T0)
        store.move(model_id, Stage.SANDBOX, who="arena", why="promoted", at=T0 + timedelta(hours=1))
    store.move(ids[0], Stage.PRODUCTION, who="flow:promotion", why="first", at=T0 + timedelta(hours=2))
    mirror_lifecycle(store, reg.client)
    panel = walk_panel(bars=40)
    Desk(engine, "paper-desk", model_for(panel), panel).run(range(LOOKBACK - 1, 25))
    KillSwitch(engine).halt(reason="owner is away", who="owner", at=T0 + timedelta(hours=3))
    Alerts(engine, secrets=(), notify_urls=[]).raise_alert(AlertLevel.WARNING, "test", "look at this", at=T0 + timedelta(hours=3))
    engine.dispose()
    return settings, ids


def record_of(settings: Settings) -> dict:
    """Everything a person reads of the home: board, registry, journals, studies, artifacts and bars."""
    board = status_board(settings, now=T0 + timedelta(days=1))
    uri = runner.StudyLocation.from_settings(settings).tracking_uri
    client = MlflowClient(uri, uri)
    model = client.get_registered_model(MODEL)
    versions = sorted((v.version, v.source, v.run_id, v.status, dict(v.tags))
                      for v in client.search_model_versions(f"name = '{MODEL}'"))
    runs = sorted((r.info.run_id, r.info.status, r.data.params, r.data.metrics, dict(r.data.tags))
                  for e in client.search_experiments() for r in client.search_runs([e.experiment_id]))
    engine = make_engine(default_database_url(settings.home))
    journal = TradeJournal(engine)
    journals = {t: journal.entries(t) for t in journal.trader_ids()}
    plans = {t: [(p.bar_time, [o.client_order_id for o in p.orders]) for p in journal.open_plans(t)]
             for t in journal.trader_ids()}
    engine.dispose()
    studies = sorted((s.study_name, s.n_trials, dict(s.user_attrs))
                     for s in optuna.get_all_study_summaries(runner.StudyLocation.from_settings(settings).storage_url))
    files = {str(p.relative_to(settings.home)): hashlib.sha256(p.read_bytes()).hexdigest()
             for folder in ("mlflow/artifacts", "store") for p in sorted((settings.home / folder).rglob("*"))
             if p.is_file() and not p.name.endswith(".lock")}  # a lock file holds no data; it is not backed up
    board.pop("generated_at")
    return {"board": board, "aliases": dict(model.aliases), "model_tags": dict(model.tags), "versions": versions,
            "runs": runs, "journals": journals, "plans": plans, "studies": studies, "files": files}


def record_in_a_new_process(home: Path) -> str:
    """``repr(record_of(...))`` as a new process reads the home (MLflow keeps its SQLite store open per process)."""
    code = ("import sys; from pathlib import Path; from tests.test_backup import SYMBOLS, Settings, record_of; "
            "sys.stdout.write(repr(record_of(Settings(home=Path(sys.argv[1]), symbols=SYMBOLS))))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code, str(home)], capture_output=True, text=True, env=env,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_a_restore_brings_back_the_board_registry_journals_studies_and_artifacts_exactly(tmp_path) -> None:
    settings, ids = build_home(tmp_path / "home")
    before = record_of(settings)
    assert repr(before) == record_in_a_new_process(settings.home)
    assert before["aliases"] == {"production": 1} and before["journals"]["paper-desk"]
    assert [v[4]["stage"] for v in before["versions"]] == ["production", "sandbox"]

    backup = back_up_home(settings, at=T0 + timedelta(days=1))
    assert backup.path.parent == settings.home / "backups" and backup.databases == 3  # project, studies, MLflow

    # Things change and go missing after the backup.
    uri = runner.StudyLocation.from_settings(settings).tracking_uri
    client = MlflowClient(uri, uri)
    client.delete_model_version(MODEL, "2")
    client.set_registered_model_alias(MODEL, "live", "1")
    engine = make_engine(default_database_url(settings.home))
    LifecycleStore(engine).move(ids[0], Stage.RETIRED, who="owner", why="oops", at=T0 + timedelta(days=2))
    KillSwitch(engine).resume(who="owner", at=T0 + timedelta(days=2))
    panel = walk_panel(bars=40)
    Desk(engine, "paper-desk", model_for(panel), panel).run(range(25, 30))
    engine.dispose()
    (settings.home / "optuna" / "studies.db").unlink()
    for artifact in (settings.home / "mlflow" / "artifacts").rglob("*.pt"):
        artifact.unlink()
    assert record_of_or_error(settings) != before

    report = restore(backup.path, settings.home, at=T0 + timedelta(days=3))

    assert record_in_a_new_process(settings.home) == repr(before)
    assert report.files == len(backup.files) and report.moved_aside is not None
    assert (report.moved_aside / "cappuccino.db").exists()  # the replaced home was moved aside, not deleted
    assert list_backups(settings.home / "backups") == [backup.path]  # the backups folder stayed in place


def record_of_or_error(settings: Settings) -> dict | str:
    try:
        return record_of(settings)
    except Exception as exc:  # the home is damaged on purpose: any difference will do
        return f"{type(exc).__name__}"


def small_home(home: Path) -> Path:
    """A home with a project database holding some rows, a file and a folder."""
    (home / "reports").mkdir(parents=True)
    (home / "reports" / "note.txt").write_text("hello")
    with sqlite3.connect(home / "cappuccino.db") as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (a INTEGER)")
        connection.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
    return home


def test_only_the_last_n_backups_are_kept_and_nothing_else_in_the_folder_is_touched(tmp_path) -> None:
    home, backups = small_home(tmp_path / "home"), tmp_path / "backups"
    backups.mkdir()
    (backups / "my-notes").mkdir()
    made = [back_up(home, backups, at=T0 + timedelta(hours=h), keep=2).path for h in range(4)]
    assert list_backups(backups) == made[-2:]
    assert (backups / "my-notes").is_dir()
    assert [p.name for p in made] == [f"backup-20260301T0{h}0000Z" for h in range(4)]


def test_a_backup_of_a_database_being_written_holds_whole_transactions(tmp_path) -> None:
    home = small_home(tmp_path / "home")
    stop = threading.Event()

    def write_pairs() -> None:  # every transaction adds two rows: an odd count would be a torn copy
        with sqlite3.connect(home / "cappuccino.db", timeout=30) as connection:
            while not stop.is_set():
                connection.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
                connection.commit()

    writer = threading.Thread(target=write_pairs)
    writer.start()
    try:
        backups = [back_up(home, tmp_path / "backups", at=T0 + timedelta(minutes=m), keep=10) for m in range(5)]
    finally:
        stop.set()
        writer.join()
    counts = []
    for backup in backups:
        read_backup(backup.path)  # checksums and SQLite's integrity check
        with sqlite3.connect(backup.path / "home" / "cappuccino.db") as connection:
            counts.append(connection.execute("SELECT count(*) FROM t").fetchone()[0])
    assert all(count % 2 == 0 for count in counts) and counts[-1] > 10
    assert not any(p.name.endswith(("-wal", "-shm")) for b in backups for p in (b.path / "home").iterdir())


def test_a_corrupted_or_unknown_backup_is_refused_with_one_line_and_the_home_is_left_alone(tmp_path) -> None:
    home, backups = small_home(tmp_path / "home"), tmp_path / "backups"
    backup = back_up(home, backups, at=T0, keep=3)
    note = backup.path / "home" / "reports" / "note.txt"
    note.write_text("jello")
    with pytest.raises(BackupError, match=r"is corrupted: home/reports/note.txt does not match its SHA-256"):
        restore(backup.path, home, at=T0)
    (tmp_path / "stranger").mkdir()
    with pytest.raises(BackupError, match="is not a Cappuccino backup"):
        restore(tmp_path / "stranger", home, at=T0)
    manifest = json.loads((backup.path / "backup.json").read_text())
    (backup.path / "backup.json").write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(BackupError, match="unknown backup format 99"):
        read_backup(backup.path)
    assert (home / "reports" / "note.txt").read_text() == "hello"
    assert not list(tmp_path.glob("home-before-restore-*"))


def test_restore_refuses_a_home_with_a_step_in_flight_unless_forced(tmp_path) -> None:
    home = tmp_path / "home"
    engine = make_engine(default_database_url(home))
    switch = KillSwitch(engine)
    backup = back_up(home, tmp_path / "backups", at=T0, keep=3)
    with switch.step_in_flight("busy-trader", T0, T0):
        with pytest.raises(BackupError, match=r"still running: trader step busy-trader \(pid \d+\)"):
            restore(backup.path, home, at=T0)
        engine.dispose()
        report = restore(backup.path, home, at=T0, force=True)
    assert report.forced_over and "busy-trader" in report.forced_over[0]


def test_restore_refuses_a_home_where_a_flow_run_is_under_way(tmp_path) -> None:
    from cappuccino_core import flow_runs

    home = small_home(tmp_path / "home")
    backup = back_up(home, tmp_path / "backups", at=T0, keep=3)
    flow_runs.record_running(home, "run-1", "train/brave-otter", at=T0)  # this process runs a flow in the home
    with pytest.raises(BackupError, match=r"still running: flow run train/brave-otter \(pid \d+\)"):
        restore(backup.path, home, at=T0)


def test_a_backup_of_another_home_is_not_restored_over_this_one(tmp_path) -> None:
    backup = back_up(small_home(tmp_path / "a"), tmp_path / "backups", at=T0, keep=3)
    small_home(tmp_path / "b")
    with pytest.raises(BackupError, match=r"is a backup of .*/a, not of .*/b, which is not empty"):
        restore(backup.path, tmp_path / "b", at=T0)
    assert (tmp_path / "b" / "reports" / "note.txt").read_text() == "hello"  # left alone


def test_a_restore_into_a_fresh_home_elsewhere_reads_back_the_same_board_registry_and_journals(tmp_path) -> None:
    settings, _ = build_home(tmp_path / "home")
    before = repr(record_of(settings))
    backup = back_up(settings.home, tmp_path / "backups", at=T0 + timedelta(days=1), keep=3)
    shutil.rmtree(settings.home)  # the machine the home lived on is gone

    fresh = tmp_path / "elsewhere" / "home"
    report = restore(backup.path, fresh, at=T0 + timedelta(days=2))

    assert report.relocated_from == settings.home.resolve() and report.moved_aside is None
    assert record_in_a_new_process(fresh) == before.replace(str(settings.home.resolve()), str(fresh.resolve()))
    assert not settings.home.exists()  # nothing was written into the old path


def test_the_backup_and_restore_commands_print_json_and_refuse_a_bad_backup_in_one_line(tmp_path, monkeypatch) -> None:
    from cli.app import app

    home = small_home(tmp_path / "home")
    monkeypatch.setenv("CAPPUCCINO_HOME", str(home))
    monkeypatch.setenv("CAPPUCCINO_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("CAPPUCCINO_BACKUP_KEEP", "2")
    runner_ = CliRunner()
    made = runner_.invoke(app, ["backup", "--json"])
    assert made.exit_code == 0, made.output
    doc = json.loads(made.stdout)
    assert Path(doc["path"]).parent == home / "backups" and len(doc["files"]) == 2

    (home / "reports" / "note.txt").write_text("changed")
    restored = runner_.invoke(app, ["restore", Path(doc["path"]).name, "--json"])
    assert restored.exit_code == 0, restored.output
    assert (home / "reports" / "note.txt").read_text() == "hello"
    assert json.loads(restored.stdout)["files"] == 2

    refused = runner_.invoke(app, ["restore", str(tmp_path)])
    assert refused.exit_code == 2
    lines = [line for line in refused.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "is not a Cappuccino backup" in lines[0] and "Traceback" not in refused.output


def test_stores_outside_the_home_are_included_when_sqlite_and_named_when_not(tmp_path, monkeypatch) -> None:
    home = small_home(tmp_path / "home")
    elsewhere = tmp_path / "elsewhere" / "studies.db"
    elsewhere.parent.mkdir()
    with sqlite3.connect(elsewhere) as connection:
        connection.execute("CREATE TABLE s (a INTEGER)")
        connection.execute("INSERT INTO s VALUES (7)")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://mlflow:hunter2@db.example/mlflow")
    settings = Settings(home=home, study_storage=f"sqlite:///{elsewhere}")

    backup = back_up_home(settings, at=T0)

    (external,) = [f for f in backup.files if f.path.startswith("external/")]
    assert external.restore_to == str(elsewhere) and external.kind == "sqlite"
    (skipped,) = backup.skipped
    assert skipped.startswith("MLflow store postgresql://mlflow:***@db.example/mlflow: not a file")
    assert "hunter2" not in (backup.path / "backup.json").read_text()
    elsewhere.unlink()
    restore(backup.path, home, at=T0 + timedelta(hours=1))
    with sqlite3.connect(elsewhere) as connection:
        assert connection.execute("SELECT a FROM s").fetchall() == [(7,)]


def test_the_bar_store_is_copied_under_its_writers_lock_so_data_and_manifest_come_from_one_write(tmp_path) -> None:
    import fcntl

    home = small_home(tmp_path / "home")
    bars = home / "store" / "bars"
    bars.mkdir(parents=True)
    (bars / "BTC-USD.parquet").write_text("data v1")
    (bars / "manifest.json").write_text("manifest v1")
    made: list = []
    with open(bars / ".lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # a writer is half-way through its write
        (bars / "BTC-USD.parquet").write_text("data v2")
        backing_up = threading.Thread(target=lambda: made.append(back_up(home, tmp_path / "backups", at=T0, keep=3)))
        backing_up.start()
        backing_up.join(timeout=1.0)  # give a backup that ignores the lock the time to copy the torn pair
        (bars / "manifest.json").write_text("manifest v2")
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    backing_up.join()
    copied = made[0].path / "home" / "store" / "bars"
    assert ((copied / "BTC-USD.parquet").read_text(), (copied / "manifest.json").read_text()) == ("data v2", "manifest v2")
