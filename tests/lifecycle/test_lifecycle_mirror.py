"""The MLflow mirror: a ``stage`` tag on every version, ``production``/``live`` aliases on their holders."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from sqlalchemy import Engine

from cappuccino_core.data.intervals import Interval
from cappuccino_core.lifecycle.green_light import decide_green_light
from cappuccino_core.operations.registry_mirror import mirror_gate_decision, mirror_lifecycle, model_id_for, parse_model_id
from cappuccino_core.lifecycle.stages import Stage
from cappuccino_core.lifecycle.store import LifecycleStore
from cappuccino_core.lifecycle.track_record import TrackRecord
from cappuccino_core.tracking.store import ensure_store

T0 = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One MLflow store for the module (each test uses its own registered model); a trap on the global URI."""
    trap = tmp_path_factory.mktemp("trap") / "GLOBAL-TRACKING-URI-USED.db"
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    ensure_store(uri)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trap}")
        yield uri
    assert not trap.exists(), "some code used MLflow's global tracking URI"


@pytest.fixture
def registry(mlflow_uri: str, tmp_path: Path) -> tuple[MlflowClient, str, list[str]]:
    """A client, a fresh registered model and its three versions (lifecycle ids)."""
    client = MlflowClient(mlflow_uri, mlflow_uri)
    name = f"lifecycle-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    source = tmp_path / "source"
    source.mkdir()
    ids = [model_id_for(name, client.create_model_version(name, source=str(source),
                                                          tags={"stage": "candidate"}).version) for _ in range(3)]
    return client, name, ids


def tags_and_aliases(client: MlflowClient, name: str) -> tuple[dict[str, str], dict[str, str]]:
    stages = {str(v.version): v.tags.get("stage") for v in client.search_model_versions(f"name = '{name}'")}
    return stages, {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}


def test_the_registry_follows_the_database(engine: Engine, registry: tuple[MlflowClient, str, list[str]]) -> None:
    client, name, (a, b, c) = registry
    store = LifecycleStore(engine)
    for model in (a, b):
        store.move(model, Stage.SANDBOX, who="arena", why="promoted", at=T0)
    store.move(a, Stage.PRODUCTION, who="flow:promotion", why="first", at=T0 + timedelta(hours=1))
    store.move(a, Stage.LIVE, who="owner", why="green light", at=T0 + timedelta(hours=2))
    store.move(b, Stage.PRODUCTION, who="flow:promotion", why="beat it on paper", at=T0 + timedelta(hours=3))

    report = mirror_lifecycle(store, client)

    assert tags_and_aliases(client, name) == ({"1": "live", "2": "production", "3": "candidate"},
                                              {"live": "1", "production": "2"})
    assert len(report.tags_set) == 2 and len(report.aliases_set) == 2
    again = mirror_lifecycle(store, client)
    assert (again.tags_set, again.aliases_set, again.aliases_removed) == ((), (), ())  # idempotent

    store.move(a, Stage.RETIRED, who="monitor", why="demoted out", at=T0 + timedelta(hours=4))
    mirror_lifecycle(store, client)
    assert tags_and_aliases(client, name) == ({"1": "retired", "2": "production", "3": "candidate"},
                                              {"production": "2"})


def test_a_mirror_that_missed_moves_converges_on_the_database(
        engine: Engine, registry: tuple[MlflowClient, str, list[str]]) -> None:
    client, name, (a, _b, _c) = registry
    client.set_registered_model_alias(name, "live", "3")  # stale: left by a crashed run
    store = LifecycleStore(engine)
    store.move(a, Stage.SANDBOX, who="arena", why="promoted", at=T0)
    store.move(a, Stage.PRODUCTION, who="flow:promotion", why="first", at=T0)
    report = mirror_lifecycle(store, client)
    assert report.aliases_removed == (f"{name}@live",)
    assert tags_and_aliases(client, name)[1] == {"production": "1"}


def test_a_green_light_decision_is_tagged_on_the_version(registry: tuple[MlflowClient, str, list[str]]) -> None:
    client, name, (a, _b, _c) = registry
    returns = np.where(np.arange(48) % 2 == 0, 0.002, -0.001)
    times = tuple(T0 + timedelta(hours=i + 1) for i in range(48))
    decision = decide_green_light(TrackRecord(T0, times, returns, np.zeros(48), Interval.H1),
                                  model_id=a, decided_at=times[-1])
    mirror_gate_decision(client, a, decision.to_dict())
    tags = client.get_model_version(name, "1").tags
    assert tags["green_light"] == "allowed"
    assert tags["green_light.max_drawdown"].endswith("< 0.15: pass")
    assert set(tags) >= {f"green_light.{r}" for r in ("history", "alpha", "sharpe", "max_drawdown", "errors")}


def test_lifecycle_ids_are_registered_model_versions() -> None:
    assert parse_model_id(model_id_for("cappuccino-ppo", 12)) == ("cappuccino-ppo", "12")
    for bad in ("cappuccino-ppo/12", "models:/a/b/1", "models:/name/latest"):
        with pytest.raises(ValueError, match="not a registered model version"):
            parse_model_id(bad)


def test_a_lifecycle_model_missing_from_the_registry_is_an_error(
        engine: Engine, registry: tuple[MlflowClient, str, list[str]]) -> None:
    client, name, _ids = registry
    store = LifecycleStore(engine)
    store.move(model_id_for(name, 99), Stage.ARENA, who="arena", why="registered", at=T0)
    with pytest.raises(LookupError, match=f"models:/{name}/99 is in the lifecycle but not in the MLflow registry"):
        mirror_lifecycle(store, client)
