"""Scale-out on one machine: two Prefect process workers run two ``study-worker`` flow runs of one study.

Everything a multi-machine setup shares is on PostgreSQL here: the Optuna study (db ``test``,
a unique study name), MLflow (a fresh database) and the Prefect server (the session server).
The study is prepared once, as ``cappuccino train`` does; then the two runs, one per worker,
must overlap in time, leave exactly ``cap`` trials (never more), nothing running, and exactly
one MLflow child run per trial. No scheduler of our own: Prefect hands out the runs, the
capped Optuna storage holds the cap.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient

from cappuccino_core.config import Settings
from cappuccino_core.data.intervals import Interval
from cappuccino_core.search import runner
from cappuccino_core.search.spec import PrunerConfig
from tests.conftest import REPO
from tests.deploy.conftest import PREFECT, PrefectServer, fresh_postgres_database, stop_process_group, tail
from tests.search.conftest import SYMBOLS, fill_store, tiny

CAP = 6
WORKERS = 2
RUN_TIMEOUT = 150
QUEUE = "studies"  # as prefect.yaml's study-worker deployment: trial-only machines poll this queue


@pytest.fixture
def mlflow_database(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for MLflow (its tables would clash with Optuna's in ``test``)."""
    with fresh_postgres_database("cappuccino_mlflow") as url:
        yield url


@pytest.fixture
def study(tmp_path: Path, postgres_url: str, mlflow_database: str) -> Iterator[tuple[runner.StudyLocation, str]]:
    """A prepared study of ``CAP`` tiny trials on PostgreSQL (as `cappuccino train` leaves it); deleted after."""
    home = tmp_path / "home"
    name = f"scale-out-{uuid.uuid4().hex[:8]}"
    loc = runner.StudyLocation(postgres_url, mlflow_database, home)
    store = fill_store(home / "store", days=70)
    settings = Settings(home=home, symbols=SYMBOLS, holdout_weeks=2, train_folds=1)
    spec = tiny(runner.timeframe_spec(settings, store, name, trials=CAP), total_steps=5120)  # the floor: 20 updates
    spec = replace(spec, intervals=(Interval.H1,), lookbacks=(8, 12), pruner=PrunerConfig(enabled=False))
    runner.prepare(spec, loc, store)
    yield loc, name
    optuna.delete_study(study_name=name, storage=postgres_url)


def deploy_study_worker(server: PrefectServer, pool: str, loc: runner.StudyLocation, results: Path) -> Any:
    """Deploy ``flows/study_worker.py`` from this checkout to ``pool``; the job's env points at the shared stores."""
    from prefect import flow
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = {
        "CAPPUCCINO_HOME": str(loc.home),
        "CAPPUCCINO_CONFIG": str(loc.home / "absent.toml"),
        "CAPPUCCINO_STUDY_STORAGE": loc.storage_url,
        "MLFLOW_TRACKING_URI": loc.tracking_uri,
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",  # so the test can read each run's report
        "PREFECT_LOCAL_STORAGE_PATH": str(results),
    }
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        source = flow.from_source(source=str(REPO), entrypoint="flows/study_worker.py:study_worker")
        return source.deploy(name=f"study-worker-{pool}", work_pool_name=pool, work_queue_name=QUEUE,
                             job_variables={"env": env}, build=False, push=False, print_next_steps=False,
                             ignore_warnings=True)


def start_workers(server: PrefectServer, pool: str, logs: Path) -> list[subprocess.Popen]:
    """Start ``WORKERS`` process workers on ``pool``, one flow run at a time each."""
    procs = []
    for i in range(WORKERS):
        with (logs / f"worker-{i}.log").open("wb") as out:
            procs.append(subprocess.Popen(
                [str(PREFECT), "worker", "start", "--pool", pool, "--work-queue", QUEUE, "--type", "process",
                 "--limit", "1", "--name", f"worker-{i}"],
                cwd=logs, env=server.env(PREFECT_WORKER_QUERY_SECONDS="1"), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True))
    return procs


def wait_final(server: PrefectServer, run_ids: list, logs: Path) -> list:
    """Wait until every flow run is in a final state; fail with the workers' logs after ``RUN_TIMEOUT``."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        with server.client() as client:
            runs = [client.read_flow_run(i) for i in run_ids]
        if all(r.state is not None and r.state.is_final() for r in runs):
            return runs
        time.sleep(1)
    details = "\n".join(f"--- {p.name}\n{tail(p)}" for p in sorted(logs.glob("worker-*.log")))
    pytest.fail(f"flow runs not finished after {RUN_TIMEOUT} s: {[r.state_name for r in runs]}\n{details}")


def runs_started_by(log: Path) -> list[str]:
    """Names of the flow runs a worker started (its log says so once per run it put on infrastructure)."""
    return re.findall(r"Flow run '([^']+)' submitted to infrastructure", log.read_text(errors="replace"))


@pytest.mark.slow
@pytest.mark.postgres
def test_two_prefect_workers_share_one_study_and_hold_its_cap(prefect_server, study, tmp_path) -> None:
    loc, name = study
    assert prefect_server.database == "postgresql"  # the Prefect server of a scale-out runs on PostgreSQL too
    pool = f"scale-out-{uuid.uuid4().hex[:8]}"
    prefect_server.create_process_pool(pool)
    deployment_id = deploy_study_worker(prefect_server, pool, loc, tmp_path / "results")
    logs = tmp_path / "workers"
    logs.mkdir()
    workers = start_workers(prefect_server, pool, logs)
    try:
        with prefect_server.client() as client:
            run_ids = [client.create_flow_run_from_deployment(deployment_id, parameters={"study": name}).id
                       for _ in range(WORKERS)]
        runs = wait_final(prefect_server, run_ids, logs)
    finally:
        for proc in workers:
            stop_process_group(proc)

    assert [r.state_name for r in runs] == ["Completed"] * WORKERS, [r.state.message for r in runs]
    assert max(r.start_time for r in runs) < min(r.end_time for r in runs), "the two runs did not overlap"
    started = [runs_started_by(logs / f"worker-{i}.log") for i in range(WORKERS)]
    assert sorted(started) == sorted([r.name] for r in runs), started  # one run on each worker
    reports = [r.state.result() for r in runs]
    assert [rep.study for rep in reports] == [name] * WORKERS and len({rep.pid for rep in reports}) == WORKERS
    assert sum(rep.worker["n_trials"] for rep in reports) == CAP and all(rep.worker["n_trials"] > 0 for rep in reports)
    assert {rep.worker["stop_reason"] for rep in reports} == {"cap"}

    trials = runner.read_study(loc, name).trials
    assert len(trials) == CAP and {t.state.name for t in trials} == {"COMPLETE"}
    spec = runner.require_spec(loc, name)
    tracker = runner.open_tracker(spec, loc)
    children = MlflowClient(loc.tracking_uri).search_runs(
        [tracker.experiment_id], f"tags.mlflow.parentRunId = '{tracker.parent_run_id}'", max_results=1000)
    assert sorted(int(r.data.tags["cappuccino.trial"]) for r in children) == list(range(CAP))  # each trial once
    assert {r.info.status for r in children} == {"FINISHED"}


def test_a_study_worker_refuses_a_study_that_was_never_prepared(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CAPPUCCINO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CAPPUCCINO_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("CAPPUCCINO_STUDY_STORAGE", raising=False)
    from flows.study_worker import study_worker

    with pytest.raises(runner.StudyError, match="no study named 'nowhere'"):
        study_worker.fn(study="nowhere")
    assert not (tmp_path / "home" / "optuna" / "studies.db").exists()  # looking created nothing
