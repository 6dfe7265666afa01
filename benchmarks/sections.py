"""The benchmark sections. Each returns a flat dict of named figures; timing uses perf_counter.

torch runs with ONE thread everywhere here (``torch.set_num_threads(1)``): on 2 cores two
single-thread trials side by side beat one two-thread trial, so that is how studies run.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import torch

from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.synthetic import SyntheticMarketConfig, generate_bars
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.features.panel_builder import build_panel

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CAPPUCCINO_SHARED_DATA", REPO.parent / "shared" / "data" / "ohlcv"))
SYMBOLS_USDT = ("BTC/USDT", "ETH/USDT", "LTC/USDT", "BCH/USDT", "LINK/USDT", "UNI/USDT", "AAVE/USDT")
# The default trial budget: what the learning tests prove is enough to find a planted edge.
TRIAL_PPO = PPOConfig()
TRIAL_ENV = EnvConfig(lookback=20, episode_bars=128, num_envs=256)

torch.set_num_threads(1)


def _warm_torch() -> None:
    """Pay torch's one-off lazy import (its first ``torch.optim.Adam`` imports the compiler stack, seconds).

    Once per process; a study worker pays it once for all its trials, and Stable-Baselines3's
    figures exclude it (it builds its optimizer before its clock starts), so ours does too.
    """
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _synthetic_panel(days: int, seed: int = 0, plant: float = 1.0):
    market = SyntheticMarketConfig(seed=seed, plant_strength=plant)
    return build_panel(generate_bars(market, market.origin, market.origin + timedelta(days=days)), interval=Interval.H1)


def bench_ingest() -> dict:
    """7 symbols x 2 years of 1h bars from files into a fresh store, plus all features."""
    from cappuccino_core.data.files_source import FileBarSource
    from cappuccino_core.data.store import BarStore

    source_dir = SHARED
    origin = "shared"
    tmp = Path(tempfile.mkdtemp(prefix="cappuccino-bench-"))
    if not (SHARED / "BTC-USDT_1h.parquet").exists():  # no shared data: write synthetic files in the same format
        origin = "synthetic-files"
        source_dir = tmp / "files"
        source_dir.mkdir()
        market = SyntheticMarketConfig(seed=0, symbols=tuple(s.replace("USDT", "USD") for s in SYMBOLS_USDT))
        end = datetime(2026, 2, 19, tzinfo=UTC)
        for symbol, bars in generate_bars(market, end - timedelta(days=731), end).items():
            bars.write_parquet(source_dir / f"{symbol.replace('/USD', '-USDT')}_1h.parquet")
    end = datetime(2026, 2, 19, tzinfo=UTC)
    start = end - timedelta(days=730)
    started = time.perf_counter()
    source = FileBarSource(source_dir)
    store = BarStore(tmp / "store")
    rows = 0
    for symbol in SYMBOLS_USDT:
        result = store.write(symbol, Interval.H1, source.fetch(symbol, Interval.H1, start, end), source=source.name)
        rows += result.rows_after
    panel = build_panel({s: store.read(s, Interval.H1) for s in SYMBOLS_USDT}, interval=Interval.H1)
    seconds = time.perf_counter() - started
    return {
        "ingest_7x2y_1h_seconds": round(seconds, 3),
        "ingest_peak_rss_mb": round(_peak_rss_mb(), 1),
        "ingest_rows": rows,
        "ingest_panel_rows": panel.num_bars,
        "ingest_data": origin,
    }


def bench_env() -> dict:
    """Raw batched environment steps per second, N=256 episodes, 7 assets, random actions."""
    from cappuccino_core.env.portfolio_env import PortfolioEnv

    panel = _synthetic_panel(365)
    normalizer = FeatureNormalizer.fit(panel.features)
    out = {}
    for lookback in (20, 60):
        env = PortfolioEnv(panel, EnvConfig(lookback=lookback, episode_bars=256, num_envs=256), normalizer, seed=0)
        env.reset()
        actions = torch.rand(256, 7, generator=torch.Generator().manual_seed(0)) * 2 - 1
        for _ in range(20):  # warm-up
            env.step(actions)
        steps = 1000
        started = time.perf_counter()
        for _ in range(steps):
            env.step(actions)
        out[f"env_raw_steps_per_s_L{lookback}"] = round(steps * 256 / (time.perf_counter() - started))
    return out


def bench_ppo() -> dict:
    """PPO training throughput on the real env with the default trial settings (no validation).

    ``ppo_phase_seconds_per_100k`` splits the run into env steps (observation assembly
    included), the policy's forward passes in the rollout, and the updates (GAE included);
    ``ppo_phase_other_seconds_per_100k`` is what is left (rollout book-keeping, set-up).
    """
    from cappuccino_core.agents.ppo import train
    from cappuccino_core.env.portfolio_env import PortfolioEnv

    panel = _synthetic_panel(365)
    env = PortfolioEnv(panel, TRIAL_ENV, FeatureNormalizer.fit(panel.features), seed=0)
    _warm_torch()
    result = train(TRIAL_PPO, env, seed=0)
    phases = result.phase_seconds.per_steps(result.env_steps)
    total = result.wall_seconds * 100_000 / result.env_steps
    return {
        "ppo_train_steps_per_s": round(result.steps_per_second),
        "ppo_train_steps": result.env_steps,
        "ppo_torch_threads": TRIAL_PPO.torch_threads,
        "ppo_phase_seconds_per_100k": {name: round(value, 3) for name, value in phases.items()},
        "ppo_phase_other_seconds_per_100k": round(total - sum(phases.values()), 3),
    }


def bench_sb3() -> dict:
    """Stable-Baselines3 PPO (MlpPolicy 64x64, its default update schedule) on the Gymnasium adapter."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from cappuccino_core.env.gym_adapter import PortfolioGymEnv

    panel = _synthetic_panel(365)
    normalizer = FeatureNormalizer.fit(panel.features)
    n_envs = 8
    vec = DummyVecEnv([lambda i=i: PortfolioGymEnv(panel, TRIAL_ENV, normalizer, seed=i) for i in range(n_envs)])
    model = PPO("MlpPolicy", vec, n_steps=2048, batch_size=64, n_epochs=10, policy_kwargs={"net_arch": [64, 64]}, seed=0, device="cpu", verbose=0)
    steps = TRIAL_PPO.total_steps
    started = time.perf_counter()
    model.learn(total_timesteps=steps)
    seconds = time.perf_counter() - started
    ours = bench_ppo_cached()
    sb3 = model.num_timesteps / seconds
    return {
        "sb3_train_steps_per_s": round(sb3),
        "sb3_train_steps": int(model.num_timesteps),
        "sb3_n_envs": n_envs,
        "ppo_vs_sb3_speedup": round(ours / sb3, 1),
    }


