"""Fixtures of the MLflow tests: a fresh SQLite store per test and a trap for MLflow's global tracking URI."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cappuccino_core.tracking.store import ensure_store


@pytest.fixture(scope="module", autouse=True)
def global_uri_trap(tmp_path_factory) -> Iterator[Path]:
    """Point MLflow's global tracking URI at a trap file for the whole module (module fixtures too)."""
    trap = tmp_path_factory.mktemp("trap") / "GLOBAL-TRACKING-URI-USED.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trap}")
        yield trap


@pytest.fixture(autouse=True)
def no_global_tracking_uri(global_uri_trap) -> Iterator[None]:
    """Fail a test whose code reached MLflow's global tracking URI instead of the one it was given."""
    yield
    assert not global_uri_trap.exists(), "some code used MLflow's global tracking URI"


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """An empty, fully migrated MLflow SQLite file."""
    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    ensure_store(f"sqlite:///{db}")
    return db


@pytest.fixture
def store_uri(tmp_path, store_template) -> str:
    """Absolute ``sqlite:////...`` URI of a fresh store under ``tmp_path/mlflow``."""
    db = tmp_path / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True)
    shutil.copyfile(store_template, db)
    uri = f"sqlite:///{db}"
    ensure_store(uri)
    return uri
