"""Hand-worked checks of every performance metric, including the undefined cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cappuccino_core.data.intervals import Interval
from cappuccino_core.evaluation import metrics as m

pytestmark = pytest.mark.filterwarnings("error")  # a numpy divide/invalid warning is a bug here

H1, D1 = Interval.H1, Interval.D1
SERIES = [0.01, -0.01, 0.02, 0.0]  # mean 0.005, squared deviations sum to 500e-6
SERIES_STD = math.sqrt(500e-6 / 3)
LOSING = [-0.01, -0.02, -0.03]  # mean -0.02, sample std 0.01


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


# ----------------------------------------------------------------------------- inputs


def test_returns_with_nan_are_refused_naming_the_index() -> None:
    with pytest.raises(ValueError, match=r"returns\[2\] is nan"):
        m.total_return([0.01, 0.02, float("nan")])


def test_returns_below_minus_one_are_refused() -> None:
    with pytest.raises(ValueError, match=r"returns\[1\].*below -1"):
        m.sharpe([0.01, -1.5], H1)


def test_two_dimensional_returns_are_refused() -> None:
    with pytest.raises(ValueError, match="1-D"):
        m.total_return(np.zeros((3, 2)))


# ----------------------------------------------------------------------------- total / annualised return


def test_total_return_compounds_bar_returns() -> None:
    assert m.total_return([0.1, -0.1]) == pytest.approx(1.1 * 0.9 - 1)
    assert m.total_return([0.05]) == pytest.approx(0.05)
    assert m.total_return(LOSING) == pytest.approx(0.99 * 0.98 * 0.97 - 1)


def test_total_return_is_zero_for_flat_minus_one_when_wiped_out_and_none_when_empty() -> None:
    assert m.total_return([0.0, 0.0, 0.0]) == 0.0
    assert m.total_return([0.5, -1.0, 0.2]) == -1.0
    assert m.total_return([]) is None


def test_annualised_return_is_geometric_over_bars_per_year() -> None:
    per_bar = 1.21 ** (1 / 730) - 1  # two daily years compounding to +21 %: 10 % a year
    assert m.annualised_return([per_bar] * 730, D1) == pytest.approx(0.10, rel=1e-9)
    assert m.annualised_return([0.01], H1) == pytest.approx(math.expm1(8760 * math.log1p(0.01)), rel=1e-9)
    assert m.annualised_return(LOSING, D1) == pytest.approx((0.99 * 0.98 * 0.97) ** (365 / 3) - 1)


def test_annualised_return_is_none_when_empty_or_overflowing_and_zero_when_flat() -> None:
    assert m.annualised_return([], H1) is None
    assert m.annualised_return([0.5], H1) is None  # 1.5 ** 8760 is not a float
    assert m.annualised_return([0.0] * 5, H1) == 0.0
    assert m.annualised_return([-1.0, 0.1], H1) == -1.0


# ----------------------------------------------------------------------------- volatility, Sharpe, Sortino


def test_annualised_volatility_is_sample_std_scaled_by_root_bars_per_year() -> None:
    assert m.annualised_volatility(SERIES, D1) == pytest.approx(SERIES_STD * math.sqrt(365))
    assert m.annualised_volatility(LOSING, H1) == pytest.approx(0.01 * math.sqrt(8760))


def test_annualised_volatility_is_zero_when_flat_and_none_for_one_bar() -> None:
    assert m.annualised_volatility([0.0] * 4, H1) == 0.0
    assert m.annualised_volatility([0.1] * 4, H1) == 0.0
    assert m.annualised_volatility([0.01], H1) is None
    assert m.annualised_volatility([], H1) is None


def test_sharpe_is_mean_over_sample_std_scaled_by_root_bars_per_year() -> None:
    assert m.sharpe(SERIES, D1) == pytest.approx(0.005 / SERIES_STD * math.sqrt(365))
    assert m.sharpe(LOSING, H1) == pytest.approx(-2.0 * math.sqrt(8760))
    assert m.per_bar_sharpe(LOSING) == pytest.approx(-2.0)


def test_sharpe_is_none_for_flat_constant_single_bar_and_empty_series() -> None:
    assert m.sharpe([0.0] * 10, H1) is None
    assert m.sharpe([0.1] * 10, H1) is None  # constant: zero volatility, not a huge Sharpe
    assert m.sharpe([0.01], H1) is None
    assert m.sharpe([], H1) is None


def test_sortino_uses_downside_deviation_over_all_bars() -> None:
    # only -0.01 is downside: DD = sqrt(1e-4 / 4) = 0.005, mean 0.005
    assert m.sortino(SERIES, D1) == pytest.approx(1.0 * math.sqrt(365))
    downside = math.sqrt((1e-4 + 4e-4 + 9e-4) / 3)
    assert m.sortino(LOSING, H1) == pytest.approx(-0.02 / downside * math.sqrt(8760))
    assert m.sortino([-0.02], D1) == pytest.approx(-math.sqrt(365))


def test_sortino_is_none_without_a_losing_bar_or_bars() -> None:
    assert m.sortino([0.01, 0.0, 0.02], H1) is None
    assert m.sortino([0.0, 0.0], H1) is None
    assert m.sortino([], H1) is None


# ----------------------------------------------------------------------------- drawdown, Calmar, win rate


def test_max_drawdown_is_the_largest_fall_from_a_peak() -> None:
    # equity 1.1, 0.55, 0.66, 0.99: peak 1.1, trough 0.55
    assert m.max_drawdown([0.1, -0.5, 0.2, 0.5]) == pytest.approx(0.5)
    assert m.max_drawdown([-0.1, 0.05]) == pytest.approx(0.1)  # the starting equity is a peak
    assert m.max_drawdown(LOSING) == pytest.approx(1 - 0.99 * 0.98 * 0.97)


def test_max_drawdown_is_zero_never_down_one_when_wiped_out_none_when_empty() -> None:
    assert m.max_drawdown([0.01, 0.0, 0.02]) == 0.0
    assert m.max_drawdown([0.0] * 3) == 0.0
    assert m.max_drawdown([0.2, -1.0, 0.5]) == 1.0
    assert m.max_drawdown([]) is None


def test_max_drawdown_matches_a_plain_loop_on_a_random_series() -> None:
    returns = np.random.default_rng(3).normal(0.0, 0.02, 500)
    equity, peak, worst = 1.0, 1.0, 0.0
    for r in returns:
        equity *= 1 + r
        peak = max(peak, equity)
        worst = max(worst, 1 - equity / peak)
    assert m.max_drawdown(returns) == pytest.approx(worst)


def test_calmar_is_annualised_return_over_max_drawdown() -> None:
    series = [0.1, -0.5, 0.2, 0.5]  # total 0.99 - 1, drawdown 0.5
    assert m.calmar(series, D1) == pytest.approx((0.99 ** (365 / 4) - 1) / 0.5)


def test_calmar_is_none_without_drawdown_or_bars() -> None:
    assert m.calmar([0.01, 0.02], H1) is None
    assert m.calmar([0.0] * 4, H1) is None
    assert m.calmar([], H1) is None


def test_win_rate_bars_ignores_bars_that_did_not_move() -> None:
    assert m.win_rate_bars([0.01, 0.0, -0.02, 0.03, 0.0]) == pytest.approx(2 / 3)
    assert m.win_rate_bars(LOSING) == 0.0
    assert m.win_rate_bars([0.01]) == 1.0


def test_win_rate_bars_is_none_when_nothing_moved() -> None:
    assert m.win_rate_bars([0.0, 0.0]) is None
    assert m.win_rate_bars([]) is None


# ----------------------------------------------------------------------------- benchmark


def test_excess_returns_subtract_the_benchmark_bar_by_bar() -> None:
    np.testing.assert_allclose(m.excess_returns([0.1, 0.0, -0.1], [0.05, 0.01, -0.1]), [0.05, -0.01, 0.0])


def test_benchmark_of_another_length_is_refused() -> None:
    with pytest.raises(ValueError, match="same bars"):
        m.alpha([0.1, 0.2], [0.1])


def test_alpha_is_total_return_minus_benchmark_total_return() -> None:
    assert m.alpha([0.1, 0.1], [0.05, 0.0]) == pytest.approx(0.21 - 0.05)
    assert m.alpha(LOSING, [0.0, 0.0, 0.0]) == pytest.approx(0.99 * 0.98 * 0.97 - 1)
    assert m.alpha([], []) is None


def test_annualised_alpha_is_the_difference_of_annualised_returns() -> None:
    r, b = [0.001] * 365, [0.0005] * 365
    assert m.annualised_alpha(r, b, D1) == pytest.approx(1.001**365 - 1.0005**365)
    assert m.annualised_alpha([], [], D1) is None


# ----------------------------------------------------------------------------- weights


def test_turnover_counts_moving_half_the_equity_as_half_either_way() -> None:
    from_cash = m.turnover_per_bar([[0.0, 0.0]], [[0.5, 0.0]])
    between_assets = m.turnover_per_bar([[0.5, 0.0]], [[0.0, 0.5]])
    np.testing.assert_allclose(np.concatenate([from_cash, between_assets]), [0.5, 0.5])


def test_turnover_is_the_mean_per_bar_and_annualises_by_bars_per_year() -> None:
    before = np.array([[0.0, 0.0], [0.5, 0.0], [0.45, 0.0], [0.0, 0.5]])
    after = np.array([[0.5, 0.0], [0.5, 0.0], [0.0, 0.5], [0.0, 0.5]])
    assert m.turnover(before, after) == pytest.approx((0.5 + 0 + 0.5 + 0) / 4)
    assert m.annualised_turnover(before, after, D1) == pytest.approx(0.25 * 365)
    assert m.turnover(np.zeros((0, 2)), np.zeros((0, 2))) is None


def test_turnover_accepts_one_asset_as_a_vector_and_refuses_mismatched_shapes() -> None:
    assert m.turnover([0.0, 1.0], [1.0, 0.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        m.turnover(np.zeros((3, 2)), np.zeros((3, 3)))


def test_exposure_is_the_mean_gross_fraction_invested() -> None:
    assert m.exposure([[0.5, 0.25], [0.0, 0.0], [1.0, 0.0]]) == pytest.approx(1.75 / 3)
    assert m.exposure([[-0.5, 0.5]]) == pytest.approx(1.0)
    assert m.exposure(np.zeros((0, 3))) is None


def test_weights_with_nan_are_refused_naming_the_cell() -> None:
    with pytest.raises(ValueError, match=r"weights\[1, 0\] is nan"):
        m.exposure([[0.1], [float("nan")]])


# ----------------------------------------------------------------------------- round trips


def test_a_long_round_trip_earns_price_change_less_fees() -> None:
    (trip,) = m.round_trips_from_fills([2.0, -2.0], [100.0, 110.0], [1.0, 1.0])
    assert (trip.side, trip.open_fill, trip.close_fill) == (1, 0, 1)
    assert trip.pnl == pytest.approx(-200 - 1 + 220 - 1)
    assert trip.entry_notional == pytest.approx(200.0)
    assert trip.pnl_fraction == pytest.approx(18 / 200)
    assert trip.fees == pytest.approx(2.0)


def test_a_short_round_trip_loses_when_price_rises() -> None:
    (trip,) = m.round_trips_from_fills([-1.0, 1.0], [100.0, 105.0], [0.0, 0.0])
    assert trip.side == -1
    assert trip.pnl == pytest.approx(-5.0)


def test_partial_fills_that_sum_to_flat_close_the_trip_despite_float_rounding() -> None:
    trips = m.round_trips_from_fills([0.1, 0.2, -0.3], [10.0, 10.0, 11.0], [0.0, 0.0, 0.0])
    assert len(trips) == 1
    assert trips[0].entry_notional == pytest.approx(3.0)
    assert trips[0].pnl == pytest.approx(0.3)


def test_a_fill_through_zero_closes_the_trip_and_opens_the_opposite_one() -> None:
    trips = m.round_trips_from_fills([1.0, -3.0, 2.0], [100.0, 110.0, 100.0], [0.3, 0.9, 0.0])
    assert [t.side for t in trips] == [1, -1]
    assert trips[0].pnl == pytest.approx(-100 - 0.3 + 110 - 0.3)
    assert trips[1].pnl == pytest.approx(220 - 0.6 - 200)
    assert trips[1].entry_notional == pytest.approx(220.0)
    assert (trips[1].open_fill, trips[1].close_fill) == (1, 2)


def test_an_open_position_after_the_last_fill_is_not_a_closed_trip() -> None:
    trips = m.round_trips_from_fills([1.0, -1.0, 1.0], [10.0, 9.0, 9.0], [0.0, 0.0, 0.0])
    assert len(trips) == 1


def test_fills_of_several_assets_are_paired_per_asset() -> None:
    trips = m.round_trips_from_fills(
        [1.0, 2.0, -1.0, -2.0], [10.0, 5.0, 12.0, 4.0], [0.0] * 4, asset=["BTC/USD", "ETH/USD", "BTC/USD", "ETH/USD"]
    )
    assert [(t.asset, t.pnl) for t in trips] == [("BTC/USD", pytest.approx(2.0)), ("ETH/USD", pytest.approx(-2.0))]


def test_fills_with_zero_quantity_or_bad_price_are_refused_naming_the_fill() -> None:
    with pytest.raises(ValueError, match="fill 1: qty"):
        m.round_trips_from_fills([1.0, 0.0], [10.0, 10.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="fill 0: price"):
        m.round_trips_from_fills([1.0], [0.0], [0.0])
    with pytest.raises(ValueError, match="one length"):
        m.round_trips_from_fills([1.0], [1.0, 2.0], [0.0])


def test_trade_win_rate_is_the_fraction_of_profitable_round_trips() -> None:
    trips = m.round_trips_from_fills([1.0, -1.0, -1.0, 1.0, 1.0, -1.0], [10, 11, 10, 11, 10, 12], [0.0] * 6)
    assert m.trade_count(trips) == 3
    assert m.win_rate_trades(trips) == pytest.approx(2 / 3)
    assert m.win_rate_trades([]) is None
    assert m.trade_count([]) == 0


# ----------------------------------------------------------------------------- the report


def test_report_of_a_flat_series_has_none_where_undefined_and_no_nan() -> None:
    report = m.compute_performance([0.0] * 24, [0.0] * 24, H1, weights=np.zeros((24, 2)))
    d = report.to_dict()
    for key in ("sharpe", "sortino", "calmar", "win_rate_bars", "turnover", "trade_count"):
        assert d[key] is None, key
    assert d["total_return"] == 0.0 and d["max_drawdown"] == 0.0 and d["alpha"] == 0.0
    assert d["annualised_volatility"] == 0.0 and d["exposure"] == 0.0
    assert d["interval"] == "1h" and d["bars"] == 24
    assert not any(_is_nan(v) for v in d.values())


def test_report_of_an_empty_series_is_undefined_everywhere_but_its_size() -> None:
    d = m.compute_performance([], [], D1).to_dict()
    assert d["bars"] == 0 and d["interval"] == "1d"
    assert all(v is None for k, v in d.items() if k not in ("bars", "interval"))


def test_report_of_a_single_losing_bar() -> None:
    d = m.compute_performance([-0.02], [0.01], D1).to_dict()
    assert d["total_return"] == pytest.approx(-0.02)
    assert d["sharpe"] is None and d["annualised_volatility"] is None
    assert d["sortino"] == pytest.approx(-math.sqrt(365))
    assert d["max_drawdown"] == pytest.approx(0.02)
    assert d["win_rate_bars"] == 0.0
    assert d["alpha"] == pytest.approx(-0.03)
    assert not any(_is_nan(v) for v in d.values())


def test_report_agrees_with_each_metric_and_has_stable_keys() -> None:
    rng = np.random.default_rng(7)
    r, b = rng.normal(0.001, 0.01, 200), rng.normal(0.0, 0.01, 200)
    after = rng.uniform(0, 0.5, (200, 2))
    before = np.clip(after + rng.normal(0, 0.05, (200, 2)), 0, None)
    trips = m.round_trips_from_fills([1.0, -1.0], [10.0, 11.0], [0.0, 0.0])
    report = m.compute_performance(r, b, H1, weights=after, weights_before_trade=before, round_trips=trips)
    assert report.sharpe == m.sharpe(r, H1)
    assert report.sortino == m.sortino(r, H1)
    assert report.calmar == m.calmar(r, H1)
    assert report.alpha == m.alpha(r, b)
    assert report.benchmark_total_return == m.total_return(b)
    assert report.turnover == m.turnover(before, after)
    assert report.exposure == m.exposure(after)
    assert (report.trade_count, report.win_rate_trades) == (1, 1.0)
    assert list(report.to_dict()) == [
        "bars", "interval", "total_return", "annualised_return", "annualised_volatility", "sharpe",
        "sortino", "max_drawdown", "calmar", "win_rate_bars", "benchmark_total_return", "alpha",
        "annualised_alpha", "trade_count", "win_rate_trades", "turnover", "annualised_turnover", "exposure",
    ]


def test_report_without_benchmark_has_no_alpha() -> None:
    report = m.compute_performance([0.01, -0.01], None, H1)
    assert report.alpha is None and report.benchmark_total_return is None
    assert report.total_return == pytest.approx(1.01 * 0.99 - 1)


def test_report_refuses_weights_for_other_bars() -> None:
    with pytest.raises(ValueError, match="weights has 3 rows but returns has 2 bars"):
        m.compute_performance([0.01, 0.02], None, H1, weights=np.zeros((3, 1)))
