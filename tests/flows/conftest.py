"""Flows run under Prefect's own test harness (one temporary server for the whole session)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_harness():
    """Start Prefect's test harness once; entering it costs ~10 s."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def cappuccino_env(tmp_path, monkeypatch):
    """Point Cappuccino's settings at a temporary home with a short history."""
    monkeypatch.setenv("CAPPUCCINO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CAPPUCCINO_HISTORY_DAYS", "10")
    monkeypatch.setenv("CAPPUCCINO_CONFIG", str(tmp_path / "absent.toml"))
    return tmp_path / "home"
