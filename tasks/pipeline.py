"""Thin Prefect tasks of the pipeline's last stages: the offline sandbox replay, the green light, the report.

The verdict is also published as a markdown artifact of the flow run, so the Prefect UI shows
what the run concluded, not only that it completed.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from cappuccino_core.config import Settings
from cappuccino_core.operations.production import production_trader_id
from cappuccino_core.pipeline.replay import replay_green_light, replay_lifecycle
from cappuccino_core.pipeline.holdout import holdout_results
from cappuccino_core.pipeline.offline import open_study_replay, run_results
from cappuccino_core.pipeline.report import write_report
from cappuccino_core.pipeline.selection import king_evidence, selection_statistics
from cappuccino_core.pipeline.verdict import pipeline_verdict
from cappuccino_core.registry.models import version_uri, versions_of_study
from cappuccino_core.tracking.store import client, ensure_store, tracking_uri
from tasks.retry import retry_on


@task(cache_policy=NONE)
def study_promotions(settings: Settings, study: str, promoted: list[str]) -> list[str]:
    """The arena's promoted models that were trained by ``study`` (other studies' models trade other bars)."""
    uri = tracking_uri(settings.home)
    ensure_store(uri)
    ours = {version_uri(v.name, v.version) for v in versions_of_study(client(uri), study, settings.model_name)}
    return [m for m in promoted if m in ours]


@task(cache_policy=NONE)
def selection_report(settings: Settings, candidates: list[dict[str, Any]], matches: list[dict[str, Any]],
                     promoted_here: list[str]) -> dict[str, Any]:
    """Validation vs holdout rank correlation of the candidates, and the edge tests of this study's kings."""
    tests = king_evidence(matches)
    ours = {f"models:/{settings.model_name}/{c['version']}" for c in candidates}
    mine = [t for t in tests if t["king"] in ours]
    promoted = [t for t in mine if t["king"] in promoted_here]
    king = (promoted or mine or [None])[0]
    return {"selection": selection_statistics(candidates, matches, settings.model_name), "edge_tests": mine,
            "king": king}


@task(cache_policy=NONE)
def replay_sandbox(settings: Settings, study: str, promoted: list[str]) -> dict[str, Any]:
    """Replay sandbox → promotion → paper production over the study's replay period; each trader's results."""
    plan = open_study_replay(settings, study)
    report = replay_lifecycle(plan, promoted, sandbox_days=settings.sandbox_days)
    sandbox = [run_results(plan, run.trader_id, run.model_ref) for run in plan.site.sandbox().runs()
               if run.model_ref in promoted]
    production = None
    if report.production is not None:
        production = run_results(plan, production_trader_id(report.production), report.production)
    return {**report.to_dict(), "sandbox_results": sandbox, "production_results": production}


@task(cache_policy=NONE)
def judge_replay_green_light(settings: Settings, study: str) -> dict[str, Any]:
    """The green light on the replay's production model at the end of the replay period."""
    return replay_green_light(open_study_replay(settings, study))


@task(cache_policy=NONE, retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on(OSError, ConnectionError, TimeoutError))
def record_report(settings: Settings, summary: dict[str, Any]) -> dict[str, Any]:
    """Write the HTML/PNG report and the summary, and log them to MLflow (experiment ``pipeline``)."""
    return write_report(settings, summary)


@task(cache_policy=NONE)
def holdout_report(settings: Settings, study: str, model_id: str | None, arena: str) -> dict[str, Any]:
    """``model_id`` (or, with None, the baselines alone) on the whole arena holdout of its study."""
    return holdout_results(settings, study, model_id, arena_id=arena)


@task(cache_policy=NONE)
def publish_verdict(summary: dict[str, Any]) -> str:
    """Publish the run's verdict as the markdown artifact ``pipeline-<name>``; return the artifact's id."""
    verdict = pipeline_verdict(summary)
    report = summary.get("report") or {}
    markdown = verdict.to_markdown(f"Cappuccino pipeline {summary['name']}")
    if report:
        markdown += f"\nReport: `{report['html']}` (MLflow experiment `{report['mlflow_experiment']}`, run `{report['mlflow_run_id']}`)\n"
    key = "pipeline-" + "".join(c if c.isalnum() else "-" for c in summary["name"].lower())
    return str(create_markdown_artifact(markdown=markdown, key=key, description=verdict.headline))
