"""``prefect deploy --all`` against a real local server creates every deployment of prefect.yaml as declared.

The list of deployments is read from prefect.yaml (a new deployment is checked without editing
this test); the issue's required deployments and their cadence are asserted on top, through
the runs the server's scheduler actually creates.
"""

from __future__ import annotations

import subprocess
import time
from datetime import timedelta
from typing import Any

import pytest
import yaml

from cappuccino_core.config import Settings
from tests.conftest import REPO
from tests.deploy.conftest import PREFECT, PrefectServer

POOL = "cappuccino-process"
BAR = Settings.model_fields["base_interval"].default.timedelta  # the default base interval (1h)

# The issue's deployments and how often each must run (None: scheduled, any cadence).
REQUIRED: dict[str, timedelta | None] = {
    "ingest": timedelta(days=1),
    "retrain": timedelta(weeks=1),
    "tournament": timedelta(hours=1),
    "sandbox": BAR,
    "production-trading": BAR,
    "monitor": BAR,
    "promotion": None,
    "live-gate": None,
    "health": timedelta(minutes=5),
    "backup": timedelta(days=1),
}


def declared() -> list[dict[str, Any]]:
    """The deployments of prefect.yaml (anchors resolved)."""
    return yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]


@pytest.fixture(scope="module")
def deployed(prefect_server: PrefectServer) -> dict[str, Any]:
    """Create the work pool, run ``prefect deploy --all --no-prompt`` in the project root; return the deployments by name."""
    prefect_server.create_process_pool(POOL)
    done = subprocess.run([str(PREFECT), "deploy", "--all", "--no-prompt"], cwd=REPO, env=prefect_server.env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"prefect deploy failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    with prefect_server.client() as client:
        found = {d.name: d for d in client.read_deployments()}
    return found


def schedule_view(schedule: Any) -> dict[str, Any]:
    """A server schedule as the prefect.yaml fields it came from."""
    if hasattr(schedule, "cron"):
        return {"cron": schedule.cron, "timezone": schedule.timezone}
    if hasattr(schedule, "interval"):
        return {"interval": schedule.interval.total_seconds(), "timezone": schedule.timezone}
    raise AssertionError(f"unexpected schedule kind {type(schedule).__name__}: {schedule}")


def yaml_schedule_view(entry: dict[str, Any]) -> dict[str, Any]:
    """A prefect.yaml schedule with Prefect's defaults filled in (timezone UTC)."""
    if "cron" in entry:
        return {"cron": entry["cron"], "timezone": entry.get("timezone", "UTC")}
    if "interval" in entry:
        return {"interval": float(entry["interval"]), "timezone": entry.get("timezone", "UTC")}
    raise AssertionError(f"prefect.yaml schedule of an unexpected kind: {entry}")


def concurrency_view(limit: int | dict[str, Any] | None) -> tuple[int | None, str | None]:
    """(limit, collision strategy) of a prefect.yaml ``concurrency_limit``."""
    if isinstance(limit, dict):
        return limit["limit"], limit.get("collision_strategy")
    return limit, None


def test_every_deployment_of_prefect_yaml_is_on_the_server_as_declared(deployed) -> None:
    entries = declared()
    assert sorted(deployed) == sorted(e["name"] for e in entries)
    for entry in entries:
        found = deployed[entry["name"]]
        where = f"deployment {entry['name']}"
        assert found.entrypoint == entry["entrypoint"], where
        assert found.work_pool_name == entry["work_pool"]["name"] == POOL, where
        assert found.work_queue_name == entry["work_pool"]["work_queue_name"], where
        assert found.parameters == entry.get("parameters", {}), where
        assert found.description == entry.get("description"), where
        assert [schedule_view(s.schedule) for s in found.schedules] == [
            yaml_schedule_view(s) for s in entry.get("schedules", [])], where
        assert all(s.active for s in found.schedules), where
        limit, strategy = concurrency_view(entry.get("concurrency_limit"))
        server_limit = found.global_concurrency_limit.limit if found.global_concurrency_limit else None
        server_strategy = found.concurrency_options.collision_strategy.value if found.concurrency_options else None
        assert (server_limit, server_strategy) == (limit, strategy), where
        # No pull section: the worker runs the flow from this checkout.
        assert found.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}], where


def test_the_issue_deployments_are_declared_with_their_schedule_kinds() -> None:
    entries = {e["name"]: e for e in declared()}
    assert set(REQUIRED) <= set(entries), f"missing from prefect.yaml: {sorted(set(REQUIRED) - set(entries))}"
    kinds = {name: [next(k for k in ("cron", "interval", "rrule") if k in s) for s in entries[name].get("schedules", [])]
             for name in REQUIRED}
    assert kinds == {**dict.fromkeys(REQUIRED, ["cron"]), "health": ["interval"]}
    assert entries["health"]["schedules"][0]["interval"] == 300
    assert all(s.get("timezone") == "UTC" for name in REQUIRED for s in entries[name]["schedules"] if "cron" in s)
    minute = {name: int(entries[name]["schedules"][0]["cron"].split()[0]) for name in ("sandbox", "production-trading", "monitor")}
    assert minute["sandbox"] < minute["monitor"] and minute["production-trading"] < minute["monitor"]  # monitor after the traders
    assert "schedules" not in entries["study-worker"]  # started on demand, one run per worker


def test_the_server_schedules_each_required_deployment_at_its_cadence(prefect_server, deployed) -> None:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    ids = {deployed[name].id: name for name in REQUIRED}
    deadline = time.monotonic() + 60
    while True:
        with prefect_server.client() as client:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=list(ids))),
                                         limit=200)
        starts: dict[str, list] = {name: [] for name in REQUIRED}
        for run in runs:
            starts[ids[run.deployment_id]].append(run.expected_start_time)
        if all(len(times) >= 3 for times in starts.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    for name, period in REQUIRED.items():
        times = sorted(starts[name])
        assert len(times) >= 3, f"the scheduler made {len(times)} runs of {name} in 60 s"
        gaps = {timedelta(seconds=b.timestamp() - a.timestamp()) for a, b in zip(times, times[1:])}
        if period is not None:
            assert gaps == {period}, f"{name}: runs every {sorted(gaps)}, expected {period}"
        else:
            assert len(gaps) == 1, f"{name}: irregular runs {sorted(gaps)}"


def test_the_study_worker_deployment_is_unscheduled_on_its_own_queue_and_needs_a_study_name(deployed) -> None:
    worker = deployed["study-worker"]
    assert worker.schedules == [] and worker.work_queue_name == "studies"  # trial-only machines poll that queue
    schema = worker.parameter_openapi_schema
    assert schema["required"] == ["study"] and set(schema["properties"]) == {"study", "max_trials", "timeout_seconds"}
