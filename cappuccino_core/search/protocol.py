"""The validation protocol every trial goes through: walk-forward folds with purge and embargo.

The search period is cut into ``n_folds`` consecutive validation blocks of time after a first
training stretch (``plan_folds``: boundaries on whole UTC days, so every bar interval validates
on the same spans). Each fold trains a fresh agent on the rows before its block less a purge of
``lookback + label_horizon`` rows (no training observation or reward reaches into the block) and
validates it on non-overlapping windows of ``window_hours`` (the arena's windows) in the block.
Walk-forward never trains after its block, so no embargo is needed. A fold with fewer than
``min_train_rows`` training rows is refused (``InsufficientHistory``): a long bar interval on a
short history would otherwise fit a few hundred rows and look good by luck.

Score of a fold: the annualised Sharpe of the per-bar returns in excess of equal-weight buy and
hold (``evaluation.scoring.excess_sharpe``, the one definition). Score of a trial: the mean of
the fold scores minus ``dispersion_penalty`` times their standard deviation. A fold whose score
is undefined fails the trial (``UndefinedScoreError``); it is never dropped or replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.clock import ensure_utc
from cappuccino_core.data.intervals import Interval
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.evaluation.scoring import SCORE_WINDOW_HOURS, window_bars, window_excess_returns
from cappuccino_core.evaluation.splits import Fold, RowRange, WindowMode
from cappuccino_core.features.panel import MarketPanel

if TYPE_CHECKING:  # training (torch) is imported by the functions that train: a stored spec reads without it
    from cappuccino_core.agents.fit import FitResult, ValidationSet


class UndefinedScoreError(ValueError):
    """A fold's validation score is undefined (e.g. constant excess returns)."""


class InsufficientHistory(ValueError):
    """A fold has fewer training rows than the protocol's minimum (the cell cannot be trained honestly)."""


@dataclass(frozen=True)
class ProtocolConfig:
    """How trials are validated.

    Attributes:
        n_folds: walk-forward validation blocks.
        min_train_fraction: share of the search rows before the first validation block.
        window_hours: length of one validation window (windows are non-overlapping).
        min_window_bars: the least bars of one window, whatever the interval.
        min_train_rows: the least training rows of a fold, whatever the interval.
        label_horizon: bars a reward looks ahead (1: decide at t, valued at t + 1).
        dispersion_penalty: weight of the fold scores' standard deviation in the trial score.
        mode: expanding or rolling training windows.
    """

    n_folds: int = 3
    min_train_fraction: float = 0.5
    window_hours: float = SCORE_WINDOW_HOURS
    min_window_bars: int = 5
    min_train_rows: int = 500
    label_horizon: int = 1
    dispersion_penalty: float = 0.5
    mode: WindowMode = WindowMode.EXPANDING

    def __post_init__(self) -> None:
        if self.n_folds < 1 or not 0 < self.min_train_fraction < 1 or self.window_hours <= 0:
            raise ValueError(f"invalid ProtocolConfig: {self}")
        if self.min_window_bars < 2 or self.label_horizon < 1 or self.dispersion_penalty < 0:
            raise ValueError(f"invalid ProtocolConfig: {self}")
        object.__setattr__(self, "mode", WindowMode(self.mode))

    def window_bars(self, interval: Interval) -> int:
        return window_bars(interval, self.window_hours, min_bars=self.min_window_bars)

    def purge_rows(self, lookback: int) -> int:
        return lookback + self.label_horizon

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mode": str(self.mode)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProtocolConfig:
        return cls(**data)


def plan_folds(panel: MarketPanel, lookback: int, protocol: ProtocolConfig, *,
               period_start: datetime | None = None) -> list[Fold]:
    """Walk-forward folds over the rows of ``panel`` (the search period), with boundaries in time.

    The validation blocks are ``n_folds`` consecutive spans of time that end with the panel and
    start after ``min_train_fraction`` of the period from ``period_start`` (default: the panel's
    first bar; a study passes its search start, which every interval shares, whereas the first
    bar after the indicators' warm-up comes later at longer intervals) to the panel's end, each
    boundary floored to a whole UTC day. Boundaries in time (not rows) give every bar interval of a timeframe search the very
    same validation spans, so the cells' scores compare the same market. A fold trains on the
    rows before its block less ``purge_rows`` (expanding: from the first row; rolling: as many
    rows as the first fold has).

    Raises:
        ValueError: the panel is too short for a validation bar in every block.
    """
    opens = panel.timestamps.astype(np.int64)
    bar = panel.interval.seconds * 1_000_000_000
    end = int(opens[-1]) + bar
    first = int(opens[0]) if period_start is None else int(ensure_utc(period_start).timestamp()) * 1_000_000_000
    start = _floor_day(first + int(protocol.min_train_fraction * (end - first)))
    edges = [start + _floor_day(int(k * (end - start) / protocol.n_folds)) for k in range(protocol.n_folds)] + [end]
    purge = protocol.purge_rows(lookback)
    folds: list[Fold] = []
    train_rows = None
    for k in range(protocol.n_folds):
        v_start = int(np.searchsorted(opens, edges[k], side="left"))
        v_stop = int(np.searchsorted(opens + bar, edges[k + 1], side="right"))
        train_stop = v_start - purge
        if v_stop <= v_start or train_stop < 1:
            raise ValueError(
                f"the {panel.interval} search panel ({panel.num_bars} rows) is too short for {protocol.n_folds} "
                f"validation block(s) after {protocol.min_train_fraction:.0%} of its time"
            )
        train_rows = train_rows or train_stop
        train_start = 0 if protocol.mode is WindowMode.EXPANDING else max(train_stop - train_rows, 0)
        folds.append(Fold(RowRange(train_start, train_stop), RowRange(v_start, v_stop)))
    return folds