def bench_ppo_cached() -> float:
    """Our PPO throughput measured in the same process as SB3 (same machine state)."""
    return bench_ppo()["ppo_train_steps_per_s"]


def bench_quality() -> dict:
    """Time to quality on held-out bars, ours vs Stable-Baselines3 (see benchmarks/quality.py).

    ``CAPPUCCINO_BENCH_QUALITY_CAP`` (seconds) shortens or lengthens the training cap of each
    run, for a quick look; the default cap is ``quality.CAP_SECONDS``.
    """
    from benchmarks.quality import CAP_SECONDS, bench_quality as run

    raw = os.environ.get("CAPPUCCINO_BENCH_QUALITY_CAP", "")
    try:
        cap = float(raw) if raw else CAP_SECONDS
    except ValueError:
        raise SystemExit(f"CAPPUCCINO_BENCH_QUALITY_CAP must be a number of seconds, got {raw!r}") from None
    if not cap > 0:
        raise SystemExit(f"CAPPUCCINO_BENCH_QUALITY_CAP must be > 0 seconds, got {raw!r}")
    return run(cap=cap)


def bench_trial() -> dict:
    """Seconds for one default trial: fit on 70% of a year of bars, validate on the held-out rest."""
    from cappuccino_core.agents.fit import ValidationSet, fit_agent

    panel = _synthetic_panel(365)
    cut = int(panel.num_bars * 0.7)
    _warm_torch()
    started = time.perf_counter()
    fit = fit_agent(
        panel.rows(0, cut), env_config=TRIAL_ENV, ppo_config=TRIAL_PPO, seed=0, created_at=datetime.now(UTC),
        validation=ValidationSet(panel.rows(cut - TRIAL_ENV.lookback + 1, panel.num_bars)),
    )
    seconds = time.perf_counter() - started
    return {
        "trial_seconds_default": round(seconds, 2),
        "trial_validation_excess_sharpe": None if fit.validation_score is None else round(fit.validation_score, 3),
        "trials_per_day_two_workers": round(2 * 86400 / seconds),
    }


