"""What a person reads in MLflow's UI: experiments described and marked as model training, the model described."""

from __future__ import annotations

from cappuccino_core.registry.models import MODEL_DESCRIPTION, ensure_registered_model
from cappuccino_core.tracking.runs import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING_KIND,
    NOTE_TAG,
    get_or_create_experiment,
)
from cappuccino_core.tracking.store import artifact_root, client


def test_a_new_experiment_carries_its_description_and_is_marked_as_model_training(store_uri, tmp_path) -> None:
    c = client(store_uri)
    experiment_id = get_or_create_experiment(c, "study-b", artifact_root(tmp_path), description="Trials of study b.")
    tags = c.get_experiment(experiment_id).tags
    assert tags[NOTE_TAG] == "Trials of study b."
    assert tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND == "custom_model_development"


def test_an_experiment_made_without_tags_gets_them_when_opened_again(store_uri, tmp_path) -> None:
    c = client(store_uri)
    old = c.create_experiment("made-by-an-older-version", artifact_location=artifact_root(tmp_path))
    assert NOTE_TAG not in c.get_experiment(old).tags
    assert get_or_create_experiment(c, "made-by-an-older-version", None, description="Now described.") == old
    tags = c.get_experiment(old).tags
    assert tags[NOTE_TAG] == "Now described." and tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND


def test_the_registered_model_is_described_also_when_an_older_version_created_it(store_uri) -> None:
    c = client(store_uri)
    ensure_registered_model(c, "fresh-model")
    assert c.get_registered_model("fresh-model").description == MODEL_DESCRIPTION
    c.create_registered_model("older-model")
    assert not c.get_registered_model("older-model").description
    ensure_registered_model(c, "older-model")
    ensure_registered_model(c, "older-model")  # idempotent
    assert c.get_registered_model("older-model").description == MODEL_DESCRIPTION
    assert "king" in MODEL_DESCRIPTION and "stage" in MODEL_DESCRIPTION
