"""A copied home, relocated, reads and writes only itself: the king loads and new runs land in the copy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from cli.app import app
from cappuccino_core.config import Settings
from cappuccino_core.registry.loader import load_policy
from cappuccino_core.search import runner
from cappuccino_core.tracking.relocation import RelocationError, recorded_home, relocate_home
from cappuccino_core.tracking.store import ensure_store, tracking_uri
from tests.arena.registry_fixtures import SYMBOLS, Registry, register_random_candidate, training_study
from tests.search.conftest import fill_store

MODEL = "moved-ppo"
cli = CliRunner()


@pytest.fixture
def original(tmp_path) -> Path:
    """A home with stored bars, a training study and its candidate registered and crowned king."""
    home = tmp_path / "old home"  # a space: MLflow URIs encode it
    settings = Settings(home=home, symbols=SYMBOLS, model_name=MODEL)
    reg = Registry(runner.StudyLocation.from_settings(settings), fill_store(settings.bars_dir, days=70))
    ensure_store(reg.loc.tracking_uri)
    spec = training_study(reg, "moved-study", holdout_weeks=3, model_name=MODEL)
    version = register_random_candidate(reg, spec, 0, seed=1)
    reg.client.set_registered_model_alias(MODEL, "king", version)
    return home


def _copy(original: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "new" / "home"
    shutil.copytree(original, copy)
    return copy


def _log_a_run(home: Path) -> str:
    """Log a run with one artifact into the study's experiment of ``home``; return its artifact URI."""
    client = MlflowClient(tracking_uri(home), tracking_uri(home))
    experiment = client.get_experiment_by_name("moved-study").experiment_id
    run = client.create_run(experiment, run_name="after-the-move")
    client.log_text(run.info.run_id, "hello", "note.txt")
    client.set_terminated(run.info.run_id)
    return run.info.artifact_uri


def test_a_copy_that_is_not_relocated_still_writes_into_the_original(original, tmp_path) -> None:
    copy = _copy(original, tmp_path)
    artifact_uri = _log_a_run(copy)
    assert "old%20home" in artifact_uri and "new/home" not in artifact_uri  # the problem the relocation solves
    assert recorded_home(copy) == original.resolve()


def test_a_relocated_copy_loads_the_king_and_logs_runs_into_itself_after_the_original_is_deleted(
        original, tmp_path, monkeypatch) -> None:
    source = original
    copy = _copy(source, tmp_path)
    monkeypatch.setenv("CAPPUCCINO_HOME", str(copy))
    monkeypatch.setenv("CAPPUCCINO_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = cli.invoke(app, ["home", "relocate", "--json"])  # the old home as MLflow recorded it
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    assert (done["old_home"], done["new_home"], done["remaining"]) == (str(source.resolve()), str(copy.resolve()), 0)
    assert done["rewritten"]["mlflow/mlflow.db"] >= 5  # experiment, runs, logged model, model version
    shutil.rmtree(source)

    loaded = load_policy(f"models:/{MODEL}@king", None, tracking_uri=tracking_uri(copy))
    assert loaded.study == "moved-study" and loaded.model_version == "1"
    artifact_uri = _log_a_run(copy)
    assert artifact_uri.startswith(copy.resolve().as_uri() + "/mlflow/artifacts/")
    assert len(list((copy / "mlflow" / "artifacts").rglob("note.txt"))) == 1
    assert not source.exists()  # nothing was written back into the deleted original
    again = cli.invoke(app, ["home", "relocate", "--json"])  # recorded now: the copy itself, nothing to do
    assert again.exit_code == 0 and sum(json.loads(again.stdout)["rewritten"].values()) == 0


def test_relocation_refuses_a_folder_without_a_store_and_nested_homes(original, tmp_path) -> None:
    with pytest.raises(RelocationError, match="has no MLflow store"):
        relocate_home(tmp_path / "empty")
    with pytest.raises(RelocationError, match="lie inside one another"):
        relocate_home(original, original.parent)
