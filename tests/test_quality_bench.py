"""The time-to-quality benchmark's arithmetic: first crossing, the policy held at a time, medians of "never"."""

from __future__ import annotations

from benchmarks.quality import Curve, _median_or_none


def _curve(*points: tuple[float, float | None]) -> Curve:
    return Curve(tuple((t, int(1000 * t), s) for t, s in points), train_seconds=points[-1][0], env_steps=1)


def test_time_to_quality_is_the_first_checkpoint_at_or_above_the_threshold():
    curve = _curve((5.0, 0.5), (10.0, 2.0), (15.0, 1.0), (20.0, 3.0))
    assert curve.first_reaching(2.0) == 10.0
    assert curve.first_reaching(2.5) == 20.0
    assert curve.first_reaching(4.0) is None


def test_an_undefined_score_never_counts_as_reaching_the_threshold():
    assert _curve((5.0, None), (9.0, 1.0)).first_reaching(0.5) == 9.0


def test_the_score_at_a_time_is_that_of_the_last_checkpoint_by_then():
    curve = _curve((12.0, 1.0), (40.0, 2.0))
    assert curve.score_at(10.0) is None  # no policy scored yet
    assert curve.score_at(30.0) == 1.0
    assert curve.score_at(120.0) == 2.0  # a run that stopped early keeps its final policy


def test_the_median_is_none_when_the_middle_seed_never_reached_the_threshold():
    assert _median_or_none([3.0, None, 5.0]) == 5.0
    assert _median_or_none([3.0, None, None]) is None
    assert _median_or_none([4.0, 2.0, 9.0]) == 4.0
