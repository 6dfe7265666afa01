"""The health and tournament flow runs publish their result as a markdown artifact, as the pipeline run does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from cappuccino_core.arena.admission import version_uri
from cappuccino_core.config import load_settings
from cappuccino_core.search import runner
from flows.health import HealthParams, health
from flows.tournament import TournamentParams, tournament
from tests.arena.registry_fixtures import SYMBOLS, Registry, register_random_candidate, training_study
from tests.search.conftest import fill_store


def _artifacts_of(state) -> list:
    """Every artifact of the flow run that ended in ``state``."""
    with get_client(sync_client=True) as prefect:
        return prefect.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))


def test_the_health_run_publishes_its_findings_as_a_markdown_artifact(prefect_harness, cappuccino_env) -> None:
    state = health(params=HealthParams(at=datetime(2026, 3, 1, 12, 5, tzinfo=UTC)), return_state=True)
    report = state.result()
    [artifact] = _artifacts_of(state)
    assert (artifact.key, artifact.type) == ("health", "markdown")
    assert report.findings, "a home without bars has stale data"
    headline = f"{len(report.findings)} finding{'s' if len(report.findings) > 1 else ''} (warning; 0 traders watched)"
    assert artifact.description == headline
    assert artifact.data.startswith(f"# Cappuccino health at 2026-03-01 12:05 UTC\n\n**{headline}**")
    assert "No sandbox, production or live trader to watch." in artifact.data
    for finding in report.findings:
        assert f"| {finding['level']} | {finding['check']} | {finding['subject']} |" in artifact.data


@pytest.fixture
def registry(cappuccino_env, monkeypatch) -> Registry:
    monkeypatch.setenv("CAPPUCCINO_SYMBOLS", ",".join(SYMBOLS))
    monkeypatch.setenv("CAPPUCCINO_SEARCH_LOOKBACKS", "8,12")
    settings = load_settings()
    return Registry(runner.StudyLocation.from_settings(settings), fill_store(settings.bars_dir, days=70))


def test_the_tournament_run_publishes_the_king_and_its_matches_as_a_markdown_artifact(prefect_harness, registry) -> None:
    study = training_study(registry, "artifact-study", holdout_weeks=3)
    versions = [register_random_candidate(registry, study, i, seed=30 + i) for i in range(2)]
    state = tournament(params=TournamentParams(arena="shown", window_bars=8), return_state=True)
    report = state.result()
    [artifact] = _artifacts_of(state)
    assert (artifact.key, artifact.type) == ("tournament-shown", "markdown")
    king = report.status["king"]
    assert king in {version_uri("cappuccino-ppo", v) for v in versions}
    headline = f"king {king} (streak {report.status['streak']} of 20); admitted 2, played 1 match, 0 waiting"
    assert artifact.description == headline
    assert artifact.data.startswith(f"# Cappuccino tournament, arena shown\n\n**{headline}**")
    [match] = report.played
    king_version = match["king"].rsplit("/", 1)[1]
    assert f"| 1 | v{king_version} |" in artifact.data and f"| {match['outcome']} |" in artifact.data
