"""A fitted policy goes through MLflow and the registry and comes back as exactly the same policy.

One tiny agent is fitted per module, saved, logged under a trial run (as a plain checkpoint
directory and as a pyfunc model), registered and aliased; every way of loading it must then
reproduce its recorded validation score to the last bit, and every mismatch must be refused.
"""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime
from types import SimpleNamespace

import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pytest

from cappuccino_core.agents.checkpoint import CheckpointError, ModelMismatchError
from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.agents.fit import ValidationSet, evaluate_policy, fit_agent, save_fit
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.portfolio_env import PortfolioEnv
from cappuccino_core.registry.loader import ModelNotFoundError, download_model, load_policy
from cappuccino_core.registry.models import DEFAULT_MODEL_NAME, register_candidate, set_alias, versions_of_study
from cappuccino_core.registry.pyfunc import log_policy_model
from cappuccino_core.tracking.plots import equity_curve_png
from cappuccino_core.tracking.runs import (
    get_or_create_experiment,
    get_or_create_parent_run,
    log_artifact_dir,
    log_file,
    log_metrics,
    start_trial_run,
)
from cappuccino_core.tracking.store import artifact_root, client, ensure_store
from tests.conftest import make_panel


@pytest.fixture(scope="module")
def panel():
    """The conftest's ``random_walk_panel``, module-scoped so the agent is fitted once."""
    rng = np.random.default_rng(1)
    return make_panel(100 * np.exp(np.cumsum(rng.normal(0, 0.01, size=(600, 3)), axis=0)))


@pytest.fixture(scope="module")
def trained(panel, tmp_path_factory, store_template):
    """A fitted agent, logged under a trial run two ways, registered as version 1 with alias ``champion``."""
    home = tmp_path_factory.mktemp("home")
    (home / "mlflow").mkdir()
    shutil.copyfile(store_template, home / "mlflow" / "mlflow.db")
    uri = f"sqlite:///{home}/mlflow/mlflow.db"
    ensure_store(uri)
    validation = ValidationSet(panel.rows(391, 600), horizon=50)
    fit = fit_agent(
        panel.rows(0, 400), env_config=EnvConfig(lookback=10, episode_bars=32),
        ppo_config=PPOConfig(total_steps=256, num_envs=8, rollout_steps=16, minibatch_size=64, hidden_sizes=(16,)),
        seed=0, created_at=datetime(2026, 1, 1, tzinfo=UTC), validation=validation, study="study-a", trial=3,
    )
    card = save_fit(fit, home / "checkpoint")
    c = client(uri)
    experiment = get_or_create_experiment(c, "study-a", artifact_root(home), description="study a")
    parent = get_or_create_parent_run(c, experiment, study="study-a", phase="candidates", tags={})
    run_id = start_trial_run(c, experiment, parent, trial_number=3, tags={}, params={})
    log_metrics(c, run_id, {"val/score": fit.validation_score})
    log_artifact_dir(c, run_id, home / "checkpoint", "checkpoint")
    model_uri = log_policy_model(c, run_id, home / "checkpoint")
    version = register_candidate(
        c, model_uri=model_uri, run_id=run_id, study="study-a", trial=3,
        feature_spec_version=panel.feature_spec.version, data_hash=panel.data_hash,
    )
    set_alias(c, DEFAULT_MODEL_NAME, "champion", version)
    return SimpleNamespace(uri=uri, client=c, fit=fit, card=card, validation=validation, run_id=run_id,
                           model_uri=model_uri, version=version, home=home)


def test_the_module_panel_is_the_conftest_random_walk(panel, random_walk_panel) -> None:
    assert np.array_equal(panel.close, random_walk_panel.close)
    assert np.array_equal(panel.features, random_walk_panel.features)


def test_every_uri_of_the_registered_policy_reproduces_its_validation_score_exactly(trained, panel) -> None:
    assert trained.version == "1" and trained.fit.validation_score is not None
    recorded = trained.client.get_run(trained.run_id).data.metrics["val/score"]
    uris = {
        f"models:/{DEFAULT_MODEL_NAME}/1": "1",
        f"models:/{DEFAULT_MODEL_NAME}@champion": "1",
        trained.model_uri: None,
        f"runs:/{trained.run_id}/model": None,
        f"runs:/{trained.run_id}/checkpoint": None,
        str(trained.home / "checkpoint"): None,
    }
    for uri, version in uris.items():
        loaded = load_policy(uri, panel, tracking_uri=trained.uri, expected_study="study-a")
        score, _ = evaluate_policy(loaded.policy, trained.validation, loaded.normalizer, loaded.env_config)
        assert score == recorded, uri
        assert (loaded.model_version, loaded.study, loaded.uri) == (version, "study-a", uri)
        assert loaded.run_id == (None if uri.startswith("/") else trained.run_id)
        assert loaded.card == trained.card


