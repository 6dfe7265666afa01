"""A trained policy as an MLflow ``pyfunc`` model: a thin wrapper around a checkpoint directory.

The model's only artifact is the checkpoint (``actor.pt`` + ``model_card.json``), loaded with
``load_checkpoint`` (``weights_only``, SHA-256 checked). ``predict`` maps normalised flat
observations, exactly as the environment produces them, to the deterministic actions.

Logging goes through ``MlflowClient`` into an existing run: a LoggedModel is created for the
run, the model directory is built locally by ``mlflow.pyfunc.save_model`` and uploaded to it.
This avoids ``mlflow.pyfunc.log_model``, which reads the global tracking URI, attaches the
model to the global (default) experiment unless a run is active, and would need
``mlflow.start_run(run_id=...)``, which ends the run on exit. Passing ``pip_requirements``
skips MLflow's ~2 s requirement inference.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import torch
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.models import Model, ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec

from cappuccino_core.agents.checkpoint import CARD_FILE, WEIGHTS_FILE, CheckpointError, ModelCard, load_checkpoint

CHECKPOINT_ARTIFACT = "checkpoint"
MODEL_TYPE = "cappuccino-policy"

# The model is logged as code (MLflow's "models from code"), not as a cloudpickle of the
# instance: the model directory then holds this readable file instead of an opaque pickle,
# in the spirit of loading weights with ``weights_only``. Loading needs cappuccino installed.
_MODEL_CODE = """\
# Cappuccino policy model, logged as code: see cappuccino_core/registry/pyfunc.py.
import mlflow.models

from cappuccino_core.registry.pyfunc import CappuccinoPolicyModel

mlflow.models.set_model(CappuccinoPolicyModel())
"""


class CappuccinoPolicyModel(mlflow.pyfunc.PythonModel):
    """Deterministic PPO policy over the checkpoint in artifact ``"checkpoint"``."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the checkpoint's weights (weights_only, hash-checked) and card."""
        self._agent, self._card = load_checkpoint(context.artifacts[CHECKPOINT_ARTIFACT])

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Return the deterministic actions ``[N, action_dim]`` for observations ``[N, obs_dim]``.

        Raises:
            ValueError: the input is not 2-D with ``obs_dim`` columns, or holds non-finite values.
        """
        obs = np.asarray(model_input, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self._card.obs_dim:
            raise ValueError(f"expected observations of shape [N, {self._card.obs_dim}], got {list(obs.shape)}")
        if not np.isfinite(obs).all():
            raise ValueError("observations contain NaN or infinite values")
        with torch.no_grad():
            return self._agent.act_deterministic(torch.from_numpy(obs)).numpy()


def pip_requirements() -> list[str]:
    """Pinned requirements of the pyfunc model (installed versions of torch, numpy, mlflow)."""
    return [f"{name}=={version(name)}" for name in ("torch", "numpy", "mlflow")]


def policy_signature(obs_dim: int, action_dim: int) -> ModelSignature:
    """Signature: float32 ``[-1, obs_dim]`` observations in, float32 ``[-1, action_dim]`` actions out."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, obs_dim))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, action_dim))]),
    )


def log_policy_model(
    client_or_uri: MlflowClient | str, run_id: str, checkpoint_dir: Path, *, name: str = "model"
) -> str:
    """Log ``checkpoint_dir`` as a pyfunc model of run ``run_id``; return its ``models:/<model_id>`` URI.

    The run stays as it was (no active run is started or ended). The model also resolves as
    ``runs:/<run_id>/<name>``.

    Raises:
        CheckpointError: ``checkpoint_dir`` is not a valid checkpoint.
    """
    client = MlflowClient(client_or_uri, client_or_uri) if isinstance(client_or_uri, str) else client_or_uri
    card = _verified_card(Path(checkpoint_dir))  # refuse a broken checkpoint before logging anything
    run = client.get_run(run_id)
    logged = client.create_logged_model(
        run.info.experiment_id, name=name, source_run_id=run_id, model_type=MODEL_TYPE,
        tags={"weights_sha256": card.weights_sha256},
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "model"
            code = Path(tmp) / "cappuccino_policy_model.py"
            code.write_text(_MODEL_CODE, encoding="utf-8")
            mlflow.pyfunc.save_model(
                path=str(local),
                python_model=str(code),
                artifacts={CHECKPOINT_ARTIFACT: str(Path(checkpoint_dir).resolve())},
                pip_requirements=pip_requirements(),
                signature=policy_signature(card.obs_dim, card.action_dim),
                input_example=np.zeros((1, card.obs_dim), dtype=np.float32),
                mlflow_model=Model(
                    artifact_path=logged.artifact_location, model_uuid=logged.model_id,
                    run_id=run_id, model_id=logged.model_id,
                ),
            )
            client.log_model_artifacts(logged.model_id, str(local))
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return f"models:/{logged.model_id}"


def _verified_card(directory: Path) -> ModelCard:
    """Read a checkpoint's card and check its weights' SHA-256, without building the network.

    (``load_checkpoint`` also builds and initialises the network, tens of ms of wasted work here;
    the model's ``load_context`` still loads through it.)
    """
    try:
        card = ModelCard.from_dict(json.loads((directory / CARD_FILE).read_text(encoding="utf-8")))
        digest = hashlib.sha256((directory / WEIGHTS_FILE).read_bytes()).hexdigest()
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{directory}: not a readable checkpoint: {exc}") from exc
    if digest != card.weights_sha256:
        raise CheckpointError(f"{directory / WEIGHTS_FILE}: weights do not match the model card's SHA-256")
    return card
