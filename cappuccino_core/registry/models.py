"""Registered model versions: candidates from studies, their tags and aliases.

Stages are deprecated in MLflow (since 2.9); a version's place in the lifecycle is its tag
``stage`` and the aliases pointing at it. Every version carries the tags that say where it
came from: ``study``, ``trial``, ``feature_spec_version``, ``data_hash``, and what it is:
``weights_sha256`` and ``card_sha256`` of the checkpoint files as the registry serves them
(``registry.loader`` verifies both on every load).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

import mlflow.artifacts

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from cappuccino_core.registry.loader import INTEGRITY_TAGS, checkpoint_digests, checkpoint_dir

DEFAULT_MODEL_NAME = "cappuccino-ppo"

RegisteredVersion = ModelVersion
"""The registry's record of one model version (name, version, tags, source)."""


def version_uri(model_name: str, version: str | int) -> str:
    """Return the id of a registered model version everywhere (arena, lifecycle): ``models:/<name>/<version>``."""
    return f"models:/{model_name}/{int(version)}"


def parse_version_uri(uri: str) -> tuple[str, str]:
    """Return ``(model name, version)`` of an id made by ``version_uri``.

    Raises:
        ValueError: the id is not ``models:/<name>/<version>``.
    """
    name, _, version = uri.removeprefix("models:/").rpartition("/")
    if not uri.startswith("models:/") or not name or "/" in name or not version.isdigit():
        raise ValueError(f"{uri!r} is not a registered model version (models:/<name>/<version>)")
    return name, version
CANDIDATE_STAGE = "candidate"
PROVENANCE_TAGS = ("study", "trial", "feature_spec_version", "data_hash", "stage")


MODEL_DESCRIPTION = (
    "PPO portfolio agents trained by Cappuccino. Each version is the validated network of one trial (tags "
    "study, trial, feature_spec_version, data_hash, provenance); its place in the lifecycle is the tag stage "
    "(candidate, arena, sandbox, production, live, retired) and the aliases: king (the arena's current king), production, live. "
    "The tag arena_status says king, eliminated or promoted."
)
"""The registered model's description in MLflow's UI."""


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    """Create registered model ``name`` unless it exists (safe when workers race to create it), with its description.

    A model that exists without the description (made by an older version) gets it.
    """
    try:
        client.create_registered_model(name, description=MODEL_DESCRIPTION)
        return
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    if client.get_registered_model(name).description != MODEL_DESCRIPTION:
        client.update_registered_model(name, description=MODEL_DESCRIPTION)


def register_candidate(
    client: MlflowClient,
    *,
    model_uri: str,
    run_id: str,
    study: str,
    trial: int,
    feature_spec_version: str,
    data_hash: str,
    model_name: str = DEFAULT_MODEL_NAME,
    extra_tags: Mapping[str, str] | None = None,
) -> str:
    """Register ``model_uri`` (made by run ``run_id``) as a new candidate version; return its number.

    ``model_uri`` is what ``log_policy_model`` returned (``models:/<model_id>``) or a
    ``runs:/<run_id>/<path>`` URI of a checkpoint directory logged as run artifacts.

    Raises:
        ValueError: the model was not made by ``run_id``, or ``extra_tags`` tries to change a
            provenance tag.
    """
    tags = {
        "study": study, "trial": str(int(trial)), "feature_spec_version": str(feature_spec_version),
        "data_hash": data_hash, "stage": CANDIDATE_STAGE,
    }
    clash = sorted(set(extra_tags or {}) & (set(tags) | set(INTEGRITY_TAGS)))
    if clash:
        raise ValueError(f"extra_tags may not set the provenance tags {clash}")
    source, model_id = _source_of(client, model_uri, run_id)
    tags.update(_served_digests(client, source))
    ensure_registered_model(client, model_name)
    version = client.create_model_version(
        model_name, source=source, run_id=run_id,
        tags={**{k: str(v) for k, v in (extra_tags or {}).items()}, **tags}, model_id=model_id,
    )
    return str(version.version)


