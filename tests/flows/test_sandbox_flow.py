"""The ``sandbox`` flow under Prefect's test harness: a checkpoint paper-trades the stored bars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import torch
from sqlalchemy.exc import OperationalError

from cappuccino_core.agents.checkpoint import ModelCard, library_versions, save_checkpoint
from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.agents.networks import ActorCritic
from cappuccino_core.config import load_settings
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.store import BarStore
from cappuccino_core.data.synthetic import SyntheticMarketConfig, generate_bars
from cappuccino_core.env.accounting import ACTION_MAPPING
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.features.panel_builder import build_panel
from cappuccino_core.trading.broker import BrokerUnavailable
from cappuccino_core.trading.sandbox_report import sandbox_status
from flows.sandbox import SandboxParams, open_sandbox, sandbox
from tasks.trading import is_transient

SYMBOLS = ("BTC/USD", "ETH/USD", "LTC/USD")
ORIGIN = datetime(2024, 3, 1, tzinfo=UTC)
DAYS = 12


@pytest.fixture
def market(cappuccino_env, monkeypatch, tmp_path):
    """Twelve days of synthetic 1h bars in the home's store, and a small checkpoint that trades them."""
    monkeypatch.setenv("CAPPUCCINO_SYMBOLS", ",".join(SYMBOLS))
    settings = load_settings()
    store = BarStore(settings.bars_dir)
    bars = generate_bars(SyntheticMarketConfig(seed=3, symbols=SYMBOLS, origin=ORIGIN), ORIGIN,
                         ORIGIN + timedelta(days=DAYS))
    for symbol, table in bars.items():
        store.write(symbol, Interval.H1, table, source="synthetic")
    panel = build_panel(bars, interval=Interval.H1)
    env = EnvConfig(lookback=20)
    obs_dim = 1 + len(SYMBOLS) + 20 * len(SYMBOLS) * panel.features.shape[2]
    agent = ActorCritic(obs_dim, len(SYMBOLS), (16,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        agent.actor_mean[-1].weight.mul_(200.0)  # an untrained actor barely moves; this one trades
    card = ModelCard(
        feature_spec=panel.feature_spec.to_dict(), interval="1h", lookback=20, symbols=SYMBOLS,
        normalisation=FeatureNormalizer.fit(panel.features).to_dict(), action_mapping=dict(ACTION_MAPPING),
        env_config=env.to_dict(), ppo_config=PPOConfig(hidden_sizes=(16,)).to_dict(), obs_dim=obs_dim,
        action_dim=len(SYMBOLS), hidden_sizes=(16,), data_hash=panel.data_hash, seed=0,
        library_versions=library_versions(), created_at=ORIGIN.isoformat(),
    )
    checkpoint = tmp_path / "model"
    save_checkpoint(checkpoint, agent, card)
    return settings, str(checkpoint)


def test_the_flow_steps_each_active_run_once_per_bar_and_a_rerun_changes_nothing(prefect_harness, market) -> None:
    settings, checkpoint = market
    last = ORIGIN + timedelta(days=DAYS) - timedelta(hours=1)
    first = last - timedelta(hours=2)
    box = open_sandbox(settings)
    run = box.start(checkpoint, start=first)
    box.start(checkpoint, trader_id="short", start=first, period=timedelta(hours=2))

    report = sandbox(params=SandboxParams(bar_time=first))
    assert sorted(s["trader_id"] for s in report.steps) == sorted([run.trader_id, "short"])
    assert {s["status"] for s in report.steps} == {"traded"} and report.failed == {}
    ordered = {s["trader_id"]: s["orders"] for s in report.steps}
    assert ordered[run.trader_id] > 0

    again = sandbox(params=SandboxParams(bar_time=first))
    assert {s["status"] for s in again.steps} == {"skipped_duplicate"}
    sandbox(params=SandboxParams(bar_time=first + timedelta(hours=1)))
    stepped = sandbox(params=SandboxParams(bar_time=last))
    assert stepped.ended == ["short"] and [s["trader_id"] for s in stepped.steps] == [run.trader_id]
    beyond = sandbox(params=SandboxParams(bar_time=last + timedelta(hours=1)))  # not ingested yet
    assert [s["status"] for s in beyond.steps] == ["skipped_stale"]

    status = {r["trader_id"]: r for r in sandbox_status(box.engine)["runs"]}
    assert status["short"]["state"] == "ended" and status["short"]["traded_bars"] == 2
    main = status[run.trader_id]
    assert main["traded_bars"] == 3 and main["statuses"] == {"traded": 3, "skipped_stale": 1}
    assert main["trades"] > 0 and main["equity"] is not None and main["alpha"] is not None


def test_only_io_failures_are_retried() -> None:
    assert is_transient(BrokerUnavailable("429 after 5 tries"))
    assert is_transient(OperationalError("select 1", {}, Exception("database is locked")))
    assert is_transient(ConnectionResetError())
    assert not is_transient(ValueError("the bars do not fit the model"))
    assert not is_transient(KeyError("no sandbox run"))
