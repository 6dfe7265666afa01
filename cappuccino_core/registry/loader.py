"""The one way to load a trained policy, from the registry, a run, or a local directory.

Accepted URIs:

- ``models:/<name>/<version>`` and ``models:/<name>@<alias>``: a registered version;
- ``models:/<model_id>``: a logged model (what ``log_policy_model`` returns);
- ``runs:/<run_id>/<path>``: a checkpoint directory or a pyfunc model logged by a run;
- a local path (or ``file://`` URI) of a checkpoint directory or a pyfunc model directory.

Every URI is resolved with an explicit ``MlflowClient`` for ``tracking_uri`` (MLflow's own
``models:/`` resolution reads the global registry URI instead). The checkpoint is then loaded
by ``load_trained_policy``, which refuses a panel whose feature spec, symbols or interval differ
from the model card; registry tags that contradict the card, or a study other than the
expected one, are refused too.

A registered version carries the SHA-256 of its weights (``weights_sha256``) and of its model
card (``card_sha256``), recorded by ``register_candidate`` from the files the registry serves.
Loading a registered version checks both before anything is deserialised: edited weights
(even with the card's own hash rewritten to match) or an edited card (relabelled to another
study, say) are refused with ``ModelIntegrityError``, and so is a version registered without
the two tags. The card's own ``weights_sha256`` only proves the directory is self-consistent.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlparse

import mlflow.artifacts
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from cappuccino_core.agents.checkpoint import (
    CARD_FILE, WEIGHTS_FILE, CheckpointError, ModelCard, ModelMismatchError, load_checkpoint,
)
from cappuccino_core.agents.fit import AgentPolicy, load_trained_policy
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.registry.pyfunc import CHECKPOINT_ARTIFACT

_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>[^/@]+)/?$")
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)/?$")
_LOGGED_MODEL_URI = re.compile(r"^models:/(?P<model_id>[^/@]+)/?$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[^/]+)/(?P<path>.+)$")

T = TypeVar("T")

WEIGHTS_SHA256_TAG = "weights_sha256"
CARD_SHA256_TAG = "card_sha256"
INTEGRITY_TAGS = (WEIGHTS_SHA256_TAG, CARD_SHA256_TAG)


class ModelNotFoundError(LookupError):
    """A model URI names no registered version, alias, logged model, run artifact or directory."""


class ModelIntegrityError(CheckpointError):
    """A registered version's files are not the ones registered (their SHA-256 differs from the registry's)."""


@dataclass(frozen=True)
class LoadedPolicy:
    """A policy ready to trade, with where it came from.

    Attributes:
        policy: the deterministic policy.
        normalizer: the feature normaliser it was trained with.
        env_config: the environment config it was trained with.
        card: its model card.
        uri: the URI it was loaded from.
        model_version: registered version number, if loaded through the registry.
        study: the study it came from (registry tag, else the card's), if any.
        run_id: the MLflow run that made it, if known.
    """

    policy: AgentPolicy
    normalizer: FeatureNormalizer
    env_config: EnvConfig
    card: ModelCard
    uri: str
    model_version: str | None
    study: str | None
    run_id: str | None


@dataclass(frozen=True)
class _Resolved:
    """Where a URI's files are (a storage URI or local path), and its registry version / run."""

    location: str
    local: bool
    version: ModelVersion | None
    run_id: str | None


def load_policy(
    uri: str,
    panel: MarketPanel | None,
    *,
    tracking_uri: str,
    expected_study: str | None = None,
    dst_dir: Path | None = None,
) -> LoadedPolicy:
    """Load the policy at ``uri`` for trading ``panel``.

    Args:
        uri: see the module docstring for the accepted forms.
        panel: the panel the policy will trade; its inputs must match the model card (``None``:
            checked later, by the trader on every bar).
        tracking_uri: the MLflow store (tracking and registry) to resolve ``uri`` in.
        expected_study: refuse a model from any other study.
        dst_dir: keep the downloaded files here (default: a temporary folder, removed after loading).

    Raises:
        ModelNotFoundError: the URI names nothing (the message names the URI).
        ModelMismatchError: the panel does not match the card, the registry tags contradict the
            card, or the model is from another study than ``expected_study``.
        ModelIntegrityError: a registered version's weights or card differ from the SHA-256 the
            registry recorded at registration, or it has no such record.
        CheckpointError: the files are not a checkpoint or fail their SHA-256 check.
    """
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    resolved = _resolve(client, uri)
    with _workdir(dst_dir) as workdir:
        local = checkpoint_dir(_fetch(resolved, uri, tracking_uri, workdir))
        if resolved.version is not None:
            verify_registered_files(uri, resolved.version, local)
        if panel is None:
            agent, card = load_checkpoint(local)
            policy = AgentPolicy(agent, name=f"ppo:{card.study or 'adhoc'}:{card.trial}")
            normalizer, env_config = FeatureNormalizer.from_dict(card.normalisation), EnvConfig.from_dict(card.env_config)
        else:
            policy, normalizer, env_config, card = load_trained_policy(local, panel)
    study = _check_provenance(uri, resolved.version, card, expected_study)
    return LoadedPolicy(
        policy=policy, normalizer=normalizer, env_config=env_config, card=card, uri=uri,
        model_version=str(resolved.version.version) if resolved.version else None,
        study=study, run_id=resolved.run_id,
    )


def download_model(uri: str, *, tracking_uri: str, dst_dir: Path) -> Path:
    """Download the files ``uri`` names into ``dst_dir``; return the model (or checkpoint) directory.

    The result loads with ``mlflow.pyfunc.load_model(path)`` when it is a pyfunc model.
    """
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return _fetch(_resolve(client, uri), uri, tracking_uri, Path(dst_dir))


def checkpoint_digests(directory: Path) -> dict[str, str]:
    """Return the registry's integrity tags of a checkpoint directory: SHA-256 of its weights and of its card.

    Raises:
        CheckpointError: the weights or the card file is missing.
    """
    digests = {}
    for tag, name in ((WEIGHTS_SHA256_TAG, WEIGHTS_FILE), (CARD_SHA256_TAG, CARD_FILE)):
        path = Path(directory) / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing")
        digests[tag] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def verify_registered_files(uri: str, version: ModelVersion, directory: Path) -> None:
    """Refuse ``directory`` unless its weights and card have the SHA-256 recorded on ``version``.

    Raises:
        ModelIntegrityError: a digest differs, or the version has no integrity tags.
    """
    missing = [t for t in INTEGRITY_TAGS if not version.tags.get(t)]
    if missing:
        raise ModelIntegrityError(f"{uri}: version {version.version} was registered without {', '.join(missing)}: "
                                  "its files cannot be verified; register it again")
    found = checkpoint_digests(directory)
    wrong = [f"{name} (sha256 {found[tag][:12]}..., registered {version.tags[tag][:12]}...)"
             for tag, name in ((WEIGHTS_SHA256_TAG, WEIGHTS_FILE), (CARD_SHA256_TAG, CARD_FILE))
             if found[tag] != version.tags[tag]]
    if wrong:
        raise ModelIntegrityError(f"{uri}: refused: {' and '.join(wrong)} differ from what was registered: "
                                  "the checkpoint was changed after registration")


def checkpoint_dir(local: Path) -> Path:
    """Return the checkpoint directory inside ``local``: itself, or a pyfunc model's ``checkpoint`` artifact.

    Raises:
        CheckpointError: ``local`` is neither a checkpoint nor a Cappuccino pyfunc model.
    """
    local = Path(local)
    if (local / CARD_FILE).is_file():
        return local
    if (local / "MLmodel").is_file():
        flavor = Model.load(str(local / "MLmodel")).flavors.get("python_function", {})
        artifact = (flavor.get("artifacts") or {}).get(CHECKPOINT_ARTIFACT)
        if artifact is None:
            raise CheckpointError(f"{local}: MLflow model has no {CHECKPOINT_ARTIFACT!r} artifact (not a Cappuccino policy)")
        return local / artifact["path"]
    raise CheckpointError(f"{local}: neither a checkpoint ({CARD_FILE}) nor an MLflow model (MLmodel)")


def _resolve(client: MlflowClient, uri: str) -> _Resolved:
    if match := _VERSION_URI.match(uri):
        name, number = match["name"], match["version"]
        if not number.isdigit():
            raise ModelNotFoundError(f"{uri}: {number!r} is not a version number (stages are deprecated: use an alias)")
        version = _registry_call(uri, lambda: client.get_model_version(name, number))
        return _from_version(client, uri, version)
    if match := _ALIAS_URI.match(uri):
        # MLflow reports an unknown alias as INVALID_PARAMETER_VALUE ("alias x not found").
        version = _registry_call(
            uri, lambda: client.get_model_version_by_alias(match["name"], match["alias"]),
            not_found=("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"),
        )
        return _from_version(client, uri, version)
    if match := _LOGGED_MODEL_URI.match(uri):
        logged = _registry_call(uri, lambda: client.get_logged_model(match["model_id"]))
        return _Resolved(logged.artifact_location, False, None, logged.source_run_id)
    if match := _RUNS_URI.match(uri):
        return _from_run(client, uri, match["run_id"], match["path"].strip("/"))
    if ("://" in uri and not uri.startswith("file://")) or uri.startswith(("models:", "runs:")):
        raise ModelNotFoundError(f"{uri}: not a models:/, runs:/ or local model URI")
    path = Path(unquote(urlparse(uri).path)) if uri.startswith("file://") else Path(uri)
    if not path.is_dir():
        raise ModelNotFoundError(f"{uri}: no such model directory")
    return _Resolved(str(path), True, None, None)


def _from_version(client: MlflowClient, uri: str, version: ModelVersion) -> _Resolved:
    if version.model_id:
        location = client.get_logged_model(version.model_id).artifact_location
    elif version.source.startswith("runs:/"):
        run_id, _, path = version.source.removeprefix("runs:/").partition("/")
        return _from_run(client, uri, run_id, path.strip("/"), version)
    elif version.source.startswith("models:/"):
        raise ModelNotFoundError(f"{uri}: version {version.version} points at another model URI {version.source!r}")
    else:
        location = version.source
    return _Resolved(location, False, version, version.run_id or None)


def _from_run(client: MlflowClient, uri: str, run_id: str, path: str, version: ModelVersion | None = None) -> _Resolved:
    run = _registry_call(uri, lambda: client.get_run(run_id))
    location = run.info.artifact_uri.rstrip("/") + "/" + path
    # List the run's own artifact store: client.list_artifacts(run_id, ...) also looks for
    # logged models through MLflow's *global* tracking URI.
    if mlflow.artifacts.list_artifacts(artifact_uri=location, tracking_uri=client.tracking_uri):
        return _Resolved(location, False, version, run_id)
    name, _, rest = path.partition("/")
    logged = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"name = '{name}' AND source_run_id = '{run_id}'", max_results=2
    )
    if not logged:
        raise ModelNotFoundError(f"{uri}: run {run_id} has no artifact or logged model {path!r}")
    if len(logged) > 1:
        raise ModelNotFoundError(f"{uri}: run {run_id} logged several models named {name!r}; use models:/<model_id>")
    return _Resolved(logged[0].artifact_location.rstrip("/") + (f"/{rest}" if rest else ""), False, version, run_id)


