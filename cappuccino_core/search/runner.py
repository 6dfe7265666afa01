"""Run a study: prepare it once, run workers (here or as processes), reconcile, summarise.

The order matters (STACK-NOTES): the MLflow store and the Optuna study are created once,
before any worker starts; workers only load them. A study that exists is resumed with the
spec it was created with: a restart never changes its rules, cap or data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import datetime

import optuna
from optuna.trial import TrialState

from cappuccino_core.agents.budget import BudgetError, envs_for_budget
from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.clock import Clock, SystemClock
from cappuccino_core.config import Settings
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.store import BarStore
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.features.market import supported_intervals
from cappuccino_core.search.location import (  # noqa: F401 - re-exported
    CHOICE_ATTR,
    SPEC_ATTR,
    StudyError,
    StudyLocation,
    latest_study,
    read_study,
    require_spec,
    stored_spec,
    summary_path,
)
from cappuccino_core.search.market import PanelCache, plan_store_split, study_panel
from cappuccino_core.search.objective import StudyObjective, StudyTracker
from cappuccino_core.search.protocol import ProtocolConfig
from cappuccino_core.search.record import reconcile_runs
from cappuccino_core.search.spec import EarlyStopConfig, PrunerConfig, StudyKind, StudySpec
from cappuccino_core.search.summary import StudySummary, summarise
from cappuccino_core.search.timeframe import TimeframeChoice, choose_timeframe
from cappuccino_core.study.early_stop import DiminishingReturns
from cappuccino_core.study.storage import load_study, open_storage, prepare_study
from cappuccino_core.study.worker import ERROR_ATTR, WORKER_ATTR, WorkerReport, run_worker, worker_id
from cappuccino_core.tracking.runs import end_run, get_or_create_experiment, get_or_create_parent_run, reopen_run, set_summary
from cappuccino_core.tracking.store import client as mlflow_client, code_version, ensure_store


# --------------------------------------------------------------------------- specs


def timeframe_spec(settings: Settings, store: BarStore, name: str, *, trials: int | None = None) -> StudySpec:
    """Phase 2's spec from the settings and the stored data."""
    split = plan_store_split(store, settings.symbols, settings.base_interval, holdout_weeks=settings.holdout_weeks,
                             replay_weeks=settings.replay_weeks)
    intervals = supported_intervals(settings.base_interval, tuple(settings.search_intervals))
    if not intervals:
        raise StudyError(f"none of the search intervals {[str(i) for i in settings.search_intervals]} can be built "
                         f"from stored {settings.base_interval} bars")
    return StudySpec(
        name=name, kind=StudyKind.TIMEFRAME, cap=trials or settings.timeframe_trials, seed=settings.seed,
        symbols=settings.symbols, base_interval=settings.base_interval, split=split, intervals=intervals,
        lookbacks=tuple(settings.search_lookbacks), protocol=ProtocolConfig(n_folds=settings.train_folds),
        ppo=_budget(settings.timeframe_steps, settings.train_envs), env=EnvConfig(num_envs=settings.train_envs),
        max_gap_bars=settings.max_gap_bars, early_stop=_early_stop(settings), model_name=settings.model_name,
        pruner=PrunerConfig(enabled=settings.prune_trials),
    )


def training_spec(settings: Settings, choice: TimeframeChoice, timeframe: StudySpec, name: str, *, trials: int | None = None) -> StudySpec:
    """Phase 3's spec: Phase 2's interval and lookback, its split and data, the full budget."""
    return replace(
        timeframe, name=name, kind=StudyKind.TRAINING, cap=trials or settings.train_trials,
        intervals=(choice.interval,), lookbacks=(choice.lookback,), ppo=_budget(settings.train_steps, settings.train_envs),
        data_hashes={k: v for k, v in timeframe.data_hashes.items() if k == str(choice.interval)},
        top_k=settings.candidates, timeframe_study=choice.study, prior_trials=choice.trials,
        pruner=PrunerConfig(enabled=settings.prune_trials),
    )


