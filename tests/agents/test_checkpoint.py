"""Checkpoints: round trip, tamper and corruption detection, compatibility checks."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
import torch

from cappuccino_core.agents.checkpoint import (
    CARD_FILE,
    CARD_FORMAT_VERSION,
    WEIGHTS_FILE,
    CheckpointError,
    ModelCard,
    ModelMismatchError,
    check_compatible,
    library_versions,
    load_checkpoint,
    save_checkpoint,
)
from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.agents.networks import ActorCritic, AssetEncoderActorCritic, SharedTrunkActorCritic
from cappuccino_core.accounting import ACTION_MAPPING
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.env.protocol import ObservationLayout
from cappuccino_core.features.spec import FeatureSpec

SYMBOLS = ("BTC/USD", "ETH/USD", "LTC/USD")
OBS_DIM, ACTION_DIM, HIDDEN = 1 + 3 + 2 * 3 * 11, 3, (16, 8)


def make_agent(seed: int = 0) -> ActorCritic:
    agent = ActorCritic(OBS_DIM, ACTION_DIM, HIDDEN, "relu",
                        generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # move the mean away from ~0 so actions differ between models
        agent.actor_mean[-1].weight.mul_(50.0)
    return agent


def make_card(**overrides) -> ModelCard:
    settings = dict(
        feature_spec=FeatureSpec().to_dict(), interval="1h", lookback=2, symbols=SYMBOLS,
        normalisation=FeatureNormalizer.identity(3, 11).to_dict(),
        action_mapping=dict(ACTION_MAPPING), env_config=EnvConfig(lookback=2).to_dict(),
        ppo_config=PPOConfig(hidden_sizes=HIDDEN, activation="relu").to_dict(),
        obs_dim=OBS_DIM, action_dim=ACTION_DIM, hidden_sizes=HIDDEN, data_hash="abc123",
        seed=7, library_versions=library_versions(), created_at="2026-05-09T12:00:00+00:00",
        study="study-1", trial=3,
    )
    settings.update(overrides)
    return ModelCard(**settings)


@pytest.fixture
def saved(tmp_path):
    agent = make_agent()
    card = save_checkpoint(tmp_path / "ckpt", agent, make_card())
    return tmp_path / "ckpt", agent, card


def test_checkpoint_round_trip_gives_identical_actions_and_card(saved):
    path, agent, card = saved
    loaded, loaded_card = load_checkpoint(path)
    obs = torch.randn(32, OBS_DIM, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded.act_deterministic(obs), agent.act_deterministic(obs))
    assert torch.equal(loaded.get_value(obs), agent.get_value(obs))
    assert loaded_card == card
    assert card.weights_sha256 == hashlib.sha256((path / WEIGHTS_FILE).read_bytes()).hexdigest()
    assert card.symbols == SYMBOLS and card.hidden_sizes == HIDDEN  # tuples again after JSON
    assert not torch.equal(make_agent(seed=1).act_deterministic(obs), agent.act_deterministic(obs))


def test_loading_refuses_weights_that_were_tampered_with(saved):
    path, agent, _ = saved
    other = make_agent(seed=5)
    torch.save(other.state_dict(), path / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match="weights file does not match its model card"):
        load_checkpoint(path)


def test_loading_refuses_a_truncated_weights_file_naming_it(saved):
    path, _, _ = saved
    data = (path / WEIGHTS_FILE).read_bytes()
    (path / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"actor\.pt.*does not match"):
        load_checkpoint(path)


def test_loading_a_corrupt_weights_file_whose_hash_matches_raises_checkpoint_error(saved):
    path, _, _ = saved
    data = (path / WEIGHTS_FILE).read_bytes()[:200]
    (path / WEIGHTS_FILE).write_bytes(data)
    card = json.loads((path / CARD_FILE).read_text())
    card["weights_sha256"] = hashlib.sha256(data).hexdigest()
    (path / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"actor\.pt: weights file is corrupt"):
        load_checkpoint(path)


def test_loading_without_a_model_card_says_so(saved):
    path, _, _ = saved
    (path / CARD_FILE).unlink()
    with pytest.raises(CheckpointError, match="model card is missing"):
        load_checkpoint(path)


def test_loading_without_weights_says_so(saved):
    path, _, _ = saved
    (path / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match="weights file is missing"):
        load_checkpoint(path)


def test_loading_an_unreadable_model_card_names_it(saved):
    path, _, _ = saved
    (path / CARD_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="model_card.json: model card is unreadable"):
        load_checkpoint(path)


def test_loading_a_card_with_missing_fields_names_them(saved):
    path, _, _ = saved
    card = json.loads((path / CARD_FILE).read_text())
    del card["symbols"]
    (path / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="symbols"):
        load_checkpoint(path)


def test_saving_refuses_to_overwrite_an_existing_checkpoint_unless_asked(saved):
    path, agent, _ = saved
    with pytest.raises(FileExistsError):
        save_checkpoint(path, agent, make_card())
    save_checkpoint(path, make_agent(seed=2), make_card(), overwrite=True)
    loaded, _ = load_checkpoint(path)
    assert torch.equal(loaded.actor_logstd, make_agent(seed=2).actor_logstd)


def test_saving_refuses_a_card_that_does_not_describe_the_agent(tmp_path):
    with pytest.raises(ValueError, match="hidden_sizes"):
        save_checkpoint(tmp_path / "x", make_agent(), make_card(hidden_sizes=(64, 64)))
    assert not (tmp_path / "x" / CARD_FILE).exists()


def test_model_card_requires_a_utc_aware_creation_time():
    with pytest.raises(ValueError, match="created_at"):
        make_card(created_at="2026-05-09T12:00:00")
    with pytest.raises(ValueError, match="created_at"):
        make_card(created_at="yesterday")


def test_compatible_inputs_pass_the_check(saved):
    _, _, card = saved
    check_compatible(card, feature_spec=FeatureSpec(), symbols=list(SYMBOLS), interval="1h",
                     lookback=2)


def test_compatibility_check_names_a_different_feature_spec(saved):
    _, _, card = saved
    newer = FeatureSpec(version="2")
    with pytest.raises(ModelMismatchError, match="feature spec version") as info:
        check_compatible(card, feature_spec=newer, symbols=SYMBOLS)
    assert any("fingerprint" in d for d in info.value.differences)
    changed_params = FeatureSpec(params={**FeatureSpec().params, "rsi_period": 21})
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        check_compatible(card, feature_spec=changed_params, symbols=SYMBOLS)


def test_compatibility_check_names_a_different_symbol_set_or_order(saved):
    _, _, card = saved
    with pytest.raises(ModelMismatchError, match=r"symbol set.*missing \['LTC/USD'\].*"
                                                 r"extra \['UNI/USD'\]"):
        check_compatible(card, feature_spec=FeatureSpec(),
                         symbols=("BTC/USD", "ETH/USD", "UNI/USD"))
    with pytest.raises(ModelMismatchError, match="symbol order"):
        check_compatible(card, feature_spec=FeatureSpec(), symbols=tuple(reversed(SYMBOLS)))


def test_compatibility_check_lists_every_difference_at_once(saved):
    _, _, card = saved
    with pytest.raises(ModelMismatchError) as info:
        check_compatible(replace(card), feature_spec=FeatureSpec(), symbols=SYMBOLS,
                         interval="4h", lookback=60)
    assert len(info.value.differences) == 2
    assert "interval" in str(info.value) and "lookback" in str(info.value)


# --- architectures and card formats -------------------------------------------------------------

def _encoder_agent(seed: int = 0) -> AssetEncoderActorCritic:
    layout = ObservationLayout(num_assets=3, lookback=2, num_features=11)
    agent = AssetEncoderActorCritic(layout, ACTION_DIM, HIDDEN, "relu", encoder_sizes=(8,),
                                    generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        agent.actor_mean[-1].weight.mul_(50.0)
    return agent


def test_an_asset_encoder_checkpoint_round_trips_with_its_architecture(tmp_path):
    agent = _encoder_agent()
    card = save_checkpoint(tmp_path / "enc", agent, make_card(architecture=agent.describe()))
    loaded, loaded_card = load_checkpoint(tmp_path / "enc")
    obs = torch.randn(16, OBS_DIM, generator=torch.Generator().manual_seed(1))
    assert isinstance(loaded, AssetEncoderActorCritic) and loaded_card == card
    assert card.format_version == CARD_FORMAT_VERSION == 2
    assert torch.equal(loaded.act_deterministic(obs), agent.act_deterministic(obs))
    assert torch.equal(loaded.get_value(obs), agent.get_value(obs))


def test_a_shared_trunk_checkpoint_round_trips_with_its_architecture(tmp_path):
    agent = SharedTrunkActorCritic(OBS_DIM, ACTION_DIM, HIDDEN, "relu", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        agent.actor_mean[-1].weight.mul_(50.0)
    card = save_checkpoint(tmp_path / "trunk", agent, make_card(architecture=agent.describe()))
    loaded, loaded_card = load_checkpoint(tmp_path / "trunk")
    obs = torch.randn(16, OBS_DIM, generator=torch.Generator().manual_seed(1))
    assert isinstance(loaded, SharedTrunkActorCritic) and loaded_card.network == {"kind": "shared_trunk"}
    assert torch.equal(loaded.act_deterministic(obs), agent.act_deterministic(obs))
    assert torch.equal(loaded.get_value(obs), agent.get_value(obs))


def test_a_format_1_card_loads_with_the_dense_mlp_it_was_trained_with(saved):
    path, agent, _ = saved
    card = json.loads((path / CARD_FILE).read_text())
    del card["architecture"]  # what cards looked like before format 2
    card["format_version"] = 1
    (path / CARD_FILE).write_text(json.dumps(card))
    loaded, loaded_card = load_checkpoint(path)
    obs = torch.randn(8, OBS_DIM, generator=torch.Generator().manual_seed(2))
    assert isinstance(loaded, ActorCritic) and loaded_card.network == {"kind": "mlp"}
    assert torch.equal(loaded.act_deterministic(obs), agent.act_deterministic(obs))


def test_loading_refuses_a_card_of_a_newer_format_in_one_line(saved):
    path, _, _ = saved
    card = json.loads((path / CARD_FILE).read_text())
    card["format_version"] = CARD_FORMAT_VERSION + 1
    (path / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"model_card\.json: model card format 3 is newer") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_loading_refuses_an_unknown_architecture_naming_it(saved):
    path, _, _ = saved
    card = json.loads((path / CARD_FILE).read_text())
    card["architecture"] = {"kind": "transformer"}
    (path / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="unknown network architecture 'transformer'"):
        load_checkpoint(path)


def test_saving_refuses_a_card_that_names_another_architecture(tmp_path):
    with pytest.raises(ValueError, match="architecture"):
        save_checkpoint(tmp_path / "x", _encoder_agent(), make_card())  # card says the dense MLP
    assert not (tmp_path / "x" / CARD_FILE).exists()
