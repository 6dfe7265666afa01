"""Every path that trades loads through the registry, which proves the files are the ones registered.

A candidate is registered from ``runs:/<trial run>/checkpoints/fold_<k>`` with the SHA-256 of its
weights and of its model card as version tags. Editing the stored checkpoint afterwards, even
consistently (negated weights with the card's own hash rewritten, or a card relabelled to
another study), is refused by the loader every trader uses.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import torch

from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.agents.fit import fit_agent, save_fit
from cappuccino_core.config import load_settings
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.operations.site import LifecycleSite
from cappuccino_core.registry.loader import ModelIntegrityError, ModelNotFoundError
from cappuccino_core.registry.models import DEFAULT_MODEL_NAME, register_candidate
from cappuccino_core.tracking.runs import (
    get_or_create_experiment, get_or_create_parent_run, log_artifact_dir, start_trial_run,
)
from cappuccino_core.tracking.store import artifact_root, client, ensure_store
from cappuccino_core.trading.model import load_checkpoint_model
from tests.conftest import make_panel

REF = f"models:/{DEFAULT_MODEL_NAME}/1"


@pytest.fixture
def registered(tmp_path, store_template, monkeypatch):
    """A fitted agent logged as a trial run's ``checkpoints/fold_0`` and registered as version 1."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    home = tmp_path / "home"
    (home / "mlflow").mkdir(parents=True)
    shutil.copyfile(store_template, home / "mlflow" / "mlflow.db")
    uri = f"sqlite:///{home}/mlflow/mlflow.db"
    ensure_store(uri)
    rng = np.random.default_rng(1)
    panel = make_panel(100 * np.exp(np.cumsum(rng.normal(0, 0.01, size=(300, 3)), axis=0)))
    fit = fit_agent(
        panel.rows(0, 300), env_config=EnvConfig(lookback=10, episode_bars=32),
        ppo_config=PPOConfig(total_steps=128, num_envs=4, rollout_steps=16, minibatch_size=32, hidden_sizes=(8,)),
        seed=0, created_at=datetime(2026, 1, 1, tzinfo=UTC), study="study-a", trial=3,
    )
    save_fit(fit, tmp_path / "checkpoint")
    c = client(uri)
    experiment = get_or_create_experiment(c, "study-a", artifact_root(home), description="study a")
    parent = get_or_create_parent_run(c, experiment, study="study-a", phase="trials", tags={})
    run_id = start_trial_run(c, experiment, parent, trial_number=3, tags={}, params={})
    log_artifact_dir(c, run_id, tmp_path / "checkpoint", "checkpoints/fold_0")
    version = register_candidate(c, model_uri=f"runs:/{run_id}/checkpoints/fold_0", run_id=run_id, study="study-a",
                                 trial=3, feature_spec_version=panel.feature_spec.version, data_hash=panel.data_hash)
    assert version == "1"
    stored = Path(unquote(urlparse(c.get_run(run_id).info.artifact_uri).path)) / "checkpoints" / "fold_0"
    settings = load_settings(home=home, symbols=("A0/USD", "A1/USD", "A2/USD"))
    return c, stored, LifecycleSite.from_settings(settings), tmp_path / "checkpoint"


def test_registration_records_the_sha256_of_the_weights_and_of_the_card(registered) -> None:
    c, stored, _site, _local = registered
    tags = c.get_model_version(DEFAULT_MODEL_NAME, "1").tags
    assert tags["weights_sha256"] == hashlib.sha256((stored / "actor.pt").read_bytes()).hexdigest()
    assert tags["card_sha256"] == hashlib.sha256((stored / "model_card.json").read_bytes()).hexdigest()


def test_the_trading_loader_refuses_negated_weights_whose_card_hash_was_rewritten(registered) -> None:
    _c, stored, site, _local = registered
    assert site.load_model(REF).model_id == REF  # the registered files load
    weights = torch.load(stored / "actor.pt", weights_only=True)
    buffer = io.BytesIO()
    torch.save({k: -v for k, v in weights.items()}, buffer)
    (stored / "actor.pt").write_bytes(buffer.getvalue())
    card = json.loads((stored / "model_card.json").read_text())
    card["weights_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (stored / "model_card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    load_checkpoint_model(stored)  # the directory is self-consistent: its own hash no longer proves anything

    with pytest.raises(ModelIntegrityError, match=r"actor\.pt .* differ from what was registered"):
        site.load_model(REF)


def test_the_trading_loader_refuses_a_card_relabelled_to_another_study(registered) -> None:
    _c, stored, site, _local = registered
    card = json.loads((stored / "model_card.json").read_text())
    card["study"] = "study-b"
    (stored / "model_card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    with pytest.raises(ModelIntegrityError, match=r"model_card\.json .* differ from what was registered"):
        site.load_model(REF)


def test_a_checkpoint_directory_or_run_uri_never_trades(registered) -> None:
    _c, _stored, site, local = registered
    with pytest.raises(ModelNotFoundError, match="only a registered model version"):
        site.load_model(str(local))
    with pytest.raises(ModelNotFoundError, match="only a registered model version"):
        site.load_model(f"runs:/{_c.search_model_versions()[0].run_id}/checkpoints/fold_0")


def test_a_version_registered_without_integrity_tags_is_refused(registered) -> None:
    c, _stored, site, _local = registered
    c.delete_model_version_tag(DEFAULT_MODEL_NAME, "1", "card_sha256")
    with pytest.raises(ModelIntegrityError, match="registered without card_sha256"):
        site.load_model(REF)
