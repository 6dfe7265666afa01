"""The MLflow mirror matches the database: a run per match, ``arena_status`` tags, the ``king`` alias.

Players are scripted (tests.arena.arena_scenarios); their ids are real versions of a registered
model, so the mirror tags and aliases real registry entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cappuccino_core.arena.admission import STATUS_TAG, version_uri
from cappuccino_core.arena.config import ArenaConfig
from cappuccino_core.arena.mirror import ARENA_DESCRIPTION, ARENA_TAG, KING_ALIAS, MATCH_ID_TAG, ArenaMirror, mirror_match, mirror_pending
from cappuccino_core.arena.state import EntrantStatus
from cappuccino_core.arena.store import ArenaStore
from cappuccino_core.arena.tournament import Arena
from cappuccino_core.clock import FixedClock
from cappuccino_core.db import create_schema, make_engine, session_factory
from cappuccino_core.tracking.runs import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, NOTE_TAG
from cappuccino_core.tracking.store import ensure_store
from tests.arena.arena_scenarios import (
    ENV,
    RESUME_CONFIG,
    T0,
    Oracle,
    PolicyBook,
    RandomWeights,
    make_market,
    resume_players,
)


class InjectedCrash(RuntimeError):
    """Stands for MLflow (or the process) failing at the point it is raised."""


@pytest.fixture(scope="module")
def market():
    return make_market(seed=7, plant_strength=1.0)


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory) -> str:
    """One MLflow store for the module (creating one costs seconds); tests use their own model and arena."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mirror') / 'mlflow.db'}"
    ensure_store(uri)
    return uri


@dataclass(frozen=True)
class Site:
    """An arena database, and this test's registered model (its name is also the arena id)."""

    store: ArenaStore
    client: MlflowClient
    path: Path
    model: str

    def register(self, players: dict) -> PolicyBook:
        """One model version per scripted player (in order); return the book keyed by version URI."""
        source = self.path / "source"
        source.mkdir(exist_ok=True)
        book = {}
        for policy in players.values():
            version = self.client.create_model_version(self.model, source=str(source),
                                                       tags={"stage": "candidate", "study": "s"})
            book[version_uri(self.model, version.version)] = policy
        return PolicyBook(book)

    def arena(self, config: ArenaConfig = RESUME_CONFIG) -> Arena:
        return Arena(self.store, self.model, config, clock=FixedClock(T0))

    def enter(self, book: PolicyBook) -> None:
        arena = self.arena()
        for candidate in book.policies:
            arena.register(candidate, registered_at=T0, study="s")

    def mirror(self) -> ArenaMirror:
        return ArenaMirror(self.client, model_name=self.model, artifact_location=(self.path / "artifacts").as_uri())

    def pending(self, mirror: ArenaMirror) -> int:
        return mirror_pending(self.store, self.model, mirror)

    def alias(self) -> str | None:
        version = self.client.get_registered_model(self.model).aliases.get(KING_ALIAS)
        return None if version is None else version_uri(self.model, version)


@pytest.fixture
def site(tmp_path, mlflow_uri, request) -> Site:
    model = f"m-{request.node.name[5:45]}"
    client = MlflowClient(mlflow_uri, mlflow_uri)
    client.create_registered_model(model)
    engine = make_engine(f"sqlite:///{tmp_path / 'arena.db'}")
    create_schema(engine)
    return Site(ArenaStore(session_factory(engine)), client, tmp_path, model)


def assert_mirror_matches_database(site: Site) -> None:
    store, client, mirror = site.store, site.client, site.mirror()
    status, log = store.status(site.model), store.match_log(site.model)
    runs = mirror.runs(site.model)
    assert [int(r.data.params["match_number"]) for r in runs] == [m.match_number for m in log]  # one run per match
    for run, match in zip(runs, log):
        params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
        assert (params["king"], params["challenger"], params["window_seed"]) == (match.king_id, match.challenger_id, str(match.seed))
        assert (tags["winner"], tags["outcome"], metrics["streak"]) == (match.winner_id, str(match.outcome), match.streak_after)
        for who, score in (("king", match.king_score), ("challenger", match.challenger_score)):
            if score is None:
                assert f"{who}_score" not in metrics and f"metric_undefined.{who}_score" in tags
            else:
                assert metrics[f"{who}_score"] == pytest.approx(score, rel=1e-12)
        assert run.info.status == "FINISHED"
        assert run.info.start_time <= run.info.end_time  # never a negative duration in the UI
        assert run.info.end_time >= int(match.played_at.timestamp() * 1000)
        assert run.data.tags[NOTE_TAG].startswith(f"Match {match.match_number} of arena {site.model}")
    assert len({r.info.run_name for r in runs}) == len(runs)
    experiment = client.get_experiment(mirror.experiment_id)
    assert experiment.tags[NOTE_TAG] == ARENA_DESCRIPTION
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    expected = {EntrantStatus.KING: "king", EntrantStatus.ELIMINATED: "eliminated", EntrantStatus.PROMOTED: "promoted"}
    for entrant in status.entrants:
        version = client.get_model_version(site.model, entrant.candidate_id.rsplit("/", 1)[1])
        assert version.tags.get(STATUS_TAG) == expected.get(entrant.status), entrant.candidate_id
    assert site.alias() == status.king
    assert store.unmirrored(site.model) == []


