"""Flow runs whose process was killed end CRASHED, not RUNNING for ever (the record: ``cappuccino_core.flow_runs``).

``watched`` wraps a long flow's body: it records this process as the run's while the body runs.
``close_dead_runs`` (run at the start of those flows and by the health flow every 5 minutes)
marks each recorded run whose process is gone as Crashed, with the reason, through the
Prefect client, unless the run already reached a final state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import get_client, task
from prefect.cache_policies import NONE
from prefect.client.schemas.objects import StateType
from prefect.context import FlowRunContext
from prefect.states import Crashed
from prefect.utilities.asyncutils import run_coro_as_sync

from cappuccino_core import flow_runs
from cappuccino_core.clock import SystemClock

_FINAL = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})


@contextmanager
def watched(home: Path) -> Iterator[None]:
    """Record this process as the current flow run's for the block (nothing outside a flow run)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        yield
        return
    run_id = context.flow_run.id
    flow_runs.record_running(home, str(run_id), f"{context.flow.name}/{context.flow_run.name}", at=SystemClock().now())
    try:
        yield
    finally:  # any end Python sees: Prefect records the state itself
        flow_runs.forget(home, str(run_id))


@task(cache_policy=NONE)
def close_dead_runs(home: Path) -> list[str]:
    """Mark every recorded flow run of ``home`` whose process died as Crashed; return their ids."""
    return run_coro_as_sync(_close_dead_runs(home))


async def _close_dead_runs(home: Path) -> list[str]:
    closed = []
    async with get_client() as client:
        for record in flow_runs.dead(home):
            found = await client.read_flow_run(record.flow_run_id)
            if found.state is not None and found.state.type not in _FINAL:
                message = (f"the process that ran this flow run (pid {record.pid} on {record.host}, flow "
                           f"{record.flow_name}) is gone: it was killed or its machine stopped; marked crashed")
                await client.set_flow_run_state(record.flow_run_id, Crashed(message=message), force=True)
                closed.append(record.flow_run_id)
            flow_runs.forget(home, record.flow_run_id)
    return closed
