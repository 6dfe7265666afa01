"""The whole pipeline on a tiny budget under Prefect's harness: every artifact exists and they agree.

One run on a small synthetic market with a strong planted edge (ingest → gate → timeframe search →
training → tournament → offline sandbox replay → promotion → green light → report), then a
failing stage, then a re-run that resumes. The arena's streak is 2 here (the rule of 20 is
the arena's own tests' business); everything else is the product's default path.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowFilter, FlowFilterName

import tasks.pipeline
from cappuccino_core.config import RunOverrides, settings_for
from cappuccino_core.db import default_database_url, make_engine
from cappuccino_core.lifecycle.stages import Role, Stage
from cappuccino_core.pipeline.verdict import pipeline_verdict
from cappuccino_core.lifecycle.store import LifecycleStore
from cappuccino_core.registry.models import MODEL_DESCRIPTION, version_uri, versions_of_study
from cappuccino_core.search import runner
from cappuccino_core.tracking.runs import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, NOTE_TAG
from cappuccino_core.tracking.store import tracking_uri
from flows.pipeline import STAGES, PipelineParams, PipelineStageError, pipeline

TINY = RunOverrides(
    history_days=180, synthetic_plant_strength=2.0, holdout_weeks=3.0, replay_weeks=1.0,
    search_intervals=["1h"], search_lookbacks=[10, 20], timeframe_trials=2, timeframe_steps=5120,
    train_trials=6, train_steps=40_960, train_folds=1, train_envs=64, prune_trials=False, candidates=6,
    sandbox_days=2.0,
)
PARAMS = PipelineParams(name="tiny", promotion_streak=2, overrides=TINY)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pipeline") / "home"


@pytest.fixture
def env(home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("CAPPUCCINO_HOME", str(home))
    monkeypatch.setenv("CAPPUCCINO_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home


def _counts(home: Path) -> dict[str, int]:
    settings = settings_for(TINY)
    loc = runner.StudyLocation.from_settings(settings)
    client = MlflowClient(tracking_uri(home))
    return {"timeframe_trials": len(runner.read_study(loc, "tiny-timeframe").trials),
            "train_trials": len(runner.read_study(loc, "tiny-train").trials),
            "versions": len(versions_of_study(client, "tiny-train", settings.model_name)),
            "pipeline_runs": len(client.search_runs([client.get_experiment_by_name("pipeline").experiment_id]))}


@pytest.mark.slow
def test_the_pipeline_runs_every_stage_and_its_records_agree(prefect_harness, env: Path) -> None:
    report = pipeline(params=PARAMS)

    assert list(report.stage_seconds) == list(STAGES)
    assert report.mode == "offline replay"
    settings = settings_for(TINY)
    loc = runner.StudyLocation.from_settings(settings)
    client = MlflowClient(tracking_uri(env))

    # Trials: Optuna, the summary and MLflow agree, one child run per trial in every study.
    for phase, study_name in (("timeframe", report.timeframe["study"]), ("training", report.training["study"])):
        study = runner.read_study(loc, study_name)
        summary = report.timeframe["summary"] if phase == "timeframe" else report.training["summary"]
        assert summary["total_trials"] == len(study.trials) == summary["cap"]
        experiment = client.get_experiment_by_name(study_name)
        runs = client.search_runs([experiment.experiment_id], "tags.`cappuccino.trial` != ''", max_results=1000)
        trial_runs = [r for r in runs if r.data.tags.get("cappuccino.role") != "candidate"]
        assert sorted(int(r.data.tags["cappuccino.trial"]) for r in trial_runs) == [t.number for t in study.trials]

    # Candidates: registered versions are the validated networks of the best trials with evidence, in the arena.
    versions = versions_of_study(client, report.training["study"], settings.model_name)
    assert [int(v.version) for v in versions] == [int(c["version"]) for c in report.training["candidates"]]
    shown = report.training["summary"]["with_evidence"]
    assert len(versions) == min(shown, TINY.candidates) >= 3  # on a strong planted edge the trials learn
    assert all(v.tags["provenance"] == "validated_fold" for v in versions)
    assert report.training["summary"]["min_ppo_updates"] >= 20
    assert report.training["summary"]["selection_n"] == len(versions)
    arena = report.arena
    assert arena["matches_played"] == len(arena["history"]) >= 2
    model = client.get_registered_model(settings.model_name)
    if arena["king"] is not None:
        name, version = arena["king"].removeprefix("models:/").rsplit("/", 1)
        assert str(model.aliases.get("king")) == version

    # A promoted model walks sandbox -> production on the replay bars (the replay itself is tested
    # bar by bar in tests/lifecycle/test_replay_lifecycle.py); without one, nothing enters the sandbox.
    store = LifecycleStore(make_engine(default_database_url(env)))
    sandbox = report.sandbox
    production = store.holder(Role.PRODUCTION)
    assert production == sandbox["production"]
    assert store.holder(Role.LIVE) is None  # the pipeline never moves a model to live
    if not arena["promoted_here"]:
        assert sandbox["admitted"] == [] and sandbox["sandbox_results"] == [] and production is None
        assert report.green_light["status"] == "no_production"
        assert all(m["rejected"] or m["streak"] < PARAMS.promotion_streak for m in arena["history"])
    else:
        result = sandbox["sandbox_results"][0]
        assert result["model_id"] in arena["promoted_here"]
        assert {b["name"] for b in result["baselines"]} >= {"buy_and_hold", "momentum", "mean_reversion"}
        assert all(b["metrics"]["bars"] == result["bars"] - 1 for b in result["baselines"])
    if production is not None:
        assert store.stage_of(production) is Stage.PRODUCTION
        name, version = production.removeprefix("models:/").rsplit("/", 1)
        assert str(model.aliases.get("production")) == version
        assert client.get_model_version(name, version).tags["stage"] == "production"
        assert sandbox["production_results"]["bars"] > 0
        decision = report.green_light["decision"]
        assert {r["name"] for r in decision["rules"]} >= {"alpha", "sharpe", "max_drawdown", "errors"}
        assert report.green_light["status"] in ("waiting", "refused")  # no live configuration here

    # The report: files on disk and in MLflow's pipeline run, the summary as returned.
    run = client.get_run(report.report["mlflow_run_id"])
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/report.html", "report/summary.json", "report/tournament.png", "report/equity.png"} <= logged
    holdout = report.holdout  # drawn whether or not anything reached the sandbox
    shown = arena["edge_tested_king"] or (arena["king"] if arena["king_study"] == report.training["study"] else None)
    assert holdout["model_id"] == shown and holdout["study"] == report.training["study"]
    assert [b["name"] for b in holdout["baselines"]] == ["buy_and_hold", "momentum", "mean_reversion", "sixty_forty"]
    if shown is not None:
        assert len(holdout["curve"]["equity"]) == holdout["bars"] == len(holdout["baselines"][0]["curve"]["equity"])
    verdict = pipeline_verdict(report.model_dump(mode="json"))
    page = (Path(report.report["folder"]) / "report.html").read_text()
    assert page.split("<body>", 1)[1].lstrip().startswith("<p class='verdict")
    assert html.escape(verdict.headline) in page.split("<h1>", 1)[0]
    assert run.data.tags["mlflow.note.content"] == verdict.headline
    saved = json.loads((Path(report.report["folder"]) / "summary.json").read_text())
    assert saved["training"]["summary"]["total_trials"] == report.training["summary"]["total_trials"]
    assert run.data.metrics["train/trials_complete"] == report.training["summary"]["trials_by_state"]["COMPLETE"]

    assert_every_run_is_ended_and_described(client)

    # Prefect recorded the run and its subflows, and the verdict as a markdown artifact of the pipeline run.
    with get_client(sync_client=True) as prefect:
        names = {f.name for f in prefect.read_flows(flow_filter=FlowFilter(name=FlowFilterName(
            any_=["pipeline", "ingest", "timeframe-search", "train", "tournament"])))}
        artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["pipeline-tiny"])))
        flow_of_artifact = prefect.read_flow(prefect.read_flow_run(artifacts[-1].flow_run_id).flow_id).name
    assert names == {"pipeline", "ingest", "timeframe-search", "train", "tournament"}
    assert len(artifacts) == 1 and artifacts[0].type == "markdown" and flow_of_artifact == "pipeline"
    assert artifacts[0].data.startswith(f"# Cappuccino pipeline tiny\n\n**{verdict.headline}**")
    assert artifacts[0].description == verdict.headline


@pytest.mark.slow
def test_a_failed_stage_names_itself_keeps_what_was_done_and_a_rerun_resumes(
        prefect_harness, env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _counts(env)  # the run of the test above, in the same home

    def broken(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(tasks.pipeline, "open_study_replay", broken)
        with pytest.raises(PipelineStageError, match="'sandbox' failed: OSError: disk full") as failed:
            pipeline(params=PARAMS)
    assert failed.value.stage == "sandbox"
    assert _counts(env) == before  # no trial, version or report added; nothing lost

    again = pipeline(params=PARAMS)

    after = _counts(env)
    assert {k: after[k] for k in ("timeframe_trials", "train_trials", "versions")} == \
        {k: before[k] for k in ("timeframe_trials", "train_trials", "versions")}
    assert after["pipeline_runs"] == before["pipeline_runs"] + 1
    assert_every_run_is_ended_and_described(MlflowClient(tracking_uri(env)))  # the rerun's report run has its own name
    assert again.arena["matches_played"] == len(again.arena["history"])
    assert again.sandbox["admitted"] == []  # already in the sandbox (or beyond) from the first run
    assert again.sandbox["production"] == before_production(env)


def assert_every_run_is_ended_and_described(client: MlflowClient) -> None:
    """What MLflow's UI shows: no run left RUNNING, no negative duration, distinct names, described experiments."""
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    assert {"pipeline", "arena", "tiny-timeframe", "tiny-train"} <= {e.name for e in experiments}
    for experiment in experiments:
        assert experiment.tags.get(NOTE_TAG), f"experiment {experiment.name} has no description"
        assert experiment.tags.get(EXPERIMENT_KIND_TAG) == MODEL_TRAINING_KIND, experiment.name
        runs = client.search_runs([experiment.experiment_id], max_results=10_000)
        assert runs, experiment.name
        for run in runs:
            assert run.info.status in ("FINISHED", "FAILED", "KILLED"), (experiment.name, run.info.run_name, run.info.status)
            assert run.info.start_time <= run.info.end_time, (experiment.name, run.info.run_name)
        names = [r.info.run_name for r in runs]
        assert len(set(names)) == len(names), (experiment.name, sorted(names))
    assert client.get_registered_model(settings_for(TINY).model_name).description == MODEL_DESCRIPTION


