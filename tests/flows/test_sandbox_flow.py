"""The ``sandbox`` flow under Prefect's test harness: a registered checkpoint paper-trades the stored bars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import torch
from sqlalchemy.exc import OperationalError

from cappuccino_core.agents.checkpoint import ModelCard, library_versions, save_checkpoint
from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.agents.networks import ActorCritic
from cappuccino_core.config import load_settings
from cappuccino_core.config.components import make_source
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.resample import resample_bars
from cappuccino_core.data.store import BarStore
from cappuccino_core.data.synthetic import SyntheticMarketConfig, generate_bars
from cappuccino_core.accounting import ACTION_MAPPING
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.operations.site import LifecycleSite
from cappuccino_core.lifecycle.stages import Stage
from cappuccino_core.features.panel_builder import build_panel
from cappuccino_core.registry.models import register_candidate, version_uri
from cappuccino_core.tracking.runs import (
    get_or_create_experiment, get_or_create_parent_run, log_artifact_dir, start_trial_run,
)
from cappuccino_core.tracking.store import artifact_root, client, ensure_store, tracking_uri
from cappuccino_core.trading.broker import BrokerUnavailable
from cappuccino_core.sandbox.report import sandbox_status
from flows.monitor import TradingParams, production_trading
from flows.sandbox import SandboxParams, SandboxStepError, sandbox
from tasks.trading import open_sandbox
from tasks.bars import recent_window
from tasks.trading import is_transient

SYMBOLS = ("BTC/USD", "ETH/USD", "LTC/USD")
ORIGIN = datetime(2024, 3, 1, tzinfo=UTC)
DAYS = 12


@pytest.fixture
def market(cappuccino_env, monkeypatch, tmp_path):
    """Twelve days of synthetic 1h bars in the home's store, and a small registered checkpoint that trades them.

    Only registered versions trade, so the checkpoint is logged under a trial run of the home's
    MLflow store and registered from ``runs:/<run>/checkpoints/fold_0`` as a study would.
    """
    monkeypatch.setenv("CAPPUCCINO_SYMBOLS", ",".join(SYMBOLS))
    settings = load_settings()
    return settings, registered_model(settings, tmp_path, Interval.H1)


def registered_model(settings, tmp_path, interval: Interval) -> str:
    """Store the 1h bars and register a checkpoint trained (in name) on ``interval`` bars made from them."""
    store = BarStore(settings.bars_dir)
    bars = generate_bars(SyntheticMarketConfig(seed=3, symbols=SYMBOLS, origin=ORIGIN), ORIGIN,
                         ORIGIN + timedelta(days=DAYS))
    for symbol, table in bars.items():
        store.write(symbol, Interval.H1, table, source="synthetic")
    panel = build_panel({s: resample_bars(b, source=Interval.H1, target=interval) for s, b in bars.items()},
                        interval=interval)
    env = EnvConfig(lookback=20)
    obs_dim = 1 + len(SYMBOLS) + 20 * len(SYMBOLS) * panel.features.shape[2]
    agent = ActorCritic(obs_dim, len(SYMBOLS), (16,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        agent.actor_mean[-1].weight.mul_(200.0)  # an untrained actor barely moves; this one trades
    card = ModelCard(
        feature_spec=panel.feature_spec.to_dict(), interval=str(interval), lookback=20, symbols=SYMBOLS,
        normalisation=FeatureNormalizer.fit(panel.features).to_dict(), action_mapping=dict(ACTION_MAPPING),
        env_config=env.to_dict(), ppo_config=PPOConfig(hidden_sizes=(16,)).to_dict(), obs_dim=obs_dim,
        action_dim=len(SYMBOLS), hidden_sizes=(16,), data_hash=panel.data_hash, seed=0,
        library_versions=library_versions(), created_at=ORIGIN.isoformat(), study="sandbox-test", trial=0,
    )
    checkpoint = tmp_path / f"model-{interval}"
    save_checkpoint(checkpoint, agent, card)
    uri = tracking_uri(settings.home)
    ensure_store(uri)
    c = client(uri)
    experiment = get_or_create_experiment(c, "sandbox-test", artifact_root(settings.home), description="sandbox test")
    parent = get_or_create_parent_run(c, experiment, study="sandbox-test", phase="training", tags={})
    run_id = start_trial_run(c, experiment, parent, trial_number=0, tags={}, params={})
    log_artifact_dir(c, run_id, checkpoint, "checkpoints/fold_0")
    version = register_candidate(c, model_uri=f"runs:/{run_id}/checkpoints/fold_0", run_id=run_id,
                                 study="sandbox-test", trial=0, feature_spec_version=panel.feature_spec.version,
                                 data_hash=panel.data_hash, model_name=settings.model_name)
    return version_uri(settings.model_name, version)


def test_the_flow_steps_each_active_run_once_per_bar_and_a_rerun_changes_nothing(prefect_harness, market) -> None:
    settings, checkpoint = market
    last = ORIGIN + timedelta(days=DAYS) - timedelta(hours=1)
    first = last - timedelta(hours=2)
    box = open_sandbox(settings)
    run = box.start(checkpoint, start=first)
    box.start(checkpoint, trader_id="short", start=first, period=timedelta(hours=2))

    report = sandbox(params=SandboxParams(bar_time=first, refresh_bars=False))
    assert sorted(s["trader_id"] for s in report.steps) == sorted([run.trader_id, "short"])
    assert {s["status"] for s in report.steps} == {"traded"} and report.failed == {}
    ordered = {s["trader_id"]: s["orders"] for s in report.steps}
    assert ordered[run.trader_id] > 0

    again = sandbox(params=SandboxParams(bar_time=first, refresh_bars=False))
    assert {s["status"] for s in again.steps} == {"skipped_duplicate"}
    sandbox(params=SandboxParams(bar_time=first + timedelta(hours=1), refresh_bars=False))
    stepped = sandbox(params=SandboxParams(bar_time=last, refresh_bars=False))
    assert stepped.ended == ["short"] and [s["trader_id"] for s in stepped.steps] == [run.trader_id]
    beyond = sandbox(params=SandboxParams(bar_time=last + timedelta(hours=1), refresh_bars=False))  # not ingested yet
    assert [s["status"] for s in beyond.steps] == ["skipped_stale"]

    status = {r["trader_id"]: r for r in sandbox_status(box.engine)["runs"]}
    assert status["short"]["state"] == "ended" and status["short"]["traded_bars"] == 2
    main = status[run.trader_id]
    assert main["traded_bars"] == 3 and main["statuses"] == {"traded": 3, "skipped_stale": 1}
    assert main["trades"] > 0 and main["equity"] is not None and main["alpha"] is not None


def test_under_the_hourly_flows_a_4h_model_acts_only_on_the_hour_that_closes_a_4h_bar(
        prefect_harness, cappuccino_env, monkeypatch, tmp_path, caplog) -> None:
    monkeypatch.setenv("CAPPUCCINO_SYMBOLS", ",".join(SYMBOLS))
    settings = load_settings()
    model = registered_model(settings, tmp_path, Interval.H4)
    first = ORIGIN + timedelta(days=DAYS - 2)  # on the 4h grid
    box = open_sandbox(settings)
    run = box.start(model, start=first)
    assert run.interval is Interval.H4

    reports = {first + k * HOUR: sandbox(params=SandboxParams(bar_time=first + k * HOUR, refresh_bars=False))
               for k in range(8)}

    stepped = {hour: r.steps for hour, r in reports.items() if r.steps}
    assert list(stepped) == [first + 3 * HOUR, first + 7 * HOUR]  # the hours that close a 4h bar
    assert all(r.failed == {} for r in reports.values())
    assert {s["status"] for steps in stepped.values() for s in steps} == {"traded"}
    assert [s["bar_time"] for steps in stepped.values() for s in steps] == \
        [first.isoformat(), (first + 4 * HOUR).isoformat()]
    entries = box.journal.entries(run.trader_id)
    assert [e.bar_time for e in entries] == [first, first + 4 * HOUR]  # each on the 4h bar that just closed
    waiting = [r.getMessage() for r in caplog.records if "have no new closed bar of their interval" in r.getMessage()]
    assert len(waiting) == 6 and waiting[0] == (f"1 of 1 sandbox models have no new closed bar of their interval (4h) "
                                                f"at {(first + HOUR).isoformat()}")


def test_the_hourly_production_flow_trades_a_4h_production_model_once_per_4h_bar(
        prefect_harness, cappuccino_env, monkeypatch, tmp_path, caplog) -> None:
    monkeypatch.setenv("CAPPUCCINO_SYMBOLS", ",".join(SYMBOLS))
    settings = load_settings()
    model = registered_model(settings, tmp_path, Interval.H4)
    first = ORIGIN + timedelta(days=DAYS - 2)
    store = LifecycleSite.from_settings(settings).store
    store.move(model, Stage.SANDBOX, who="test", why="setup", at=first)
    store.move(model, Stage.PRODUCTION, who="test", why="setup", at=first)

    reports = [production_trading(params=TradingParams(bar_time=first + k * HOUR, refresh_bars=False))
               for k in range(4)]

    assert [r.production["status"] for r in reports] == ["no_new_bar"] * 3 + ["traded"]
    assert reports[-1].production["bar_time"] == first.isoformat() and all(r.failed == {} for r in reports)
    said = [r.getMessage() for r in caplog.records if r.name == "prefect.flow_runs" and "trades 4h bars" in r.getMessage()]
    assert said == [reports[k].production["message"] for k in range(3)]
    assert said[0] == (f"production model {model} trades 4h bars: none closed at {(first + HOUR).isoformat()} "
                       f"(the next closes at {(first + 4 * HOUR).isoformat()})")


HOUR = timedelta(hours=1)


def test_only_io_failures_are_retried() -> None:
    assert is_transient(BrokerUnavailable("429 after 5 tries"))
    assert is_transient(OperationalError("select 1", {}, Exception("database is locked")))
    assert is_transient(ConnectionResetError())
    assert not is_transient(ValueError("the bars do not fit the model"))
    assert not is_transient(KeyError("no sandbox run"))


REFRESH_AT = datetime(2024, 3, 5, 10, tzinfo=UTC)


@pytest.fixture
def stale_store(cappuccino_env, monkeypatch):
    """The settings' own synthetic market stored up to three bars before ``REFRESH_AT``."""
    monkeypatch.setenv("CAPPUCCINO_SYMBOLS", ",".join(SYMBOLS))
    settings = load_settings()
    store = BarStore(settings.bars_dir)
    source = make_source(settings)
    for symbol in SYMBOLS:
        store.write(symbol, Interval.H1, source.fetch(symbol, Interval.H1, REFRESH_AT - timedelta(days=2),
                                                      REFRESH_AT - timedelta(hours=2)), source=source.name)
    return settings, store


