"""One trial, end to end: hyperparameters, fold training with pruning, the MLflow child run.

Every trial gets a child run the moment it starts, so complete, pruned and failed trials are
all recorded; a crashed worker's run is closed later by ``record.reconcile_runs``.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import optuna
import torch

from cappuccino_core.agents.budget import check_updates, completed_episodes
from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.agents.fit import FitResult, fit_agent, save_fit
from cappuccino_core.clock import Clock
from cappuccino_core.data.intervals import Interval
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.evaluation.metrics import per_bar_sharpe
from cappuccino_core.search.market import PanelCache
from cappuccino_core.search.evidence import validation_evidence
from cappuccino_core.search.protocol import TrialValidation, validate_trial
from cappuccino_core.search.space import suggest_timeframe, suggest_training
from cappuccino_core.search.spec import StudyKind, StudySpec
from cappuccino_core.tracking.plots import equity_curve_png
from cappuccino_core.tracking.runs import finish_trial_run, log_artifact_dir, log_curve, log_file, log_metrics, start_trial_run


@dataclass(frozen=True)
class StudyTracker:
    """Where a study's trials are recorded in MLflow."""

    client: object  # mlflow.MlflowClient
    experiment_id: str
    parent_run_id: str
    code_version: str


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an allocation failure (Python's, or torch's on CPU or GPU)."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def smaller_batch(ppo: PPOConfig) -> PPOConfig:
    """Half the parallel episodes and half the minibatch: half the memory of a rollout and an update."""
    if ppo.num_envs < 2:
        raise ValueError("cannot shrink the batch of a single-episode config further")
    num_envs = ppo.num_envs // 2
    minibatch = max(ppo.minibatch_size // 2, 2)
    return replace(ppo, num_envs=num_envs, minibatch_size=minibatch, total_steps=max(ppo.total_steps, num_envs * ppo.rollout_steps))


def encode_returns(returns: np.ndarray) -> str:
    """Per-bar returns as base64 float32 (stored with the trial for PBO and DSR)."""
    return base64.b64encode(np.asarray(returns, dtype="<f4").tobytes()).decode("ascii")


def decode_returns(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float64)


class StudyObjective:
    """The Optuna objective of one study (Phase 2 or Phase 3)."""

    def __init__(self, spec: StudySpec, panels: PanelCache, tracker: StudyTracker, clock: Clock, *,
                 fit: Callable[..., FitResult] = fit_agent, scratch: Path | None = None) -> None:
        self.spec, self.panels, self.tracker, self.clock, self._fit = spec, panels, tracker, clock, fit
        self.scratch = scratch

    def configs(self, trial: optuna.Trial) -> tuple[Interval, PPOConfig, EnvConfig]:
        """The trial's interval and configs (raises on an invalid combination: never swallowed)."""
        spec = self.spec
        if spec.kind is StudyKind.TIMEFRAME:
            interval, lookback = suggest_timeframe(trial, tuple(str(i) for i in spec.intervals), spec.lookbacks)
            return Interval(interval), spec.ppo, replace(spec.env, lookback=lookback)
        ppo, env = suggest_training(trial, spec.ppo, replace(spec.env, lookback=spec.lookback))
        return spec.interval, ppo, env

    def __call__(self, trial: optuna.Trial) -> float:
        spec, tracker = self.spec, self.tracker
        seed = spec.seed + trial.number
        run_id = None
        curve: list[tuple[int, float]] = []
        try:
            interval, ppo, env = self.configs(trial)
            check_updates(ppo)  # a trial that cannot learn is refused, never trained
            trial.set_user_attr("ppo_updates", ppo.num_updates)
            panel = self.panels.search(interval)
            run_id = self._start_run(trial, interval, env.lookback, panel.data_hash, panel.feature_spec.version, seed, ppo, env)

            def progress(fold: int, step: int, score: float) -> None:
                global_step = fold * ppo.total_steps + step
                curve.append((global_step, score))
                trial.report(score, global_step)
                if spec.pruner.enabled and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned in fold {fold} at step {step}: validation score {score:.4f}")

            validation = self._validate(trial, panel, ppo, env, seed, progress)
        except optuna.TrialPruned as exc:
            self._finish(run_id, curve, "PRUNED", str(exc))
            raise
        except BaseException as exc:
            self._finish(run_id, curve, "FAIL", f"{type(exc).__name__}: {exc}")
            raise
        try:
            self._record_complete(trial, run_id, curve, validation, interval)
        except BaseException as exc:
            finish_trial_run(tracker.client, run_id, "FAIL", f"recording the trial failed: {type(exc).__name__}: {exc}")
            raise
        return validation.score

    # ------------------------------------------------------------------ internals

    def _validate(self, trial, panel, ppo, env, seed, progress) -> TrialValidation:
        def run(config: PPOConfig) -> TrialValidation:
            return validate_trial(panel, env_config=env, ppo_config=config, seed=seed, protocol=self.spec.protocol,
                                  created_at=self.clock.now(), progress=progress, study=self.spec.name,
                                  trial=trial.number, fit=self._fit, period_start=self.spec.split.search_start)
        try:
            return run(ppo)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            smaller = smaller_batch(ppo)
            trial.set_user_attr("oom_retry", f"{type(exc).__name__}: {exc}; retried with num_envs={smaller.num_envs}, "
                                             f"minibatch_size={smaller.minibatch_size}")
            return run(smaller)

    def _start_run(self, trial, interval, lookback, data_hash, spec_version, seed, ppo, env) -> str:
        t = self.tracker
        tags = {
            "cappuccino.study": self.spec.name, "cappuccino.kind": str(self.spec.kind),
            "cappuccino.interval": str(interval), "cappuccino.lookback": str(lookback),
            "cappuccino.data_hash": data_hash, "cappuccino.feature_spec_version": spec_version,
            "cappuccino.code_version": t.code_version, "cappuccino.seed": str(seed),
            **{f"cappuccino.split.{k}": v for k, v in self.spec.split.to_dict().items()},
        }
        params = {**trial.params, **{f"ppo.{k}": v for k, v in ppo.to_dict().items()},
                  **{f"env.{k}": v for k, v in env.to_dict().items()}}
        run_id = start_trial_run(t.client, t.experiment_id, t.parent_run_id, trial_number=trial.number, tags=tags, params=params)
        trial.set_user_attr("mlflow_run_id", run_id)
        trial.set_user_attr("interval", str(interval))
        trial.set_user_attr("lookback", lookback)
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("feature_spec_version", spec_version)
        return run_id

    def _finish(self, run_id: str | None, curve, state: str, error: str | None) -> None:
        if run_id is None:
            return  # failed before its run existed: reconcile_runs gives it one, with the error
        if curve:
            log_curve(self.tracker.client, run_id, "validation_score", curve)
        finish_trial_run(self.tracker.client, run_id, state, error)

    def _record_complete(self, trial, run_id, curve, validation: TrialValidation, interval: Interval) -> None:
        client = self.tracker.client
        excess = validation.excess_returns
        trial.set_user_attr("fold_scores", list(validation.fold_scores))
        trial.set_user_attr("excess_returns", encode_returns(excess))
        trial.set_user_attr("per_bar_sharpe", per_bar_sharpe(excess))
        metrics: dict[str, float | None] = {"score": validation.score, "validation_bars": float(excess.size),
                                           "per_bar_sharpe": per_bar_sharpe(excess)}
        first = validation.folds[0].fit
        episodes = completed_episodes(first.ppo_config, first.env_config.episode_bars)
        trial.set_user_attr("completed_episodes", episodes)
        metrics["ppo_updates"] = float(first.ppo_config.num_updates)
        metrics["completed_episodes"] = float(episodes)
        evidence = validation_evidence(excess, seed=trial.number, interval=interval)
        trial.set_user_attr("evidence", evidence.to_dict())
        metrics["validation_ci_low"] = evidence.ci_low
        metrics["validation_mean_excess"] = evidence.mean_excess
        for fold in validation.folds:
            metrics[f"fold_{fold.index}_score"] = fold.score
            metrics[f"fold_{fold.index}_train_seconds"] = fold.fit.train.wall_seconds
            metrics[f"fold_{fold.index}_steps_per_second"] = fold.fit.train.steps_per_second
        log_metrics(client, run_id, metrics)
        if curve:
            log_curve(client, run_id, "validation_score", curve)
        scratch = Path(tempfile.mkdtemp(prefix=f"trial-{trial.number}-", dir=self.scratch))
        try:
            for fold in validation.folds:
                target = scratch / f"fold_{fold.index}"
                save_fit(fold.fit, target)
                log_artifact_dir(client, run_id, target, f"checkpoints/fold_{fold.index}")
            last = validation.folds[-1]
            png = equity_curve_png(last.fit.validation_reports, scratch / "equity.png",
                                   title=f"{self.spec.name} trial {trial.number} ({interval}), fold {last.index} validation")
            log_file(client, run_id, png, "plots")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        finish_trial_run(client, run_id, "COMPLETE", None)