def before_production(home: Path) -> str | None:
    return LifecycleStore(make_engine(default_database_url(home))).holder(Role.PRODUCTION)


@pytest.mark.slow
def test_on_a_market_without_an_edge_no_trial_enters_the_arena_and_the_run_says_so(
        prefect_harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "no-edge-home"
    monkeypatch.setenv("CAPPUCCINO_HOME", str(home))
    monkeypatch.setenv("CAPPUCCINO_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    no_edge = TINY.model_copy(update={"synthetic_plant_strength": 0.0, "synthetic_seed": 101})
    report = pipeline(params=PipelineParams(name="flat", promotion_streak=2, overrides=no_edge))

    summary = report.training["summary"]
    assert summary["trials_by_state"]["COMPLETE"] == TINY.train_trials
    assert len(report.training["candidates"]) == summary["with_evidence"] <= 1
    assert report.arena["promoted_here"] == [] and report.sandbox["sandbox_results"] == []
    assert report.green_light["status"] == "no_production"
    page = (Path(report.report["folder"]) / "report.html").read_text()
    verdict = pipeline_verdict(report.model_dump(mode="json"))
    assert not verdict.promoted and html.escape(verdict.headline) in page.split("<h1>", 1)[0]
    assert (Path(report.report["folder"]) / "equity.png").exists()  # the baselines on the holdout, at least
    if not report.training["candidates"]:
        assert report.holdout["model_id"] is None and len(report.holdout["baselines"]) == 4
        assert verdict.headline.startswith("Not promoted: no trial showed validation evidence of an edge")
