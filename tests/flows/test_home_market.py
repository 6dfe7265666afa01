"""The deployments run on the home a demo-like pipeline run left: the home remembers its market.

A pipeline run with the demo's market (a planted edge of strength 2, a year of history, another
seed) and a tiny budget, then the ``ingest``, ``sandbox`` and ``production-trading``
deployments' flows with their default parameters, as their schedules start them, on the same
home. Before the market was recorded, the deployments regenerated the configured market
(plant 1, two years) and every refresh was refused by the store.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cappuccino_core.config import RunOverrides, load_settings
from cappuccino_core.config.market_record import read_market
from cappuccino_core.db import default_database_url, make_engine
from cappuccino_core.lifecycle.stages import Role
from cappuccino_core.lifecycle.store import LifecycleStore
from cappuccino_core.pipeline.demo import DEMO_OVERRIDES
from flows.ingest import IngestParams, ingest
from flows.monitor import TradingParams, production_trading
from flows.pipeline import PipelineParams, pipeline
from flows.sandbox import SandboxParams, sandbox

# The demo's market, a budget far below the demo's (the rules are not under test here).
DEMO_MARKET = RunOverrides(**{
    **DEMO_OVERRIDES, "synthetic_seed": 11, "search_intervals": ("1h",), "search_lookbacks": (10,),
    "timeframe_trials": 1, "timeframe_steps": 5120, "train_trials": 2, "train_steps": 40_960, "train_envs": 64,
    "candidates": 2,
})


@pytest.fixture
def demo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("CAPPUCCINO_HOME", str(home))
    monkeypatch.setenv("CAPPUCCINO_CONFIG", str(tmp_path / "absent.toml"))
    for name in ("MLFLOW_TRACKING_URI", "CAPPUCCINO_HISTORY_DAYS", "CAPPUCCINO_SYNTHETIC_SEED",
                 "CAPPUCCINO_SYNTHETIC_PLANT_STRENGTH", "CAPPUCCINO_SYMBOLS", "CAPPUCCINO_SOURCE"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def flow_log(caplog: pytest.LogCaptureFixture):
    """The INFO lines flows log with ``get_run_logger`` (Prefect's flow-run logger)."""
    caplog.set_level(logging.INFO)
    return lambda: [r.getMessage() for r in caplog.records if r.name == "prefect.flow_runs"]


@pytest.mark.slow
def test_the_deployments_complete_on_the_home_a_demo_run_left(prefect_harness, demo_home: Path, flow_log) -> None:
    pipeline(params=PipelineParams(name="demo-like", promotion_streak=2, overrides=DEMO_MARKET))

    record = read_market(demo_home)
    assert record is not None
    assert (record.synthetic_seed, record.synthetic_plant_strength, record.history_days) == (11, 2.0, 365)
    deployed = load_settings()  # the settings a deployment loads: nothing set but the home
    assert (deployed.synthetic_seed, deployed.synthetic_plant_strength, deployed.history_days) == (11, 2.0, 365)

    refreshed = ingest(params=IngestParams())  # the daily `ingest` deployment
    assert refreshed.ok and all(s.error is None and s.added <= 1 for s in refreshed.symbols)

    stepped = sandbox(params=SandboxParams())  # the hourly `sandbox` deployment
    assert stepped.failed == {} and stepped.refresh is not None and stepped.refresh.failed == {}
    if not stepped.steps:
        said = [m for m in flow_log() if "no sandbox model trades bar" in m]
        assert said == [f"no sandbox model trades bar {stepped.bar_time.isoformat()}: nothing to step"]

    traded = production_trading(params=TradingParams())  # the hourly `production-trading` deployment
    assert traded.failed == {} and traded.live is None
    assert [m for m in flow_log() if m.startswith("no live model")] == \
        [f"no live model: nothing to trade on bar {traded.bar_time.isoformat()}"]
    store = LifecycleStore(make_engine(default_database_url(demo_home)))
    if store.holder(Role.PRODUCTION) is None:
        assert traded.production is None
        assert [m for m in flow_log() if m.startswith("no production model")] == \
            [f"no production model: nothing to trade on bar {traded.bar_time.isoformat()}"]
    else:
        assert traded.production is not None and traded.production["status"] in ("traded", "skipped_duplicate")
