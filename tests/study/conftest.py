"""Study fixtures: one storage per test, on SQLite (tmp_path) and on PostgreSQL (cleaned up)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import optuna
import pytest

from cappuccino_core.study import default_storage_url, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class StudyPlace:
    """Where a test's study lives: storage URL and a study name unique to this test run."""

    url: str
    name: str


def _delete_if_present(url: str, name: str) -> None:
    storage = open_storage(url)
    try:
        if name in {study.study_name for study in storage.get_all_studies()}:
            storage.delete_study(storage.get_study_id_from_name(name))
    finally:
        storage.engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def place(request: pytest.FixtureRequest, tmp_path) -> Iterator[StudyPlace]:
    """A fresh study place on each backend; the PostgreSQL study is deleted afterwards."""
    name = f"test-study-{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        yield StudyPlace(default_storage_url(tmp_path), name)
        return
    url = request.getfixturevalue("postgres_url")
    try:
        yield StudyPlace(url, name)
    finally:
        _delete_if_present(url, name)


@pytest.fixture
def sqlite_place(tmp_path) -> StudyPlace:
    """A fresh study place on SQLite only (for tests whose logic does not depend on the backend)."""
    return StudyPlace(default_storage_url(tmp_path), f"test-study-{uuid.uuid4().hex[:12]}")