def bench_study() -> dict:
    """Per-trial overhead of orchestration plus tracking against training, and a 1000-trial projection.

    Three default trials (150k steps per fold, 3 walk-forward folds, 7 assets, 2 years of 1h
    bars, lookback 20) of a training study, run by one worker inside a Prefect flow and task,
    recorded in MLflow (SQLite) with checkpoints and plots. Training time is the time spent in
    ``fit_agent`` (training and its validation backtests); everything else in a trial (Optuna
    storage, MLflow run, params, metrics, curve, checkpoint artifacts, PNG) plus the flow and
    task overhead shared out per trial is overhead.
    """
    from dataclasses import replace

    from prefect import flow, task
    from prefect.cache_policies import NONE

    from cappuccino_core.agents.fit import fit_agent
    from cappuccino_core.config import Settings
    from cappuccino_core.data.store import BarStore
    from cappuccino_core.search import runner
    from cappuccino_core.search.spec import PrunerConfig, StudyKind

    fit_seconds: list[float] = []

    def timed_fit(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fit_agent(*args, **kwargs)
        finally:
            fit_seconds.append(time.perf_counter() - started)

    trials = 3
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        market = SyntheticMarketConfig(seed=0)
        store = BarStore(home / "store")
        for symbol, bars in generate_bars(market, market.origin, market.origin + timedelta(days=730)).items():
            store.write(symbol, Interval.H1, bars, source="synthetic")
        settings = Settings(home=home, symbols=market.symbols)
        loc = runner.StudyLocation.from_settings(settings)
        spec = runner.timeframe_spec(settings, store, "bench", trials=trials)
        spec = replace(spec, kind=StudyKind.TRAINING, intervals=(Interval.H1,), lookbacks=(20,),
                       ppo=replace(TRIAL_PPO), pruner=PrunerConfig(enabled=False))
        runner.prepare(spec, loc, store)

        @task(cache_policy=NONE)
        def run_trials_task() -> dict:
            return runner.run_worker_here(loc, "bench", store, fit=timed_fit).to_dict()

        @flow
        def study_flow() -> dict:
            started = time.perf_counter()
            report = run_trials_task()
            return {"report": report, "task_seconds": time.perf_counter() - started}

        flow_started = time.perf_counter()
        out = study_flow()
        flow_seconds = time.perf_counter() - flow_started
        summary = runner.finish(loc, "bench")
        done = [t for t in runner.read_study(loc, "bench").trials if t.state.name == "COMPLETE"]
        walls = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]
    if len(done) != trials:
        raise RuntimeError(f"bench study: {len(done)} of {trials} trials completed ({summary.trials_by_state})")
    fits_per_trial = len(fit_seconds) / trials
    train_per_trial = sum(fit_seconds) / trials
    wall_per_trial = sum(walls) / trials
    in_trial_overhead = wall_per_trial - train_per_trial
    # Flow and task overhead (server start excluded: a deployment runs against a running server).
    orchestration = max(out["task_seconds"] - sum(walls), 0.0) / trials
    overhead = in_trial_overhead + orchestration
    return {
        "study_trial_seconds": round(wall_per_trial, 2),
        "study_trial_training_seconds": round(train_per_trial, 2),
        "study_trial_overhead_seconds": round(overhead, 3),
        "study_trial_folds": fits_per_trial,
        "study_flow_seconds_incl_server": round(flow_seconds, 1),
        "trial_overhead_fraction": round(overhead / train_per_trial, 4),
        "study_1000_projected_hours": round(1000 * (wall_per_trial + orchestration) / 3600, 2),
    }


def bench_arena() -> dict:
    """The tournament over 1,000 candidates x 20 windows (see benchmarks/arena_bench.py)."""
    from benchmarks.arena_bench import bench_arena as run

    return run()