def _served_digests(client: MlflowClient, source: str) -> dict[str, str]:
    """SHA-256 of the weights and card at ``source``, read from the store the registry serves them from."""
    with tempfile.TemporaryDirectory(prefix="cappuccino-register-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp,
                                                    tracking_uri=client.tracking_uri)
        return checkpoint_digests(checkpoint_dir(Path(local)))


def set_version_tag(client: MlflowClient, name: str, version: str, key: str, value: str) -> None:
    """Set tag ``key=value`` on version ``version`` of registered model ``name``."""
    client.set_model_version_tag(name, str(version), key, str(value))


def set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    """Point alias ``alias`` of registered model ``name`` at ``version`` (moving it if set)."""
    client.set_registered_model_alias(name, alias, str(version))


def model_aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """Return the aliases of registered model ``name`` (alias -> version); none when it is not registered."""
    try:
        return dict(client.get_registered_model(name).aliases)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return {}


def delete_alias(client: MlflowClient, name: str, alias: str) -> None:
    """Remove alias ``alias`` of registered model ``name``."""
    client.delete_registered_model_alias(name, alias)


def versions_of_study(client: MlflowClient, study: str, model_name: str = DEFAULT_MODEL_NAME) -> list[ModelVersion]:
    """Return the versions of ``model_name`` registered from ``study``, in registration order."""
    if "'" in study or "'" in model_name:
        raise ValueError(f"names with single quotes cannot be searched: {study!r}, {model_name!r}")
    found: list[ModelVersion] = []
    token = None
    while True:
        page = client.search_model_versions(
            f"name = '{model_name}' and tags.study = '{study}'", max_results=1000, page_token=token
        )
        found.extend(page)
        token = page.token
        if not token:
            break
    return sorted(found, key=lambda v: int(v.version))


def all_versions(client: MlflowClient, model_name: str = DEFAULT_MODEL_NAME) -> list[ModelVersion]:
    """Return every version of ``model_name``, in registration order (none when it is not registered)."""
    if "'" in model_name:
        raise ValueError(f"names with single quotes cannot be searched: {model_name!r}")
    found: list[ModelVersion] = []
    token = None
    while True:
        page = client.search_model_versions(f"name = '{model_name}'", max_results=1000, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            break
    return sorted(found, key=lambda v: int(v.version))


def _source_of(client: MlflowClient, model_uri: str, run_id: str) -> tuple[str, str | None]:
    """The registry ``source`` for ``model_uri`` and its LoggedModel id (None for run artifacts)."""
    if model_uri.startswith("models:/"):
        model_id = model_uri.removeprefix("models:/").strip("/")
        if "/" in model_id or "@" in model_id:
            raise ValueError(f"{model_uri!r} is a registered model version; register the run's model instead")
        logged = client.get_logged_model(model_id)
        if logged.source_run_id != run_id:
            raise ValueError(f"{model_uri} was logged by run {logged.source_run_id}, not {run_id}")
        # The storage location, not the models:/ URI: MLflow's SQL registry would resolve that
        # URI through the *global* tracking URI (a relative ./mlflow.db), not this client's.
        return logged.artifact_location, model_id
    if model_uri.startswith("runs:/"):
        uri_run, _, path = model_uri.removeprefix("runs:/").partition("/")
        if uri_run != run_id:
            raise ValueError(f"{model_uri} belongs to run {uri_run}, not {run_id}")
        if not path.strip("/"):
            raise ValueError(f"{model_uri} names no artifact path inside the run")
        return client.get_run(run_id).info.artifact_uri.rstrip("/") + "/" + path.strip("/"), None
    raise ValueError(f"unsupported model URI {model_uri!r}: expected models:/<model_id> or runs:/<run_id>/<path>")