def last_stored(store: BarStore, symbol: str) -> datetime:
    return store.read(symbol, Interval.H1)["timestamp"].max()


@pytest.mark.parametrize("run_flow", [
    lambda refresh: sandbox(params=SandboxParams(bar_time=REFRESH_AT, refresh_bars=refresh)),
    lambda refresh: production_trading(params=TradingParams(bar_time=REFRESH_AT, refresh_bars=refresh)),
], ids=["sandbox", "production-trading"])
def test_each_trading_flow_first_stores_the_latest_bars_and_a_repeat_changes_nothing(
        prefect_harness, stale_store, run_flow) -> None:
    settings, store = stale_store
    skipped = run_flow(False)
    assert skipped.refresh is None and last_stored(store, "BTC/USD") == REFRESH_AT - timedelta(hours=3)

    report = run_flow(True)

    assert report.refresh.window_start == REFRESH_AT - timedelta(hours=5)
    assert report.refresh.window_end == REFRESH_AT + timedelta(hours=1)
    assert report.refresh.added == dict.fromkeys(SYMBOLS, 3) and report.refresh.failed == {}
    assert {last_stored(store, s) for s in SYMBOLS} == {REFRESH_AT}
    hashes = {e.symbol: e.content_hash for e in store.entries()}
    again = run_flow(True)
    assert again.refresh.added == dict.fromkeys(SYMBOLS, 0)
    assert {e.symbol: e.content_hash for e in store.entries()} == hashes


