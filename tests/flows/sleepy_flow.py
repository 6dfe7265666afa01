"""A flow that records its process and then waits to be killed (run as a child process by the tests)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from prefect import flow

from tasks.flow_runs import watched


@flow(name="sleepy")
def sleepy(home: str) -> None:
    """Record this process as the run's, say so in ``<home>/started``, then wait."""
    with watched(Path(home)):
        Path(home, "started").write_text("started")
        time.sleep(600)


if __name__ == "__main__":
    sleepy(sys.argv[1])