def test_every_match_is_a_run_and_the_king_alias_follows_the_crown(site, market) -> None:
    book = site.register(resume_players(market))
    site.enter(book)
    mirror = site.mirror()
    aliases = []

    def on_match(result) -> None:
        mirror_match(site.store, mirror, result)
        aliases.append((result.king_after, site.alias()))

    played = site.arena().play_pending(book.load, market.panel, ENV, on_match=on_match)
    site.pending(mirror)  # the king crowned after the last promotion or rejection

    assert any(r.promoted_id for r in played) and any(r.rejected_id for r in played)
    assert len({king for king, _ in aliases}) > 3  # the crown moved several times
    assert all(alias == king for king, alias in aliases)  # after each match: the alias is on its king, or gone
    assert any(king is None for king, _ in aliases)
    assert_mirror_matches_database(site)
    assert site.pending(mirror) == 0  # nothing to redo
    assert len(mirror.runs(site.model)) == len(played)


def test_the_alias_is_removed_when_the_last_king_is_promoted_and_no_one_is_left(site, market) -> None:
    players = {"weak": RandomWeights(seed=3, hold=1), "oracle": Oracle(market)}
    players |= {f"r{i}": RandomWeights(seed=30 + i, hold=2) for i in range(3)}
    book = site.register(players)
    site.enter(book)
    mirror = site.mirror()
    arena = site.arena()
    played = arena.play_pending(book.load, market.panel, ENV, on_match=lambda r: mirror_match(site.store, mirror, r))
    site.pending(mirror)

    assert played[-1].promoted_id == version_uri(site.model, 2)  # the oracle, on its 4th straight win
    assert arena.status().king is None and arena.status().waiting == ()
    assert site.alias() is None
    assert site.client.get_model_version(site.model, "2").tags[STATUS_TAG] == "promoted"
    assert_mirror_matches_database(site)


def test_a_mirror_that_fails_after_the_database_commit_is_repaired_on_the_next_run(site, market) -> None:
    book = site.register(resume_players(market))
    site.enter(book)
    # Each process loses MLflow once, at another step: after a run was created and its values
    # logged (not yet marked complete), between a run and the version tags, at an alias move.
    schedule = [("set_tag", 3), ("set_model_version_tag", 4), ("set_registered_model_alias", 1)]
    crashes = 0
    while True:
        arena = site.arena()  # every restart is a fresh process: state from the database
        mirror = site.mirror()
        if crashes < len(schedule):
            mirror.client = _Flaky(site.client, *schedule[crashes])
        try:
            site.pending(mirror)  # what the flow does first: repair
            arena.play_pending(book.load, market.panel, ENV, on_match=lambda r: mirror_match(site.store, mirror, r))
            site.pending(mirror)
        except InjectedCrash:
            crashes += 1
            continue
        break

    assert crashes == len(schedule)
    assert arena.status().waiting == ()
    assert_mirror_matches_database(site)


class _Flaky:
    """An MlflowClient whose method ``name`` raises on its ``at``-th call (everything else passes through)."""

    def __init__(self, inner: MlflowClient, name: str, at: int) -> None:
        self._inner, self._name, self._at, self._calls = inner, name, at, 0

    def __getattr__(self, name: str):
        method = getattr(self._inner, name)
        if name != self._name:
            return method

        def flaky(*args, **kwargs):
            self._calls += 1
            if self._calls == self._at:
                raise InjectedCrash(f"MLflow died in {name} (call {self._calls})")
            return method(*args, **kwargs)
        return flaky


def test_a_run_left_half_written_is_completed_not_duplicated(site, market) -> None:
    book = site.register(resume_players(market))
    site.enter(book)
    site.arena().play_pending(book.load, market.panel, ENV, max_matches=2)
    mirror = site.mirror()
    first = site.store.unmirrored(site.model)[0]
    # A previous mirror created the run of match 1 and died before logging anything on it.
    site.client.create_run(mirror.experiment_id, tags={ARENA_TAG: site.model, MATCH_ID_TAG: first.match_id})
    assert site.pending(mirror) == 2
    assert_mirror_matches_database(site)
