"""The ``tournament`` flow under Prefect's test harness: candidates from two studies, three runs."""

from __future__ import annotations

import pytest

from cappuccino_core.arena.admission import STATUS_TAG, version_uri
from cappuccino_core.arena.mirror import ARENA_EXPERIMENT, ARENA_TAG, KING_ALIAS
from cappuccino_core.arena.service import arena_status
from cappuccino_core.config import load_settings
from cappuccino_core.search import runner
from flows.tournament import TournamentParams, tournament
from tests.arena.registry_fixtures import SYMBOLS, Registry, register_random_candidate, training_study
from tests.search.conftest import fill_store

MODEL = "cappuccino-ppo"


@pytest.fixture
def registry(cappuccino_env, monkeypatch) -> Registry:
    """70 days of synthetic 1h bars in the home's store; candidates are registered by the test."""
    monkeypatch.setenv("CAPPUCCINO_SYMBOLS", ",".join(SYMBOLS))
    monkeypatch.setenv("CAPPUCCINO_SEARCH_LOOKBACKS", "8,12")
    settings = load_settings()
    return Registry(runner.StudyLocation.from_settings(settings), fill_store(settings.bars_dir, days=70))


def test_the_flow_admits_new_candidates_plays_pending_matches_and_mirrors_them(prefect_harness, registry) -> None:
    first = training_study(registry, "train-a", holdout_weeks=3)
    versions = [register_random_candidate(registry, first, i, seed=i) for i in range(3)]

    report = tournament(params=TournamentParams(window_bars=8))
    assert report.admitted == [version_uri(MODEL, v) for v in versions]
    assert [m["challenger"] for m in report.played] == report.admitted[1:]
    assert report.status["king"] == report.played[-1]["winner"] and report.status["waiting"] == 0
    assert report.status["eliminated"] == 2 and report.status["unmirrored_matches"] == 0

    later = training_study(registry, "train-b", holdout_weeks=2)  # a later study's candidates keep entering
    newcomers = [register_random_candidate(registry, later, i, seed=10 + i) for i in range(2)]
    second = tournament(params=TournamentParams(window_bars=8))
    assert second.admitted == [version_uri(MODEL, v) for v in newcomers]
    assert [m["match"] for m in second.played] == [3, 4] and {m["market"] for m in second.played} == {"train-b"}

    again = tournament(params=TournamentParams(window_bars=8))  # nothing new: nothing happens
    assert (again.admitted, again.played, again.repaired_mirror) == ([], [], 0)

    status = arena_status(load_settings())
    assert status["matches_played"] == 4 and status["king"] == second.played[-1]["winner"]
    assert [m["match"] for m in status["last_matches"]] == [4, 3, 2, 1]
    client = registry.client
    king_version = client.get_registered_model(MODEL).aliases[KING_ALIAS]
    assert version_uri(MODEL, king_version) == status["king"]
    assert client.get_model_version(MODEL, king_version).tags[STATUS_TAG] == "king"
    experiment = client.get_experiment_by_name(ARENA_EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], f"tags.`{ARENA_TAG}` = 'main'")
    assert sorted(int(r.data.params["match_number"]) for r in runs) == [1, 2, 3, 4]
    eliminated = [v for v in versions + newcomers if version_uri(MODEL, v) != status["king"]]
    assert {client.get_model_version(MODEL, v).tags[STATUS_TAG] for v in eliminated} == {"eliminated"}


def test_the_flow_refuses_an_arena_reopened_with_other_rules(prefect_harness, registry) -> None:
    tournament(params=TournamentParams(arena="strict", window_bars=8))
    with pytest.raises(ValueError, match="other rules"):
        tournament(params=TournamentParams(arena="strict", window_bars=8, promotion_streak=5))