def bench_make_run() -> dict:
    """`make run`'s pipeline (``cappuccino run --demo``) in a fresh home, end to end and per stage.

    Run as its own process, as `make run` runs it (the virtualenv is already installed): the
    figure includes Python start-up, the imports and Prefect's temporary server.
    """
    import json
    import subprocess
    import sys

    with tempfile.TemporaryDirectory(prefix="bench-make-run-") as tmp:
        env = {**os.environ, "CAPPUCCINO_HOME": str(Path(tmp) / "home"), "CAPPUCCINO_CONFIG": str(Path(tmp) / "absent.toml")}
        env.pop("MLFLOW_TRACKING_URI", None)
        env.pop("CAPPUCCINO_STUDY_STORAGE", None)
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "cli.app", "run", "--demo", "--json"],
                              capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"cappuccino run --demo exited {proc.returncode}: {proc.stderr[-2000:]}")
        report = json.loads(proc.stdout[proc.stdout.index("{"):])
    out = {"make_run_seconds": round(seconds, 1)}
    out.update({f"stage_seconds_{stage}": round(value, 1) for stage, value in report["stage_seconds"].items()})
    out["make_run_promoted"] = len(report["arena"]["promoted_here"])
    out["make_run_green_light"] = report["green_light"]["status"]
    return out


RISK_CHOICES = {
    "off": {"stop_loss": None, "max_position_fraction": None, "portfolio_trailing_stop": None, "profit_take_threshold": None},
    "owner": {"portfolio_trailing_stop": 0.015, "profit_take_threshold": 0.03},  # the owner's first values
    "owner_pts10_no_pt": {"portfolio_trailing_stop": 0.10, "profit_take_threshold": None},
    "stop_and_cap_only": {"portfolio_trailing_stop": None, "profit_take_threshold": None},
    "default": {},  # RiskConfig(): 10 % stop, 30 % cap, 10 % portfolio trailing stop, +20 % profit-take
}


def bench_risk() -> dict:
    """How much of a planted edge each risk-layer choice keeps, trained and scored under that choice.

    The demo's market (plant 2.0, a year of 1h bars), the demo's trial budget (20 PPO updates),
    lookback 20; trained on the first half of the search period and scored on the 11 weekly
    arena windows after it, 2 seeds per choice. ``risk_<choice>_weekly_alpha`` is the mean
    weekly alpha over buy and hold; ``risk_<choice>_edge_kept`` divides it by the alpha with the
    layers off.
    """
    from dataclasses import replace

    from cappuccino_core.agents.fit import AgentPolicy, ValidationSet, evaluate_policy, fit_agent
    from cappuccino_core.risk.config import RiskConfig

    market = SyntheticMarketConfig(seed=7, plant_strength=2.0)
    panel = build_panel(generate_bars(market, market.origin, market.origin + timedelta(days=365)), interval=Interval.H1)
    search = panel.num_bars - 13 * 168
    cut, lookback = search // 2, 20
    validation = ValidationSet(panel.rows(cut + 2, search), horizon=168)
    holdout = ValidationSet(panel.rows(search - lookback + 1, panel.num_bars - 168), horizon=168)
    ppo = PPOConfig(total_steps=40_960, num_envs=64, rollout_steps=32, minibatch_size=512, eval_every_updates=10**6)
    figures: dict[str, dict[str, float]] = {key: {} for key in RISK_FIGURES}
    for name, changes in RISK_CHOICES.items():
        env = EnvConfig(lookback=lookback, num_envs=64).with_risk(replace(RiskConfig(), **changes))
        alphas, scores, fires = [], [], []
        for seed in (0, 1):
            fit = fit_agent(panel.rows(0, cut), env_config=env, ppo_config=ppo, seed=seed,
                            created_at=datetime(2026, 1, 1, tzinfo=UTC), validation=validation)
            score, reports = evaluate_policy(AgentPolicy(fit.agent), holdout, fit.normalizer, fit.env_config)
            alphas.append(float(np.mean([r.metrics.alpha for r in reports])))
            scores.append(score)
            fires.append(sum(r.risk_counts.get("portfolio_trailing_stop", 0) for r in reports) / len(reports))
        figures["risk_weekly_alpha"][name] = round(float(np.mean(alphas)), 4)
        figures["risk_holdout_excess_sharpe"][name] = round(float(np.mean(scores)), 2)
        figures["risk_portfolio_stops_per_week"][name] = round(float(np.mean(fires)), 2)
    off = figures["risk_weekly_alpha"]["off"]
    figures["risk_edge_kept"] = {name: round(alpha / off, 3) for name, alpha in figures["risk_weekly_alpha"].items()}
    return figures