def test_a_refreshed_bar_that_differs_from_the_stored_one_fails_the_run_after_stepping(
        prefect_harness, stale_store) -> None:
    settings, store = stale_store
    bar = make_source(settings).fetch("ETH/USD", Interval.H1, REFRESH_AT - timedelta(hours=2),
                                      REFRESH_AT - timedelta(hours=1))
    store.write("ETH/USD", Interval.H1, bar.with_columns(bar["volume"] * 2), source="elsewhere")

    with pytest.raises(SandboxStepError) as caught:
        sandbox(params=SandboxParams(bar_time=REFRESH_AT))

    report = caught.value.report
    assert list(report.failed) == ["refresh ETH/USD"] and "differs from the stored bar" in report.failed["refresh ETH/USD"]
    assert report.refresh.added == {"BTC/USD": 3, "LTC/USD": 3}
    assert last_stored(store, "ETH/USD") == REFRESH_AT - timedelta(hours=2)  # nothing of ETH/USD written


def test_the_refresh_window_ends_with_the_bar_and_never_asks_for_a_bar_still_forming() -> None:
    window = recent_window(REFRESH_AT, Interval.H1, 6, now=REFRESH_AT + timedelta(hours=1, minutes=3))
    assert (window.start, window.end) == (REFRESH_AT - timedelta(hours=5), REFRESH_AT + timedelta(hours=1))
    early = recent_window(REFRESH_AT, Interval.H1, 6, now=REFRESH_AT + timedelta(minutes=59))
    assert early.end == REFRESH_AT  # the bar opened at REFRESH_AT has not closed yet
    future = recent_window(REFRESH_AT, Interval.H1, 2, now=REFRESH_AT - timedelta(hours=3))
    assert future.start == future.end
    with pytest.raises(ValueError, match="at least one bar"):
        recent_window(REFRESH_AT, Interval.H1, 0, now=REFRESH_AT)
