"""The green light for live: the owner's criteria over the production model's last days on paper.

All rules are required (defaults: the last 2 days):

* ``history`` — the record covers at least the whole window (a full 2 days of marks);
* ``alpha`` — outperformance of the equal-weight buy and hold over the window ``> 0``
  (``metrics.alpha``: total return minus the benchmark's total return on the same bars);
* ``sharpe`` — annualised Sharpe ratio over the window ``> 0.1`` (``metrics.sharpe``);
* ``max_drawdown`` — maximum drawdown over the window ``< 15 %`` (``metrics.max_drawdown``);
* ``errors`` — errors or crashes recorded in the window ``<= 0``.

Every number comes from ``evaluation.metrics``; a figure that is undefined there (a Sharpe
ratio of a flat series, anything of an empty window) fails its rule. Thresholds compare as
``thresholds.holds`` says (a value at a strict threshold fails). The decision is a frozen
value with each rule's value, threshold and outcome, stored with
``LifecycleStore.record_gate_decision`` and tagged in MLflow with ``mirror.mirror_gate_decision``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from cappuccino_core.clock import ensure_utc
from cappuccino_core.evaluation.metrics import alpha, max_drawdown, sharpe
from cappuccino_core.lifecycle.thresholds import Comparison, holds
from cappuccino_core.lifecycle.track_record import TrackRecord

GATE_NAME = "green_light"


@dataclass(frozen=True)
class GreenLightConfig:
    """The owner's criteria for moving the production model to live."""

    window_days: float = 2.0  # judge the last this many days of the production model's paper record
    min_alpha: float = 0.0  # alpha against the equal-weight buy and hold must be above this
    min_sharpe: float = 0.1  # annualised Sharpe ratio must be above this
    max_drawdown: float = 0.15  # maximum drawdown (a fraction) must be below this
    max_errors: int = 0  # errors or crashes in the window must be at most this (0: none)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.window_days) and self.window_days > 0):
            raise ValueError(f"window_days must be a positive number, got {self.window_days!r}")
        if not (math.isfinite(self.min_alpha) and math.isfinite(self.min_sharpe)):
            raise ValueError("min_alpha and min_sharpe must be finite")
        if not 0.0 < self.max_drawdown <= 1.0:
            raise ValueError(f"max_drawdown must be in (0, 1], got {self.max_drawdown!r}")
        if isinstance(self.max_errors, bool) or not isinstance(self.max_errors, int) or self.max_errors < 0:
            raise ValueError(f"max_errors must be an int >= 0, got {self.max_errors!r}")

    @property
    def window(self) -> timedelta:
        """The judged window as a duration."""
        return timedelta(days=self.window_days)


@dataclass(frozen=True)
class RuleOutcome:
    """One rule of a gate: the value, how it must compare with the threshold, and whether it did."""

    name: str
    value: float | None
    comparison: Comparison
    threshold: float
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """Return the outcome as a JSON-ready dict."""
        return {"name": self.name, "value": self.value, "comparison": str(self.comparison),
                "threshold": self.threshold, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class GreenLightDecision:
    """Whether the production model may go live, rule by rule."""

    model_id: str
    decided_at: datetime
    allowed: bool
    rules: tuple[RuleOutcome, ...]
    window_start: datetime
    window_end: datetime
    window_returns: int
    config: GreenLightConfig

    @property
    def reasons(self) -> tuple[str, ...]:
        """The details of the rules that failed (empty when allowed)."""
        return tuple(r.detail for r in self.rules if not r.passed)

    def rule(self, name: str) -> RuleOutcome:
        """Return the outcome of rule ``name``."""
        return next(r for r in self.rules if r.name == name)

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as a JSON-ready dict (what the database and MLflow record)."""
        return {
            "gate": GATE_NAME, "model_id": self.model_id, "decided_at": self.decided_at.isoformat(),
            "allowed": self.allowed, "rules": [r.to_dict() for r in self.rules],
            "window": {"start": self.window_start.isoformat(), "end": self.window_end.isoformat(),
                       "returns": self.window_returns},
            "config": asdict(self.config),
        }


def decide_green_light(
    record: TrackRecord, *, model_id: str, decided_at: datetime, config: GreenLightConfig | None = None
) -> GreenLightDecision:
    """Judge the production model's paper record against the owner's criteria.

    Args:
        record: the production model's track record (returns and the equal-weight buy-and-hold
            benchmark returns on the same bars, errors); only its last ``window_days`` count.
        model_id: the model judged.
        decided_at: when the decision is taken (UTC).
        config: the criteria (default the owner's).
    """
    config = config or GreenLightConfig()
    window = record.last(config.window)
    days = record.span.total_seconds() / 86400
    values = {
        "history": days,
        "alpha": alpha(window.returns, window.benchmark_returns) if window.returns.size else None,
        "sharpe": sharpe(window.returns, window.interval),
        "max_drawdown": max_drawdown(window.returns),
        "errors": float(len(window.error_times)),
    }
    rules = (
        _rule("history", values["history"], Comparison.AT_LEAST, config.window_days,
              f"{days:.3f} days of record, need {config.window_days:g}"),
        _rule("alpha", values["alpha"], Comparison.ABOVE, config.min_alpha,
              f"alpha vs equal-weight buy and hold {_fmt(values['alpha'])}, need > {config.min_alpha:g}"),
        _rule("sharpe", values["sharpe"], Comparison.ABOVE, config.min_sharpe,
              f"Sharpe {_fmt(values['sharpe'])}, need > {config.min_sharpe:g}"),
        _rule("max_drawdown", values["max_drawdown"], Comparison.BELOW, config.max_drawdown,
              f"max drawdown {_fmt(values['max_drawdown'])}, need < {config.max_drawdown:g}"),
        _rule("errors", values["errors"], Comparison.AT_MOST, float(config.max_errors),
              f"{len(window.error_times)} error(s) in the window, allowed {config.max_errors}"),
    )
    return GreenLightDecision(
        model_id=model_id, decided_at=ensure_utc(decided_at), allowed=all(r.passed for r in rules), rules=rules,
        window_start=window.start, window_end=window.end, window_returns=int(window.returns.size), config=config,
    )


def _rule(name: str, value: float | None, comparison: Comparison, threshold: float, detail: str) -> RuleOutcome:
    passed = holds(value, comparison, threshold)
    if value is None:
        detail += " (undefined on this window)"
    return RuleOutcome(name, value, comparison, threshold, passed, detail)


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.6g}"