def _budget(steps: int, envs: int) -> PPOConfig:
    """The base PPO config of a study: ``steps`` per fold, as many episodes (up to ``envs``) as keep the update floor.

    Raises:
        StudyError: ``steps`` cannot give ``MIN_PPO_UPDATES`` updates (the message says how many steps would).
    """
    rollout = PPOConfig().rollout_steps
    try:
        envs = envs_for_budget(steps, rollout, envs)
    except BudgetError as exc:
        raise StudyError(f"training budget too small: {exc}") from None
    minibatch = min(PPOConfig().minibatch_size, envs * rollout // 4)
    return PPOConfig(num_envs=envs, rollout_steps=rollout, minibatch_size=minibatch, total_steps=steps)


def _early_stop(settings: Settings) -> EarlyStopConfig:
    return EarlyStopConfig(settings.early_stop_patience, settings.early_stop_min_delta, settings.early_stop_min_trials)


# --------------------------------------------------------------------------- prepare / load


def prepare(spec: StudySpec, loc: StudyLocation, store: BarStore) -> StudySpec:
    """Create the MLflow store, the study and its parent run once; return the spec in force.

    An existing study keeps its stored spec (a restart resumes, it does not redefine).
    """
    ensure_store(loc.tracking_uri)
    existing = stored_spec(loc, spec.name)
    if existing is not None:
        return existing
    hashes = {str(i): study_panel(store, spec, i).data_hash for i in spec.intervals}
    spec = replace(spec, data_hashes=hashes)
    prepare_study(loc.storage_url, spec.name, direction="maximize", sampler_seed=spec.seed, cap=spec.cap,
                  attrs={SPEC_ATTR: spec.to_json(), "kind": str(spec.kind)})
    if spec.kind is StudyKind.TIMEFRAME:
        enqueue_grid(loc, spec)
    open_tracker(spec, loc)
    return spec


def enqueue_grid(loc: StudyLocation, spec: StudySpec) -> None:
    """Queue the timeframe search as a grid: every interval x lookback cell in turn, ``cap`` trials in all.

    A sampler would try some cells many times and others never; the grid gives each cell the
    same number of seeds (trial ``n`` trains with seed ``seed + n``), at most one apart when
    the cap is not a multiple of the cells, so the cells' mean scores are comparable. Queued
    once, when the study has no trial yet (a resumed study keeps its queue).
    """
    study = open_study(loc, spec)  # the capped storage: queued trials count towards the cap like any other
    if study.get_trials(deepcopy=False):
        return
    cells = timeframe_cells(spec)
    for n in range(spec.cap):
        interval, lookback = cells[n % len(cells)]
        study.enqueue_trial({"interval": str(interval), "lookback": lookback})


def timeframe_cells(spec: StudySpec) -> list[tuple[Interval, int]]:
    """The cells of a timeframe search, shortest interval and lookback first."""
    return [(i, lb) for i in sorted(spec.intervals, key=lambda i: i.seconds) for lb in sorted(spec.lookbacks)]


def open_tracker(spec: StudySpec, loc: StudyLocation) -> StudyTracker:
    """The study's experiment and parent run (created on first use, RUNNING); never changes the parent's status."""
    client = mlflow_client(loc.tracking_uri)
    experiment_id = get_or_create_experiment(client, spec.name, loc.artifact_location, description=study_description(spec))
    tags = {"cappuccino.kind": str(spec.kind), "cappuccino.cap": str(spec.cap),
            **{f"cappuccino.split.{k}": v for k, v in spec.split.to_dict().items()}}
    parent = get_or_create_parent_run(client, experiment_id, study=spec.name, phase=str(spec.kind), tags=tags,
                                      description=f"Summary of {spec.name}: one child run per trial; PBO, DSR, the best "
                                                  "trial and the stop reason are written here when the study finishes.")
    return StudyTracker(client, experiment_id, parent, code_version())


def study_description(spec: StudySpec) -> str:
    """What the study's MLflow experiment holds, in a sentence or two (its description in the UI)."""
    split = spec.split.to_dict()
    period = f"bars {split['search_start'][:10]} to {split['search_end'][:10]}"
    if spec.kind is StudyKind.TIMEFRAME:
        intervals = ", ".join(str(i) for i in spec.intervals)
        lookbacks = ", ".join(str(lb) for lb in spec.lookbacks)
        return (f"Timeframe search {spec.name}: {spec.cap} PPO trials on a grid of bar interval ({intervals}) "
                f"x lookback ({lookbacks}), each scored by walk-forward validation on {period}. The parent run "
                "holds the summary and the chosen cell; each child run is one trial.")
    return (f"Training study {spec.name}: up to {spec.cap} Optuna TPE trials of PPO hyperparameters at "
            f"{spec.interval} x lookback {spec.lookback}, scored by walk-forward validation on {period}. The parent "
            f"run holds the summary (PBO, DSR); each child run is one trial; the best trials with validation "
            f"evidence of an edge are registered as candidates of model {spec.model_name}.")


def open_study(loc: StudyLocation, spec: StudySpec) -> optuna.Study:
    """The study for running trials: capped storage, heartbeat, seeded TPE, the spec's pruner."""
    study = load_study(loc.storage_url, spec.name, sampler_seed=spec.seed, heartbeat_interval=spec.heartbeat_seconds)
    if spec.pruner.enabled:
        study.pruner = optuna.pruners.MedianPruner(n_startup_trials=spec.pruner.n_startup_trials,
                                                   n_warmup_steps=spec.pruner.n_warmup_steps)
    else:
        study.pruner = optuna.pruners.NopPruner()
    return study


# --------------------------------------------------------------------------- workers


def run_worker_here(loc: StudyLocation, name: str, store: BarStore, *, clock: Clock | None = None,
                    max_trials: int | None = None, timeout: float | None = None, fit=None) -> WorkerReport:
    """Run trials of study ``name`` in this process until the cap, an early stop, or the limits."""
    spec = require_spec(loc, name)
    study = open_study(loc, spec)
    tracker = open_tracker(spec, loc)
    scratch = loc.home / "studies" / spec.name / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    extra = {} if fit is None else {"fit": fit}
    objective = StudyObjective(spec, PanelCache(store, spec), tracker, clock or SystemClock(), scratch=scratch, **extra)
    early = DiminishingReturns(spec.early_stop.patience, spec.early_stop.min_delta, spec.early_stop.min_trials)
    return run_worker(study, objective, max_trials=max_trials, timeout=timeout, early_stop=early)


def spawn_workers(count: int, loc: StudyLocation, name: str, *, max_trials: int | None = None,
                  env: dict[str, str] | None = None) -> list[subprocess.Popen]:
    """Start ``count`` worker processes on this machine (the study must be prepared)."""
    logs = loc.home / "studies" / name
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(count):
        # --parent-pid: the worker asks the kernel for SIGTERM when this process dies (no orphans).
        cmd = [sys.executable, "-m", "cappuccino_core.search.worker_main", "--storage", loc.storage_url,
               "--tracking", loc.tracking_uri, "--home", str(loc.home), "--study", name,
               "--parent-pid", str(os.getpid())]
        if max_trials is not None:
            cmd += ["--max-trials", str(max_trials)]
        log = open(logs / f"worker-{i}.log", "ab")  # noqa: SIM115 - handed to the child, closed with it
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}))
        log.close()
    return procs


