"""The MLflow store: absolute URIs under the home, the environment override, and one safe creation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import cappuccino_core
from cappuccino_core.tracking.store import (
    artifact_root,
    client,
    code_version,
    ensure_store,
    experiment_artifact_location,
    tracking_uri,
)


def test_the_default_store_is_an_absolute_sqlite_file_under_the_home(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = tracking_uri(Path("relative-home"))
    assert uri == f"sqlite:///{tmp_path.resolve()}/relative-home/mlflow/mlflow.db"
    assert uri.startswith("sqlite:////")
    assert artifact_root(Path("relative-home")) == f"file://{tmp_path.resolve()}/relative-home/mlflow/artifacts"


def test_the_environment_overrides_the_store_but_a_relative_sqlite_file_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://mlflow@db.example/mlflow")
    assert tracking_uri(tmp_path) == "postgresql://mlflow@db.example/mlflow"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    with pytest.raises(ValueError, match="relative SQLite"):
        tracking_uri(tmp_path)


def test_experiments_keep_artifacts_under_the_home_unless_a_tracking_server_decides(tmp_path) -> None:
    home_artifacts = artifact_root(tmp_path)
    assert experiment_artifact_location(f"sqlite:///{tmp_path}/mlflow.db", tmp_path) == home_artifacts
    # A database read directly has no artifact root: MLflow would use ./mlruns in the working directory.
    assert experiment_artifact_location("postgresql://mlflow@127.0.0.1/mlflow", tmp_path) == home_artifacts
    assert experiment_artifact_location("http://127.0.0.1:5000", tmp_path) is None


# Each process imports the store, says it is ready, waits for "go", then creates the store and an experiment.
_WORKER = """
import sys, time
from pathlib import Path
from cappuccino_core.tracking.store import client, ensure_store
uri, go, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
ensure_store(uri)
client(uri).create_experiment(name)
"""


def test_two_processes_creating_a_fresh_store_at_once_both_succeed(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path}/home/mlflow/mlflow.db"
    go = tmp_path / "go"
    workers = [
        subprocess.Popen([sys.executable, "-c", _WORKER, uri, str(go), f"made-by-w{i}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready"
    go.touch()  # both processes are waiting: release them together
    results = [worker.communicate(timeout=120) for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in results]

    ensure_store(uri)  # idempotent on an existing store
    names = {e.name for e in client(uri).search_experiments()}
    assert names == {"Default", "made-by-w0", "made-by-w1"}
    experiment = client(uri).get_experiment_by_name("made-by-w0").experiment_id
    run = client(uri).create_run(experiment)
    client(uri).log_param(run.info.run_id, "works", "yes")
    assert client(uri).get_run(run.info.run_id).data.params == {"works": "yes"}


def test_the_code_version_is_the_checkout_commit_marked_dirty_when_changed() -> None:
    repo = Path(cappuccino_core.__file__).resolve().parent.parent
    if not (repo / ".git").exists():
        assert code_version() == f"pkg-{cappuccino_core.__version__}"
        return
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True, check=True).stdout.strip()
    assert code_version() == head + ("-dirty" if dirty else "")


def test_outside_a_git_checkout_the_code_version_is_the_package_version(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(cappuccino_core, "__file__", str(tmp_path / "site-packages" / "cappuccino_core" / "__init__.py"))
    assert code_version() == f"pkg-{cappuccino_core.__version__}"


def test_a_store_of_an_older_schema_is_upgraded_once_after_a_backup(store_uri) -> None:
    from alembic import command
    from mlflow.store.db import utils as db_utils

    engine = db_utils.create_sqlalchemy_engine_with_retry(store_uri)
    config = db_utils._get_alembic_config(store_uri)
    with engine.begin() as connection:  # step the schema back one migration, as an older MLflow left it
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")
    old = db_utils._get_schema_version(engine)
    assert old != db_utils._get_latest_schema_revision()

    ensure_store(store_uri)

    assert db_utils._get_schema_version(engine) == db_utils._get_latest_schema_revision()
    engine.dispose()
    db = Path(store_uri.removeprefix("sqlite:///"))
    assert (db.parent / f"mlflow.db.pre-upgrade-{old}").is_file()
    assert client(store_uri).get_experiment("0").name == "Default"
