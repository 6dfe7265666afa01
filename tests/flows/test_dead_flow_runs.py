"""A flow run whose process was killed with SIGKILL ends Crashed with its reason, not RUNNING for ever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect import flow, get_client
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL
from prefect.utilities.asyncutils import run_coro_as_sync

from cappuccino_core import flow_runs
from tasks.flow_runs import close_dead_runs, watched

REPO = Path(__file__).resolve().parents[2]


def read_state(run_id: str):
    async def read():
        async with get_client() as client:
            return (await client.read_flow_run(run_id)).state
    return run_coro_as_sync(read())


def start_sleepy_flow(home: Path) -> tuple[subprocess.Popen, flow_runs.FlowRunProcess]:
    """Start the sleepy flow in a child process against the harness's server; return it once it recorded itself."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": PREFECT_API_URL.value()}
    child = subprocess.Popen([sys.executable, "-m", "tests.flows.sleepy_flow", str(home)], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120  # a readiness wait, not a speed assertion
    while not (home / "started").exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"the sleepy flow did not start: {child.stderr.read().decode()[-2000:]}")
        time.sleep(0.2)
    (record,) = flow_runs.recorded(home)
    return child, record


def test_a_flow_run_whose_process_was_killed_is_marked_crashed_with_the_reason(prefect_harness, tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    child, record = start_sleepy_flow(home)
    assert record.pid == child.pid and read_state(record.flow_run_id).type is StateType.RUNNING
    assert flow_runs.dead(home) == []  # alive: nothing to close
    assert close_dead_runs.fn(home) == []

    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert read_state(record.flow_run_id).type is StateType.RUNNING  # what the orchestrator believes on its own

    assert close_dead_runs.fn(home) == [record.flow_run_id]
    state = read_state(record.flow_run_id)
    assert state.type is StateType.CRASHED
    assert f"pid {record.pid} on {record.host}" in state.message and "sleepy" in state.message
    assert flow_runs.recorded(home) == []
    assert close_dead_runs.fn(home) == []  # reported once


def test_a_flow_run_that_ends_normally_leaves_no_record(prefect_harness, tmp_path) -> None:
    @flow(name="brief")
    def brief(home: Path) -> int:
        with watched(home):
            assert len(flow_runs.recorded(home)) == 1
            return 1

    assert brief(tmp_path) == 1
    assert flow_runs.recorded(tmp_path) == []


def test_a_pid_reused_by_a_later_process_is_not_taken_for_the_runs_process(tmp_path) -> None:
    from datetime import UTC, datetime

    record = flow_runs.record_running(tmp_path, "run-1", "x", at=datetime(2026, 1, 1, tzinfo=UTC))
    assert not record.is_dead()
    reused = flow_runs.FlowRunProcess(**{**record.__dict__, "process_start": (record.process_start or 0) - 1})
    assert reused.is_dead()


def test_the_health_flow_marks_a_killed_study_run_crashed(prefect_harness, cappuccino_env) -> None:
    from flows.health import HealthParams, health

    home = cappuccino_env
    home.mkdir(parents=True)
    child, record = start_sleepy_flow(home)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    report = health(params=HealthParams())

    assert report.crashed_flow_runs == [record.flow_run_id]
    assert read_state(record.flow_run_id).type is StateType.CRASHED
