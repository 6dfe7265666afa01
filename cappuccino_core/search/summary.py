"""The record of a finished (or stopped) study: counts, best trial, importances, PBO and DSR.

* PBO (CSCV, ``evaluation.overfitting``) over the per-bar excess returns of every complete
  trial. It needs every trial validated on the same bars, so it is computed for a training
  study (one interval and lookback) and reported as not applicable, with the reason, when the
  complete trials' validation bars differ (a timeframe search).
* DSR of the best trial: its per-bar excess returns, deflated for every trial tried, counting
  all states of this study plus ``spec.prior_trials`` (the timeframe search before it), and the
  variance of the per-bar Sharpes of the complete trials.
* Parameter importances: Optuna's ``PedAnovaImportanceEvaluator`` (its 5.0 default; no
  scikit-learn), named in the record because evaluators disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
from optuna.trial import TrialState

from cappuccino_core.evaluation.overfitting import DSRResult, PBOResult, deflated_sharpe_ratio, probability_of_backtest_overfitting
from cappuccino_core.search.objective import decode_returns
from cappuccino_core.search.spec import StudySpec

IMPORTANCE_METHOD = "optuna.importance.PedAnovaImportanceEvaluator"
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


@dataclass(frozen=True)
class StudySummary:
    """What the parent run and ``cappuccino train status`` report about a study."""

    name: str
    kind: str
    cap: int
    trials_by_state: dict[str, int]
    best_value: float | None
    best_trial: int | None
    best_params: dict[str, Any]
    stopped_early: bool
    stop_reason: str | None
    dsr_tests: int
    pbo: float | None
    pbo_reason: str | None
    prob_oos_loss: float | None
    dsr: float | None
    dsr_reason: str | None
    best_per_bar_sharpe: float | None
    sr0: float | None
    importances: dict[str, float] = field(default_factory=dict)
    importance_method: str = IMPORTANCE_METHOD
    importance_reason: str | None = None
    min_ppo_updates: int | None = None
    max_ppo_updates: int | None = None
    min_completed_episodes: int | None = None
    with_evidence: int = 0

    @property
    def total_trials(self) -> int:
        return sum(self.trials_by_state.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_trials": self.total_trials}


def complete_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.state is TrialState.COMPLETE]


def summarise(study: optuna.Study, spec: StudySpec, *, pbo_splits: int = 16) -> StudySummary:
    """Summarise ``study`` (see the module docstring for PBO, DSR and importances)."""
    trials = study.get_trials(deepcopy=False)
    by_state = {s: sum(t.state.name == s for t in trials) for s in STATES}
    done = [t for t in trials if t.state is TrialState.COMPLETE]
    best = max(done, key=lambda t: t.value) if done else None
    attrs = study.user_attrs
    returns = [decode_returns(t.user_attrs["excess_returns"]) for t in done]
    pbo = _pbo(returns, pbo_splits)
    dsr_tests = len(trials) + spec.prior_trials
    dsr = _dsr(returns, done.index(best) if best else None, dsr_tests)
    importances, importance_reason = _importances(study, len(done))
    return StudySummary(
        name=spec.name, kind=str(spec.kind), cap=spec.cap, trials_by_state=by_state,
        best_value=None if best is None else float(best.value), best_trial=None if best is None else best.number,
        best_params={} if best is None else dict(best.params),
        stopped_early=bool(attrs.get("stopped_early", False)), stop_reason=attrs.get("stop_reason"),
        dsr_tests=dsr_tests, pbo=pbo.pbo if isinstance(pbo, PBOResult) else None,
        pbo_reason=pbo.reason if isinstance(pbo, PBOResult) else pbo,
        prob_oos_loss=pbo.prob_oos_loss if isinstance(pbo, PBOResult) else None,
        dsr=dsr.dsr if isinstance(dsr, DSRResult) else None,
        dsr_reason=dsr.reason if isinstance(dsr, DSRResult) else dsr,
        best_per_bar_sharpe=dsr.observed_sharpe if isinstance(dsr, DSRResult) else None,
        sr0=dsr.sr0 if isinstance(dsr, DSRResult) else None,
        importances=importances, importance_reason=importance_reason,
        min_ppo_updates=_extreme(trials, "ppo_updates", min), max_ppo_updates=_extreme(trials, "ppo_updates", max),
        min_completed_episodes=_extreme(done, "completed_episodes", min),
        with_evidence=sum(bool(t.user_attrs.get("evidence", {}).get("passed")) for t in done),
    )


def _extreme(trials: list[optuna.trial.FrozenTrial], attr: str, pick) -> int | None:
    """``pick`` (min or max) of a recorded per-trial count over the trials that have it; None if none does."""
    values = [int(t.user_attrs[attr]) for t in trials if attr in t.user_attrs]
    return pick(values) if values else None


def _pbo(returns: list[np.ndarray], n_splits: int) -> PBOResult | str:
    if len(returns) < 2:
        return f"PBO needs at least 2 complete trials, have {len(returns)}"
    lengths = {r.size for r in returns}
    if len(lengths) != 1:
        return f"not applicable: complete trials were validated on different bars (lengths {sorted(lengths)[:5]})"
    n_rows = lengths.pop()
    splits = min(n_splits, (n_rows // 2) // 2 * 2)
    if splits < 2:
        return f"PBO needs at least 4 validation bars, have {n_rows}"
    return probability_of_backtest_overfitting(np.column_stack(returns), n_splits=splits)


def _dsr(returns: list[np.ndarray], best_index: int | None, n_tests: int) -> DSRResult | str:
    if best_index is None:
        return "no complete trial"
    sharpes = [float(r.mean() / r.std()) for r in returns if r.size > 1 and r.std() > 0]
    variance = float(np.var(sharpes, ddof=1)) if len(sharpes) > 1 else 0.0
    return deflated_sharpe_ratio(returns[best_index], n_trials=max(n_tests, 1), sharpe_variance_across_trials=variance)


def _importances(study: optuna.Study, n_complete: int) -> tuple[dict[str, float], str | None]:
    if n_complete < 2:
        return {}, f"importances need at least 2 complete trials, have {n_complete}"
    try:
        values = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    except (ValueError, RuntimeError) as exc:  # e.g. every param constant across trials: reported, not hidden
        return {}, f"{type(exc).__name__}: {exc}"
    return {k: float(v) for k, v in values.items()}, None
