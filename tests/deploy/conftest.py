"""A real local Prefect server for the deployment tests, started once and killed at the end.

The server runs on a fresh PostgreSQL database when the test PostgreSQL answers (as in
production: several workers, no SQLite locking), otherwise on SQLite in a temporary
``PREFECT_HOME``; ``PrefectServer.database`` says which, and the scale-out test requires
PostgreSQL. Everything listens on 127.0.0.1 only. This is not ``tests/flows``'s test harness:
here flows run in other processes (``prefect deploy``, process workers) against this server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_URL, REPO

PREFECT = REPO / ".venv" / "bin" / "prefect"
STARTUP_SECONDS = 120


@dataclass(frozen=True)
class PrefectServer:
    """A running ``prefect server start``: its API URL, home and database kind."""

    api_url: str
    home: Path
    database: str  # "postgresql" or "sqlite"
    log: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a Prefect client process (CLI, worker) talking to this server."""
        return {**_clean_environ(), "PREFECT_API_URL": self.api_url, "PREFECT_HOME": str(self.home), **extra}

    @contextmanager
    def client(self) -> Iterator:
        """A synchronous Prefect API client of this server (nothing global changed)."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.api_url}), get_client(sync_client=True) as client:
            yield client

    def create_process_pool(self, name: str) -> None:
        """Create a process work pool (Prefect's default process job template)."""
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.workers.process import ProcessWorker

        with self.client() as client:
            client.create_work_pool(WorkPoolCreate(
                name=name, type="process", base_job_template=ProcessWorker.get_default_base_job_template()))


def _clean_environ() -> dict[str, str]:
    """This process's environment without Prefect settings that would point elsewhere, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    return env


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_reachable() -> bool:
    """True when the test PostgreSQL accepts a connection."""
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception:  # noqa: BLE001 - any failure means "use SQLite"; the fixture records which
        return False
    return True


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """Create a uniquely named database on the test server; yield its psycopg2 URL; drop it after."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(POSTGRES_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def stop_process_group(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate ``proc``'s process group (started with ``start_new_session``), then kill it if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def tail(path: Path, chars: int = 3000) -> str:
    """The end of a log file, for failure messages."""
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} missing)"


def _wait_healthy(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prefect server exited with {proc.returncode} before it was healthy:\n{tail(log)}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy at {url} after {STARTUP_SECONDS} s:\n{tail(log)}")


@contextmanager
def _database_url() -> Iterator[tuple[str, str | None]]:
    if not postgres_reachable():
        yield "sqlite", None
        return
    with fresh_postgres_database("cappuccino_prefect") as url:
        yield "postgresql", make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """Start ``prefect server start`` on a free 127.0.0.1 port; kill its process group at the end."""
    home = tmp_path_factory.mktemp("prefect-home")
    log = home / "server.log"
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    with _database_url() as (kind, url):
        env = {**_clean_environ(), "PREFECT_HOME": str(home), "PREFECT_SERVER_UI_ENABLED": "false",
               "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2"}
        if url is not None:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = url
        with log.open("wb") as out:
            proc = subprocess.Popen([str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                    cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_healthy(proc, api_url, log)
            yield PrefectServer(api_url, home, kind, log)
        finally:
            stop_process_group(proc)
