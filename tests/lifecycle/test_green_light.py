"""The green light: each of the owner's rules at and around its threshold, on constructed equity curves."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine

from cappuccino_core.data.intervals import Interval
from cappuccino_core.evaluation.metrics import max_drawdown, sharpe
from cappuccino_core.lifecycle.green_light import GreenLightConfig, decide_green_light
from cappuccino_core.lifecycle.store import LifecycleStore
from cappuccino_core.lifecycle.track_record import TrackRecord

T0 = datetime(2024, 6, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
BARS = 48  # two days of hourly bars
RULES = ["history", "alpha", "sharpe", "max_drawdown", "errors"]


def steady(n: int = BARS) -> np.ndarray:
    """A calm, profitable path: +0.2 %, -0.1 %, ... (Sharpe ~30, drawdown 0.1 %)."""
    return np.where(np.arange(n) % 2 == 0, 0.002, -0.001)


def record(returns: np.ndarray, benchmark: np.ndarray | None = None, *, errors: tuple[datetime, ...] = (),
           start: datetime = T0) -> TrackRecord:
    times = tuple(start + (i + 1) * HOUR for i in range(len(returns)))
    bench = np.zeros(len(returns)) if benchmark is None else benchmark
    return TrackRecord(start, times, returns, bench, Interval.H1, errors)


def decide(track: TrackRecord, **config: float) -> dict[str, bool]:
    decision = decide_green_light(track, model_id="models:/m/1", decided_at=track.end,
                                  config=GreenLightConfig(**config))
    outcomes = {r.name: r.passed for r in decision.rules}
    assert decision.allowed == all(outcomes.values())
    return outcomes


def only_failing(outcomes: dict[str, bool]) -> list[str]:
    return [name for name in RULES if not outcomes[name]]


def test_a_steady_profitable_two_days_gets_the_green_light_with_every_rule_shown() -> None:
    decision = decide_green_light(record(steady()), model_id="models:/m/1", decided_at=T0 + 2 * BARS * HOUR)
    assert decision.allowed and decision.reasons == ()
    as_dict = json.loads(json.dumps(decision.to_dict(), allow_nan=False))
    assert [r["name"] for r in as_dict["rules"]] == RULES
    assert [(r["comparison"], r["threshold"]) for r in as_dict["rules"]] == [
        (">=", 2.0), (">", 0.0), (">", 0.1), ("<", 0.15), ("<=", 0.0)]
    assert decision.rule("sharpe").value == pytest.approx(sharpe(steady(), Interval.H1))
    assert as_dict["window"]["returns"] == BARS


# -- history ---------------------------------------------------------------------------------------


def test_history_needs_a_full_two_days() -> None:
    assert only_failing(decide(record(steady(BARS - 1)))) == ["history"]
    assert only_failing(decide(record(steady(BARS)))) == []


def test_only_the_last_two_days_are_judged() -> None:
    bad_start = np.full(3 * 24, -0.004)  # three losing days, then two good ones
    decision = decide_green_light(record(np.concatenate([bad_start, steady()])), model_id="models:/m/1",
                                  decided_at=T0 + 5 * 24 * HOUR)
    assert decision.allowed
    assert decision.rule("history").value == pytest.approx(5.0)
    assert decision.window_returns == BARS


# -- alpha -----------------------------------------------------------------------------------------


def test_alpha_exactly_zero_fails_and_just_above_passes() -> None:
    returns = steady()
    assert only_failing(decide(record(returns, benchmark=returns))) == ["alpha"]
    assert only_failing(decide(record(returns, benchmark=returns - 1e-6))) == []
    assert only_failing(decide(record(returns, benchmark=returns + 1e-6))) == ["alpha"]


# -- Sharpe ----------------------------------------------------------------------------------------


def with_sharpe(target: float, n: int = BARS, swing: float = 0.001) -> np.ndarray:
    """Alternating mean +- swing with the mean chosen so the annualised Sharpe is ``target``."""
    std = swing * math.sqrt(n / (n - 1))  # sample std of +-swing around the mean
    mean = target * std / math.sqrt(Interval.H1.bars_per_year)
    return mean + np.where(np.arange(n) % 2 == 0, swing, -swing)


def test_sharpe_at_the_threshold_fails_and_around_it_is_decided_by_the_side() -> None:
    at = with_sharpe(0.1)
    assert sharpe(at, Interval.H1) == pytest.approx(0.1, rel=1e-12)
    assert only_failing(decide(record(at))) == ["sharpe"]
    assert only_failing(decide(record(with_sharpe(0.1 * (1 + 1e-6))))) == []
    assert only_failing(decide(record(with_sharpe(0.1 * (1 - 1e-6))))) == ["sharpe"]


def test_an_undefined_sharpe_fails_and_says_so() -> None:
    flat = np.zeros(BARS)
    decision = decide_green_light(record(flat, benchmark=flat - 1e-4), model_id="models:/m/1", decided_at=T0)
    assert [r.name for r in decision.rules if not r.passed] == ["sharpe"]
    assert "undefined" in decision.rule("sharpe").detail


# -- drawdown --------------------------------------------------------------------------------------


def with_drawdown(depth: float) -> np.ndarray:
    """The steady path with one fall of ``depth`` from a peak, recovered on the next bar."""
    returns = steady()
    returns[9] = -depth  # bar 8 (+0.2 %) is a peak
    returns[10] = 1.0 / (1.0 - depth) - 1.0
    return returns


def test_max_drawdown_at_15_percent_fails_and_just_below_passes() -> None:
    at = with_drawdown(0.15)
    assert max_drawdown(at) == pytest.approx(0.15, rel=1e-12)
    assert only_failing(decide(record(at))) == ["max_drawdown"]
    assert only_failing(decide(record(with_drawdown(0.1499)))) == []
    assert only_failing(decide(record(with_drawdown(0.1501)))) == ["max_drawdown"]


# -- errors ----------------------------------------------------------------------------------------


def test_one_error_in_the_window_fails_and_an_older_one_does_not_count() -> None:
    long = np.concatenate([steady(3 * 24), steady()])
    in_window = (T0 + 4 * 24 * HOUR,)
    before_window = (T0 + 24 * HOUR,)
    assert only_failing(decide(record(long, errors=in_window))) == ["errors"]
    assert only_failing(decide(record(long, errors=before_window))) == []
    assert only_failing(decide(record(long, errors=in_window), max_errors=1)) == []


# -- recording -------------------------------------------------------------------------------------


def test_the_decision_is_stored_with_every_rule(engine: Engine) -> None:
    store = LifecycleStore(engine)
    decision = decide_green_light(record(with_drawdown(0.2)), model_id="models:/m/1", decided_at=T0)
    store.record_gate_decision("green_light", "models:/m/1", allowed=decision.allowed,
                               decided_at=decision.decided_at, decision=decision.to_dict())
    (stored,) = store.gate_decisions(model_id="models:/m/1")
    assert stored.allowed is False
    assert stored.decision == json.loads(json.dumps(decision.to_dict()))
    assert [r["passed"] for r in stored.decision["rules"]] == [True, True, True, False, True]


def test_bad_criteria_are_refused() -> None:
    with pytest.raises(ValueError, match="window_days"):
        GreenLightConfig(window_days=0)
    with pytest.raises(ValueError, match="max_drawdown"):
        GreenLightConfig(max_drawdown=1.5)
    with pytest.raises(ValueError, match="max_errors"):
        GreenLightConfig(max_errors=-1)
