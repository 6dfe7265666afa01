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


def test_sb3_never_reaching_the_threshold_gives_a_flagged_lower_bound_from_the_cap(monkeypatch):
    from benchmarks import quality

    ours = [_curve((2.0, 1.0), (4.0, 6.0), (8.0, 8.0)), _curve((3.0, 5.0), (9.0, 9.0)), _curve((5.0, 7.0), (6.0, 10.0))]
    sb3 = [_curve((60.0, -12.0), (240.0, -11.0)) for _ in range(3)]
    runs = {"ours": iter(ours), "sb3": iter(sb3)}
    monkeypatch.setattr(quality, "build_market", lambda: None)
    monkeypatch.setattr(quality, "run_ours", lambda market, seed, cap: next(runs["ours"]))
    monkeypatch.setattr(quality, "run_sb3", lambda market, seed, cap: next(runs["sb3"]))
    out = quality.bench_quality(cap=240.0)
    assert out["ppo_quality_threshold_excess_sharpe"] == 4.5  # half the median final score (9.0)
    assert out["ppo_time_to_quality_seconds"] == 4.0
    assert out["sb3_time_to_quality_seconds"] is None
    assert out["sb3_time_to_quality_note"] == "not reached within the cap of 240 s"
    assert out["time_to_quality_ratio"] == 60.0
    assert out["time_to_quality_ratio_note"].startswith("lower bound")
    assert {"ppo_holdout_excess_sharpe_at_30s", "ppo_holdout_excess_sharpe_at_240s"} <= set(out)
    assert out["ppo_holdout_excess_sharpe_at_240s"] == {"ours": 9.0, "sb3": -11.0}


def test_a_shorter_cap_reports_no_score_at_times_beyond_it(monkeypatch):
    from benchmarks import quality

    monkeypatch.setattr(quality, "build_market", lambda: None)
    monkeypatch.setattr(quality, "run_ours", lambda market, seed, cap: _curve((3.0, 4.0), (6.0, 8.0)))
    monkeypatch.setattr(quality, "run_sb3", lambda market, seed, cap: _curve((30.0, -12.0), (60.0, -11.0)))
    out = quality.bench_quality(cap=60.0)
    assert out["ppo_quality_cap_seconds"] == 60.0
    assert "ppo_holdout_excess_sharpe_at_60s" in out and "ppo_holdout_excess_sharpe_at_120s" not in out
    assert out["sb3_time_to_quality_note"] == "not reached within the cap of 60 s"
