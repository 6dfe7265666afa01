"""`make ui` on any port: the Prefect UI asks the API on the port the server was started on."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from tests.conftest import REPO
from tests.deploy.conftest import _clean_environ, free_port, stop_process_group, tail

STARTUP_SECONDS = 150


def test_the_prefect_ui_on_a_non_default_port_calls_the_api_on_that_port(tmp_path) -> None:
    if not (REPO / ".venv" / "bin" / "prefect").exists():
        pytest.skip("scripts/ui.sh runs .venv/bin/prefect: `make install` first")
    prefect_port, mlflow_port = free_port(), free_port()
    # A profile's API URL on the default port is what the UI used to call instead.
    env = {**_clean_environ(), "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_PORT": str(prefect_port),
           "MLFLOW_PORT": str(mlflow_port), "PREFECT_API_URL": "http://127.0.0.1:4200/api",
           "CAPPUCCINO_HOME": str(tmp_path / "home"), "CAPPUCCINO_CONFIG": str(tmp_path / "absent.toml")}
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["bash", "scripts/ui.sh"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        base = f"http://127.0.0.1:{prefect_port}"
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"scripts/ui.sh exited with {proc.returncode}:\n{tail(log)}")
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.skip(f"the Prefect server did not start within {STARTUP_SECONDS} s:\n{tail(log, 800)}")
            time.sleep(1)
        settings = httpx.get(f"{base}/ui-settings", timeout=10).json()
        assert settings["api_url"] == f"{base}/api"
    finally:
        stop_process_group(proc)
