"""The capital ramp: 25 %, then 50 %, then 100 % of live capital, each after N profitable days."""

from __future__ import annotations

import pytest

from cappuccino_core.lifecycle.ramp import RampConfig, ramp_state

CONFIG = RampConfig(live_capital=10_000.0, profitable_days_per_step=2)


def test_a_new_live_model_starts_on_a_quarter_of_the_capital() -> None:
    state = ramp_state([], CONFIG)
    assert (state.step, state.fraction, state.capital, state.days_to_next_step) == (0, 0.25, 2_500.0, 2)


def test_each_step_comes_after_the_configured_number_of_profitable_days() -> None:
    assert ramp_state([0.01], CONFIG).capital == 2_500.0
    assert ramp_state([0.01, 0.02], CONFIG).capital == 5_000.0
    assert ramp_state([0.01, 0.02, 0.01], CONFIG).profitable_days_on_step == 1
    full = ramp_state([0.01, 0.02, 0.01, 0.03], CONFIG)
    assert (full.step, full.capital, full.days_to_next_step) == (2, 10_000.0, None)
    assert ramp_state([0.01] * 20, CONFIG).capital == 10_000.0


def test_losing_and_flat_days_do_not_count_and_do_not_reset() -> None:
    state = ramp_state([0.01, -0.02, 0.0, 0.01], CONFIG)
    assert (state.step, state.capital) == (1, 5_000.0)
    assert ramp_state([-0.01, 0.0, -0.03], CONFIG).profitable_days_on_step == 0


def test_steps_and_days_are_configurable() -> None:
    config = RampConfig(live_capital=1_000.0, fractions=(0.1, 1.0), profitable_days_per_step=3)
    assert ramp_state([0.01, 0.01], config).capital == pytest.approx(100.0)
    assert ramp_state([0.01, 0.01, 0.01], config).capital == 1_000.0


def test_bad_ramps_and_bad_returns_are_refused() -> None:
    with pytest.raises(ValueError, match="end at 1.0"):
        RampConfig(live_capital=1.0, fractions=(0.25, 0.5))
    with pytest.raises(ValueError, match="increase"):
        RampConfig(live_capital=1.0, fractions=(0.5, 0.25, 1.0))
    with pytest.raises(ValueError, match="live_capital"):
        RampConfig(live_capital=0.0)
    with pytest.raises(ValueError, match="profitable_days_per_step"):
        RampConfig(live_capital=1.0, profitable_days_per_step=0)
    with pytest.raises(ValueError, match="daily_returns\\[1\\] is nan"):
        ramp_state([0.01, float("nan")], CONFIG)