def wait_workers(procs: list[subprocess.Popen], loc: StudyLocation, name: str) -> None:
    """Wait for every worker; a dead worker's running trials fail and their runs close FAILED; raise naming it.

    The surviving workers run to their end first. Then every trial a failed worker left
    RUNNING is failed in Optuna (with the exit code as its error) and ``reconcile_runs``
    closes its MLflow run as FAILED, so the records agree without waiting for a heartbeat.
    """
    failed, dead = [], {}
    for i, proc in enumerate(procs):
        if proc.wait() != 0:
            failed.append(f"worker {i} exited {proc.returncode} (log: {loc.home / 'studies' / name / f'worker-{i}.log'})")
            dead[worker_id(proc.pid)] = f"worker {i} (pid {proc.pid}) exited {proc.returncode} during this trial"
    if failed:
        closed = fail_trials_of(loc, name, dead)
        raise StudyError("; ".join(failed) + (f"; its running trial(s) {closed} failed, their runs closed"
                                              if closed else "")
                         + f"; run the command again to finish study {name!r}")


def fail_trials_of(loc: StudyLocation, name: str, dead: dict[str, str]) -> list[int]:
    """Fail the RUNNING trials run by the ``dead`` workers (``worker`` attr -> error), reconcile MLflow; return them."""
    storage = open_storage(loc.storage_url, retry_stale=0)
    study = optuna.load_study(study_name=name, storage=storage)
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        error = dead.get(trial.user_attrs.get(WORKER_ATTR, ""))
        if error is None:
            continue
        storage.set_trial_user_attr(trial._trial_id, ERROR_ATTR, error)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        failed.append(trial.number)
    if failed:
        spec = require_spec(loc, name)
        reconcile_runs(read_study(loc, name), open_tracker(spec, loc), spec.name)
    return failed