def test_the_pyfunc_model_predicts_the_policys_deterministic_actions(trained, panel, tmp_path) -> None:
    loaded = load_policy(f"models:/{DEFAULT_MODEL_NAME}@champion", panel, tracking_uri=trained.uri)
    config = dataclasses.replace(loaded.env_config, num_envs=4)
    env = PortfolioEnv(trained.validation.panel, config, loaded.normalizer, starts=np.array([20, 60, 100, 140]))
    obs = env.reset()

    model = mlflow.pyfunc.load_model(str(download_model(trained.model_uri, tracking_uri=trained.uri, dst_dir=tmp_path)))
    actions = model.predict(obs.numpy())

    expected = loaded.policy.act(obs, None).numpy()
    assert actions.shape == (4, 3) and np.array_equal(actions, expected)
    assert not np.allclose(actions, actions[0])  # different observations, different actions


def test_logging_the_model_leaves_the_run_open_and_no_global_mlflow_state(trained) -> None:
    assert trained.client.get_run(trained.run_id).info.status == "RUNNING"
    assert mlflow.active_run() is None
    versions = versions_of_study(trained.client, "study-a")
    assert [str(v.version) for v in versions] == ["1"]
    tags = versions[0].tags
    assert (tags["study"], tags["trial"], tags["stage"]) == ("study-a", "3", "candidate")
    assert versions[0].run_id == trained.run_id


def test_a_model_from_another_study_is_refused(trained, panel) -> None:
    with pytest.raises(ModelMismatchError, match="expected 'study-b'.*from 'study-a'"):
        load_policy(f"models:/{DEFAULT_MODEL_NAME}/1", panel, tracking_uri=trained.uri, expected_study="study-b")
    with pytest.raises(ModelMismatchError, match="study-b"):
        load_policy(f"runs:/{trained.run_id}/checkpoint", panel, tracking_uri=trained.uri, expected_study="study-b")


def test_a_panel_with_another_feature_spec_or_symbol_set_is_refused(trained, panel) -> None:
    other_spec = dataclasses.replace(panel, feature_spec=dataclasses.replace(panel.feature_spec, version="0"))
    with pytest.raises(ModelMismatchError, match="feature spec"):
        load_policy(f"models:/{DEFAULT_MODEL_NAME}@champion", other_spec, tracking_uri=trained.uri)
    other_symbols = dataclasses.replace(panel, symbols=("A0/USD", "A1/USD", "ZZ/USD"))
    with pytest.raises(ModelMismatchError, match="symbol set"):
        load_policy(f"models:/{DEFAULT_MODEL_NAME}@champion", other_symbols, tracking_uri=trained.uri)


def test_an_unknown_alias_version_or_run_path_is_refused_naming_the_uri(trained, panel) -> None:
    for uri in (f"models:/{DEFAULT_MODEL_NAME}@production", f"models:/{DEFAULT_MODEL_NAME}/9",
                "models:/no-such-model/1", f"runs:/{trained.run_id}/nothing-here", "/no/such/dir"):
        with pytest.raises(LookupError, match=uri) as info:
            load_policy(uri, panel, tracking_uri=trained.uri)
        assert isinstance(info.value, ModelNotFoundError)


def test_registry_tags_that_contradict_the_model_card_are_refused(trained, panel) -> None:
    version = register_candidate(
        trained.client, model_uri=f"runs:/{trained.run_id}/checkpoint", run_id=trained.run_id, study="study-b",
        trial=3, feature_spec_version=panel.feature_spec.version, data_hash=panel.data_hash, model_name="mislabelled",
    )
    with pytest.raises(ModelMismatchError, match="registry tag study='study-b' but the model card says 'study-a'"):
        load_policy(f"models:/mislabelled/{version}", panel, tracking_uri=trained.uri)


def test_a_model_uri_from_another_run_cannot_be_registered_under_this_one(trained, panel) -> None:
    with pytest.raises(ValueError, match="not other-run"):
        register_candidate(
            trained.client, model_uri=trained.model_uri, run_id="other-run", study="study-a", trial=3,
            feature_spec_version=panel.feature_spec.version, data_hash=panel.data_hash,
        )


def test_the_validation_equity_chart_is_a_small_png_attached_to_the_run(trained, tmp_path) -> None:
    reports = trained.fit.validation_reports
    assert len(reports) >= 2
    png = equity_curve_png(reports, tmp_path / "equity.png", title="study-a trial 3")
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and 5_000 < len(data) < 150_000
    log_file(trained.client, trained.run_id, png, "plots")
    listed = mlflow.artifacts.list_artifacts(
        artifact_uri=trained.client.get_run(trained.run_id).info.artifact_uri + "/plots", tracking_uri=trained.uri)
    assert [(a.path, a.file_size) for a in listed] == [("plots/equity.png", len(data))]
    with pytest.raises(ValueError, match="at least one report"):
        equity_curve_png([], tmp_path / "empty.png", title="nothing")


def test_a_checkpoint_whose_weights_do_not_match_its_card_is_not_logged(trained, tmp_path) -> None:
    broken = shutil.copytree(trained.home / "checkpoint", tmp_path / "broken")
    weights = bytearray((broken / "actor.pt").read_bytes())
    weights[-10] ^= 0xFF
    (broken / "actor.pt").write_bytes(bytes(weights))
    with pytest.raises(CheckpointError, match="SHA-256"):
        log_policy_model(trained.client, trained.run_id, broken, name="broken")
    experiment = trained.client.get_run(trained.run_id).info.experiment_id
    assert not trained.client.search_logged_models([experiment], filter_string="name = 'broken'")
