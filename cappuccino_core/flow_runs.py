"""Which process runs which flow run of this home, so that a run whose process was killed can be closed.

A process killed with SIGKILL (or a machine that lost power) cannot tell the orchestrator that
its flow run ended: the run would stay RUNNING for ever. So a long flow writes a small record,
``<home>/flow_runs/<flow run id>.json`` (host, pid and the process's start time), while it runs,
and removes it when it ends in any way Python sees. A record left behind whose process is gone
(same host, and either no such pid or a pid now used by a later process) names a run whose
process died; the orchestration side (``tasks/flow_runs.py``) marks that run crashed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from cappuccino_core.clock import ensure_utc

logger = logging.getLogger(__name__)

FOLDER = "flow_runs"


@dataclass(frozen=True)
class FlowRunProcess:
    """The process that runs a flow run.

    Attributes:
        flow_run_id: the orchestrator's id of the run.
        flow_name: the flow's name (for messages).
        host: the machine's host name.
        pid: the process id.
        process_start: the process's start time in clock ticks since boot (``/proc/<pid>/stat``
            field 22), so a pid reused by a later process is not taken for the run's; None
            where ``/proc`` is not available.
        started_at: when the record was written (UTC).
    """

    flow_run_id: str
    flow_name: str
    host: str
    pid: int
    process_start: int | None
    started_at: datetime

    def is_dead(self) -> bool:
        """Return True when this host no longer runs the recorded process (False for another host: unknown)."""
        if self.host != socket.gethostname():
            return False
        if not pid_alive(self.pid):
            return True
        return self.process_start is not None and _process_start(self.pid) != self.process_start


def record_running(home: Path, flow_run_id: str, flow_name: str, *, at: datetime) -> FlowRunProcess:
    """Record that this process runs ``flow_run_id``; return the record."""
    pid = os.getpid()
    record = FlowRunProcess(flow_run_id, flow_name, socket.gethostname(), pid, _process_start(pid), ensure_utc(at))
    folder = home / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{flow_run_id}.json.partial"
    partial.write_text(json.dumps(asdict(record) | {"started_at": record.started_at.isoformat()}))
    os.replace(partial, folder / f"{flow_run_id}.json")
    return record


def forget(home: Path, flow_run_id: str) -> None:
    """Remove the record of ``flow_run_id`` (its process ended it, or its crash was reported)."""
    (home / FOLDER / f"{flow_run_id}.json").unlink(missing_ok=True)


def recorded(home: Path) -> list[FlowRunProcess]:
    """Return every record in the home, oldest first (unreadable files are logged and skipped)."""
    folder = home / FOLDER
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
            records.append(FlowRunProcess(**{**doc, "started_at": ensure_utc(datetime.fromisoformat(doc["started_at"]))}))
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning("flow run record %s is unreadable (%s); skipped", path, exc)
    return sorted(records, key=lambda r: r.started_at)


def dead(home: Path) -> list[FlowRunProcess]:
    """Return the records of flow runs whose process on this host is gone."""
    return [r for r in recorded(home) if r.is_dead()]


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (one we may not signal still counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _process_start(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    return int(stat.rsplit(")", 1)[1].split()[19])