_DAY_NS = 86_400 * 1_000_000_000


def _floor_day(ns: int) -> int:
    return ns - ns % _DAY_NS


def fold_validation(panel: MarketPanel, fold: Fold, lookback: int, protocol: ProtocolConfig) -> ValidationSet:
    """The validation windows of one fold: its block, preceded by ``lookback - 1`` rows of history."""
    start = fold.validation.start - (lookback - 1)
    if start < fold.train.stop:
        raise ValueError(f"fold history rows start at {start}, inside the training rows (< {fold.train.stop})")
    from cappuccino_core.agents.fit import ValidationSet

    return ValidationSet(panel.rows(start, fold.validation.stop), horizon=protocol.window_bars(panel.interval))


MIN_EPISODE_BARS = 16


def fold_env_config(env_config: EnvConfig, train_rows: int) -> EnvConfig:
    """The env of one fold: episodes shortened to fit its training rows, never below 16 bars.

    Episode length is in bars, so a long interval (1d) has far fewer rows than 1h over the same
    period; the episode (not the data) gives way, and the card of each fold records its length.

    Raises:
        ValueError: fewer than ``lookback + 16 + 1`` training rows.
    """
    fits = train_rows - env_config.lookback - 1
    if fits < MIN_EPISODE_BARS:
        raise ValueError(
            f"{train_rows} training rows leave {max(fits, 0)} bars per episode after a lookback of "
            f"{env_config.lookback}; at least {MIN_EPISODE_BARS} are needed (more history, a shorter interval or lookback)"
        )
    if fits >= env_config.episode_bars:
        return env_config
    return EnvConfig.from_dict({**env_config.to_dict(), "episode_bars": fits})


def trial_score(fold_scores: list[float], dispersion_penalty: float) -> float:
    """Mean fold score minus ``dispersion_penalty`` x their (population) standard deviation."""
    scores = np.asarray(fold_scores, dtype=np.float64)
    if scores.size == 0 or not np.all(np.isfinite(scores)):
        raise UndefinedScoreError(f"fold scores must be finite, got {fold_scores}")
    return float(scores.mean() - dispersion_penalty * scores.std())


@dataclass(frozen=True)
class FoldResult:
    """One fold's trained agent and its validation."""

    index: int
    fold: Fold
    score: float
    fit: FitResult

    @property
    def excess_returns(self) -> np.ndarray:
        return window_excess_returns(self.fit.validation_reports)


@dataclass(frozen=True)
class TrialValidation:
    """A trial's validation: its score, per-fold scores and the per-bar excess returns behind them."""

    score: float
    fold_scores: tuple[float, ...]
    folds: tuple[FoldResult, ...]

    @property
    def excess_returns(self) -> np.ndarray:
        """Per-bar excess returns over every validation window of every fold, in time order."""
        return np.concatenate([f.excess_returns for f in self.folds])


ProgressFn = Callable[[int, int, float], None]
"""``progress(fold_index, env_step, fold_validation_score)`` during training (pruning, curves)."""


def validate_trial(
    panel: MarketPanel,
    *,
    env_config: EnvConfig,
    ppo_config: PPOConfig,
    seed: int,
    protocol: ProtocolConfig,
    created_at: datetime,
    progress: ProgressFn | None = None,
    study: str | None = None,
    trial: int | None = None,
    fit: Callable[..., FitResult] | None = None,
    period_start: datetime | None = None,
) -> TrialValidation:
    """Train one agent per fold on ``panel`` (the search period) and score it out of sample.

    Raises:
        UndefinedScoreError: a fold's validation score is undefined.
        Whatever training raises (bad hyperparameters, non-finite losses, pruning).
    """
    if fit is None:
        from cappuccino_core.agents.fit import fit_agent as fit
    results: list[FoldResult] = []
    for k, fold in enumerate(plan_folds(panel, env_config.lookback, protocol, period_start=period_start)):
        if len(fold.train) < protocol.min_train_rows:
            raise InsufficientHistory(
                f"fold {k} has {len(fold.train)} training rows of {panel.interval} bars; at least "
                f"{protocol.min_train_rows} are needed (more history or a shorter interval)"
            )
        callback = None if progress is None else (lambda step, score, k=k: progress(k, step, score))
        fitted = fit(
            panel.rows(fold.train.start, fold.train.stop),
            env_config=fold_env_config(env_config, len(fold.train)), ppo_config=ppo_config, seed=seed + k, created_at=created_at,
            validation=fold_validation(panel, fold, env_config.lookback, protocol),
            callback=callback, study=study, trial=trial,
        )
        if fitted.validation_score is None:
            raise UndefinedScoreError(f"fold {k}: the validation Sharpe of excess returns is undefined")
        results.append(FoldResult(k, fold, fitted.validation_score, fitted))
    scores = [r.score for r in results]
    return TrialValidation(trial_score(scores, protocol.dispersion_penalty), tuple(scores), tuple(results))