def _registry_call(uri: str, call: Callable[[], T], not_found: tuple[str, ...] = ("RESOURCE_DOES_NOT_EXIST",)) -> T:
    """Run one MLflow lookup, turning "not found" into ``ModelNotFoundError`` naming ``uri``."""
    try:
        return call()
    except MlflowException as exc:
        if exc.error_code in not_found:
            raise ModelNotFoundError(f"{uri}: {exc.message}") from exc
        raise


def _fetch(resolved: _Resolved, uri: str, tracking_uri: str, workdir: Path) -> Path:
    if resolved.local:
        return Path(resolved.location)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=resolved.location, dst_path=str(workdir), tracking_uri=tracking_uri
        )
    except (MlflowException, OSError) as exc:
        raise ModelNotFoundError(f"{uri}: cannot download {resolved.location}: {exc}") from exc
    return Path(local)


@contextmanager
def _workdir(dst_dir: Path | None) -> Iterator[Path]:
    if dst_dir is not None:
        yield Path(dst_dir)
        return
    with tempfile.TemporaryDirectory(prefix="cappuccino-model-") as tmp:
        yield Path(tmp)


def _check_provenance(uri: str, version: ModelVersion | None, card: ModelCard, expected_study: str | None) -> str | None:
    """Return the model's study; raise if registry tags contradict the card or the study is not the expected one."""
    tags = dict(version.tags) if version is not None else {}
    in_card = {
        "study": card.study,
        "trial": None if card.trial is None else str(card.trial),
        "data_hash": card.data_hash,
        "feature_spec_version": str(card.feature_spec.get("version")),
    }
    differences = [
        f"registry tag {key}={tags[key]!r} but the model card says {value!r}"
        for key, value in in_card.items()
        if key in tags and tags[key] != value
    ]
    if differences:
        raise ModelMismatchError([f"{uri}: {d}" for d in differences])
    study = tags.get("study", card.study)
    if expected_study is not None and study != expected_study:
        raise ModelMismatchError([f"{uri}: study: expected {expected_study!r}, the model is from {study!r}"])
    return study