def run_trials(loc: StudyLocation, name: str, store: BarStore, workers: int) -> list[dict]:
    """Run the study's trials here (one worker) or in ``workers`` processes, its parent run RUNNING meanwhile.

    The parent run is reopened (a resumed study) before the trials and ended FAILED, with the
    error re-raised, when they fail; ``finish`` ends it FINISHED.
    """
    spec = require_spec(loc, name)
    tracker = open_tracker(spec, loc)
    reopen_run(tracker.client, tracker.parent_run_id)
    try:
        if workers <= 1:
            return [run_worker_here(loc, name, store).to_dict()]
        procs = spawn_workers(workers, loc, name)
        wait_workers(procs, loc, name)
        return [{"worker": i, "exit_code": p.returncode} for i, p in enumerate(procs)]
    except BaseException:
        end_run(tracker.client, tracker.parent_run_id, failed=True)
        raise


# --------------------------------------------------------------------------- finish


def finish(loc: StudyLocation, name: str, *, clock: Clock | None = None) -> StudySummary:
    """Reconcile MLflow with Optuna, summarise, record the summary on the parent run and on disk, end the parent.

    The parent run ends FINISHED; FAILED (the error re-raised) when summarising fails.
    """
    spec = require_spec(loc, name)
    study = read_study(loc, name)
    tracker = open_tracker(spec, loc)
    try:
        summary = _summarise_into(loc, spec, study, tracker)
    except BaseException:
        end_run(tracker.client, tracker.parent_run_id, failed=True)
        raise
    end_run(tracker.client, tracker.parent_run_id)
    return summary


def _summarise_into(loc: StudyLocation, spec: StudySpec, study: optuna.Study, tracker: StudyTracker) -> StudySummary:
    reconcile_runs(study, tracker, spec.name)
    summary = summarise(study, spec)
    metrics = {"best_value": summary.best_value, "pbo": summary.pbo, "dsr": summary.dsr,
               "best_per_bar_sharpe": summary.best_per_bar_sharpe, "total_trials": float(summary.total_trials),
               "min_ppo_updates": None if summary.min_ppo_updates is None else float(summary.min_ppo_updates),
               "trials_with_evidence": float(summary.with_evidence),
               **{f"trials_{k.lower()}": float(v) for k, v in summary.trials_by_state.items()},
               **{f"importance.{k}": v for k, v in summary.importances.items()}}
    tags = {"cappuccino.best_trial": str(summary.best_trial), "cappuccino.stopped_early": str(summary.stopped_early),
            "cappuccino.stop_reason": str(summary.stop_reason), "cappuccino.importance_method": summary.importance_method,
            "cappuccino.pbo_reason": str(summary.pbo_reason), "cappuccino.dsr_reason": str(summary.dsr_reason),
            "cappuccino.dsr_tests": str(summary.dsr_tests)}
    if spec.kind is StudyKind.TIMEFRAME and summary.trials_by_state["COMPLETE"]:
        choice = choose_timeframe(study)
        study.set_user_attr(CHOICE_ATTR, json.dumps(choice.to_dict()))
        tags["cappuccino.timeframe"] = f"{choice.interval}/{choice.lookback}"
    wall = _wall_seconds(study)
    if wall is not None:
        metrics["wall_seconds"] = wall
    set_summary(tracker.client, tracker.parent_run_id, metrics=metrics, tags=tags)
    out = summary_path(loc, spec.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary.to_dict(), indent=2, default=str))
    return summary


def timeframe_choice(loc: StudyLocation, name: str) -> TimeframeChoice:
    """The recorded result of timeframe study ``name`` (``finish`` records it)."""
    text = read_study(loc, name).user_attrs.get(CHOICE_ATTR)
    if text is None:
        raise StudyError(f"timeframe study {name!r} has no recorded choice (not finished, or no complete trial)")
    return TimeframeChoice.from_dict(json.loads(text))


def latest_timeframe_study(loc: StudyLocation) -> str:
    """The most recently started timeframe study with a recorded choice."""
    try:
        return latest_study(loc, str(StudyKind.TIMEFRAME), with_attr=CHOICE_ATTR)
    except StudyError:
        raise StudyError(f"no finished timeframe search in {loc.storage_url}: run `cappuccino search timeframe` first") from None


def _wall_seconds(study: optuna.Study) -> float | None:
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
    if not trials:
        return None
    return (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