RISK_FIGURES = ("risk_weekly_alpha", "risk_holdout_excess_sharpe", "risk_portfolio_stops_per_week", "risk_edge_kept")
"""One figure per measure, each a mapping from risk choice (``RISK_CHOICES``) to its value."""


def _demo_runs(seeds: list[int], plant: float) -> list[dict]:
    from benchmarks.demo_runs import run_one

    return [run_one(seed, plant) for seed in seeds]


DEMO_SEEDS = [1, 2, 3, 4, 5]
NOEDGE_SEEDS = [101, 102, 103, 104, 105, 106, 107, 108, 109, 110]


def bench_demo_seeds() -> dict:
    """``cappuccino run --demo`` on 5 market seeds: promotion rate, each promoted king's evidence, selection."""
    return demo_seed_figures(_demo_runs(DEMO_SEEDS, 2.0))


def demo_seed_figures(runs: list[dict]) -> dict:
    """The ``demo_seeds`` figures from ``benchmarks.demo_runs`` runs."""
    done = [r for r in runs if "error" not in r]
    promoted = [r for r in done if r["promoted"]]
    spearmans = [r["selection_spearman"] for r in done if r["selection_spearman"] is not None]
    return {
        "demo_runs": len(runs), "demo_failed_runs": len(runs) - len(done),
        "demo_promotion_rate": f"{len(promoted)}/{len(runs)}",
        "demo_promoted_per_seed": {str(r["seed"]): r["promoted"] for r in done},
        "demo_king_holdout_excess_sharpe": {str(r["seed"]): _round(r["king_holdout_excess_sharpe"], 2) for r in done},
        "demo_king_holdout_ci_low": {str(r["seed"]): _significant(r["king_holdout_ci_low"]) for r in done},
        "selection_spearman": round(float(np.mean(spearmans)), 3) if spearmans else None,
        "selection_spearman_per_seed": {str(r["seed"]): _round(r["selection_spearman"], 3) for r in done},
        "min_ppo_updates": min((r["min_ppo_updates"] for r in done), default=None),
        "demo_timeframes": {str(r["seed"]): r["timeframe"] for r in done},
        "demo_seconds_per_run": {str(r["seed"]): r["seconds"] for r in runs},
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _significant(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.3g}")


def bench_noedge() -> dict:
    """The same pipeline with the plant off (strength 0) on 10 market seeds: how often does it promote?"""
    return noedge_figures(_demo_runs(NOEDGE_SEEDS, 0.0))


def noedge_figures(runs: list[dict]) -> dict:
    """The ``noedge`` figures from ``benchmarks.demo_runs`` runs."""
    done = [r for r in runs if "error" not in r]
    return {
        "noedge_runs": len(done), "noedge_failed_runs": len(runs) - len(done),
        "noedge_promotions": sum(r["promoted"] for r in done),
        "noedge_promotion_rate": f"{sum(r['promoted'] for r in done)}/{len(done)}",
        "noedge_candidates_per_run": {str(r["seed"]): r["candidates"] for r in done},
        "noedge_edge_tests": sum(len(r["edge_tests"]) for r in done),
    }


def bench_cli() -> dict:
    """Seconds of ``cappuccino --help`` and ``cappuccino status`` in fresh processes, median of 5.

    ``status`` reads the home in ``CAPPUCCINO_HOME`` when that (or the repository's
    ``.cappuccino``, the home `make run` leaves) holds bars; otherwise a fresh empty home.
    """
    import statistics
    import subprocess
    import sys

    def median_seconds(args: list[str], env: dict[str, str]) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "cli.app", *args], capture_output=True, text=True,
                                  env=env, cwd=REPO)
            times.append(time.perf_counter() - started)
            if proc.returncode != 0:
                raise RuntimeError(f"cappuccino {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        return statistics.median(times)

    home = Path(os.environ.get("CAPPUCCINO_HOME", REPO / ".cappuccino"))
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        used = home if (home / "store").is_dir() else Path(tmp) / "home"
        env = {**os.environ, "CAPPUCCINO_HOME": str(used), "CAPPUCCINO_CONFIG": str(Path(tmp) / "absent.toml")}
        return {
            "cli_help_seconds": round(median_seconds(["--help"], env), 2),
            "cli_status_seconds": round(median_seconds(["status", "--json"], env), 2),
            "cli_status_home": "make run" if used == home else "empty",
        }
