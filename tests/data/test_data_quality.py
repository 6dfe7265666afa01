"""Bar validation, quality reports and the freshness gate, on small hand-built tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from cappuccino_core.data.bars import BAR_SCHEMA, REQUIRED_COLUMNS
from cappuccino_core.data.errors import BarDataError, StaleDataError
from cappuccino_core.data.freshness import FreshnessPolicy, check_freshness, require_fresh
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.quality import Gap, QualityReport, assess_quality, find_gaps, validate_bars

H = timedelta(hours=1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def set_cell(df: pl.DataFrame, column: str, row: int, value: Any) -> pl.DataFrame:
    """Return ``df`` with one cell replaced."""
    is_row = pl.int_range(pl.len()) == row
    return df.with_columns(pl.when(is_row).then(pl.lit(value)).otherwise(pl.col(column)).alias(column))


def hand_bars(hours: list[float], volumes: list[float] | None = None) -> pl.DataFrame:
    """Flat bars (O=H=L=C=100) at the given hour offsets from T0."""
    n = len(hours)
    return pl.DataFrame(
        {
            "timestamp": pl.Series([T0 + h * H for h in hours], dtype=pl.Datetime("us", "UTC")),
            "open": [100.0] * n,
            "high": [101.0] * n,
            "low": [99.0] * n,
            "close": [100.0] * n,
            "volume": volumes if volumes is not None else [1.0] * n,
        }
    )


def refusal(df: pl.DataFrame, interval: Interval = Interval.H1) -> str:
    with pytest.raises(BarDataError) as info:
        validate_bars(df, where="test.parquet", interval=interval)
    assert info.value.where == "test.parquet"
    return str(info.value)


# --- validate_bars: accepted forms ----------------------------------------------------


def test_validate_returns_canonical_schema_from_millisecond_utc_timestamps(bars_factory):
    bars = bars_factory(5)
    raw = bars.with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")), pl.col("volume").cast(pl.Float32))
    out = validate_bars(raw, where="x", interval=Interval.H1)
    assert out.schema == {c: BAR_SCHEMA[c] for c in REQUIRED_COLUMNS}
    assert out["timestamp"].to_list() == bars["timestamp"].to_list()
    assert out["close"].to_list() == bars["close"].to_list()


def test_validate_converts_a_consistent_non_utc_zone_to_utc(bars_factory):
    bars = bars_factory(3)
    berlin = bars.with_columns(pl.col("timestamp").dt.convert_time_zone("Europe/Berlin"))
    out = validate_bars(berlin, where="x", interval=Interval.H1)
    assert out["timestamp"].dtype == pl.Datetime("us", "UTC")
    assert out["timestamp"].to_list() == bars["timestamp"].to_list()


def test_validate_parses_iso_strings_with_z_or_a_fixed_offset():
    z = hand_bars([0, 1]).with_columns(pl.Series("timestamp", ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"]))
    plus2 = z.with_columns(pl.Series("timestamp", ["2024-01-01 02:00:00+02:00", "2024-01-01 03:00:00+02:00"]))
    for table in (z, plus2):
        out = validate_bars(table, where="x", interval=Interval.H1)
        assert out["timestamp"].to_list() == [T0, T0 + H]


def test_validate_reads_integer_epoch_milliseconds():
    table = hand_bars([0, 1]).with_columns(pl.Series("timestamp", [1_704_067_200_000, 1_704_070_800_000]))
    out = validate_bars(table, where="x", interval=Interval.H1)
    assert out["timestamp"].to_list() == [T0, T0 + H]


def test_validate_accepts_zero_volume_bars():
    out = validate_bars(hand_bars([0, 1, 2], volumes=[1.0, 0.0, 2.0]), where="x", interval=Interval.H1)
    assert out["volume"].to_list() == [1.0, 0.0, 2.0]


def test_validate_keeps_optional_columns_with_nulls(bars_factory):
    bars = bars_factory(3).with_columns(
        pl.Series("trade_count", [10, None, 12]), pl.Series("vwap", [100.0, None, 100.5])
    )
    out = validate_bars(bars, where="x", interval=Interval.H1)
    assert out.columns == [*REQUIRED_COLUMNS, "trade_count", "vwap"]
    assert out["trade_count"].dtype == pl.Float64
    assert out["trade_count"].to_list() == [10.0, None, 12.0]


# --- validate_bars: refusals ------------------------------------------------------------


def test_validate_refuses_missing_columns_naming_them(bars_factory):
    message = refusal(bars_factory(3).drop("low", "volume"))
    assert "missing required column(s) low, volume" in message


def test_validate_refuses_unknown_columns_instead_of_dropping_them(bars_factory):
    message = refusal(bars_factory(3).with_columns(pl.lit(1.0).alias("quote_volume")))
    assert "unknown column(s) quote_volume" in message


def test_validate_refuses_naive_timestamps(bars_factory):
    message = refusal(bars_factory(3).with_columns(pl.col("timestamp").dt.replace_time_zone(None)))
    assert "naive" in message


def test_validate_refuses_iso_strings_without_an_offset():
    table = hand_bars([0, 1]).with_columns(pl.Series("timestamp", ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00"]))
    message = refusal(table)
    assert "row 1" in message and "'2024-01-01T01:00:00'" in message and "naive" in message


def test_validate_refuses_mixed_time_zone_offsets_naming_the_row():
    stamps = ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00+00:00", "2024-01-01T04:00:00+02:00"]
    message = refusal(hand_bars([0, 1, 2]).with_columns(pl.Series("timestamp", stamps)))
    assert "mixed time zones" in message and "row 2" in message and "+02:00" in message


def test_validate_refuses_unparseable_timestamps_naming_the_row():
    stamps = ["2024-01-01T00:00:00Z", "yesterday noon Z", "2024-01-01T02:00:00Z"]
    message = refusal(hand_bars([0, 1, 2]).with_columns(pl.Series("timestamp", stamps)))
    assert "row 1" in message and "yesterday noon" in message and "cannot be parsed" in message


def test_validate_refuses_epoch_seconds_given_as_integers():
    table = hand_bars([0, 1]).with_columns(pl.Series("timestamp", [1_704_067_200, 1_704_070_800]))
    message = refusal(table)
    assert "row 0" in message and "epoch milliseconds" in message


def test_validate_refuses_unsorted_rows_naming_the_first_offending_timestamp():
    message = refusal(hand_bars([0, 1, 3, 2, 4]))
    assert "not sorted ascending at row 3 (2024-01-01T02:00:00+00:00" in message


def test_validate_refuses_duplicate_timestamps_naming_both_rows():
    message = refusal(hand_bars([0, 1, 1, 2]))
    assert "duplicate timestamp at row 2 (2024-01-01T01:00:00+00:00, first seen at row 1)" in message


def test_validate_refuses_timestamps_off_the_interval_grid():
    message = refusal(hand_bars([0, 1, 1.5, 2]))
    assert "off the 1h grid at row 2 (2024-01-01T01:30:00+00:00)" in message
    # The same hours are fine at 30m, but not at 4h (epoch-aligned: 00:00, 04:00, ...).
    validate_bars(hand_bars([0, 1, 1.5, 2]), where="x", interval=Interval.M30)
    assert "off the 4h grid at row 1" in refusal(hand_bars([0, 1]), Interval.H4)


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("close", float("nan"), "close is NaN or infinite at row 2"),
        ("high", float("inf"), "high is NaN or infinite at row 2"),
        ("volume", None, "volume is missing (null) at row 2"),
        ("open", -5.0, "open <= 0 at row 2"),
        ("low", 0.0, "low <= 0 at row 2"),
        ("volume", -1.0, "volume < 0 at row 2"),
        ("high", 98.0, "high < low at row 2"),
        ("close", 101.5, "high < max(open, close) at row 2"),
        ("open", 98.5, "low > min(open, close) at row 2"),
    ],
)
def test_validate_refuses_bad_values_naming_row_timestamp_and_values(column, value, expected):
    message = refusal(set_cell(hand_bars([0, 1, 2, 3]), column, 2, value))
    assert expected in message
    assert "2024-01-01T02:00:00+00:00" in message


def test_validate_names_every_broken_rule_and_counts_rows():
    table = set_cell(set_cell(set_cell(hand_bars([0, 1, 2, 3]), "high", 1, 98.0), "high", 3, 98.0), "volume", 0, -2.0)
    message = refusal(table)
    assert "high < low at row 1" in message and "(2 rows in all)" in message
    assert "volume < 0 at row 0" in message


def test_validate_refuses_non_numeric_text_values_naming_the_row():
    table = hand_bars([0, 1]).with_columns(pl.Series("close", ["100.0", "abc"]))
    message = refusal(table)
    assert "row 1: close value 'abc' is not a number" in message


def test_validate_refuses_negative_trade_count(bars_factory):
    bars = bars_factory(3).with_columns(pl.Series("trade_count", [1.0, -1.0, 2.0]))
    assert "trade_count is NaN, infinite or < 0 at row 1" in refusal(bars)


# --- find_gaps --------------------------------------------------------------------------


def test_find_gaps_returns_runs_of_missing_slots_between_first_and_last_bar():
    stamps = [T0 + h * H for h in (0, 1, 3, 4, 8)]
    assert find_gaps(stamps, Interval.H1) == [
        Gap(first_missing=T0 + 2 * H, last_missing=T0 + 2 * H, bars=1),
        Gap(first_missing=T0 + 5 * H, last_missing=T0 + 7 * H, bars=3),
    ]
    assert find_gaps(pl.Series(stamps[::-1], dtype=pl.Datetime("us", "UTC")), Interval.H1) == find_gaps(
        stamps, Interval.H1
    )
    assert find_gaps(stamps[:2], Interval.H1) == []


def test_find_gaps_refuses_naive_or_off_grid_timestamps():
    with pytest.raises(ValueError, match="naive"):
        find_gaps([datetime(2024, 1, 1)], Interval.H1)
    with pytest.raises(ValueError, match="off the 1h grid"):
        find_gaps([T0, T0 + 90 * timedelta(minutes=1)], Interval.H1)


# --- assess_quality ---------------------------------------------------------------------


def assess(df: pl.DataFrame, now: datetime, limit: timedelta = 2 * H):
    return assess_quality(df, interval=Interval.H1, now=now, staleness_limit=limit)


def test_assess_quality_counts_gaps_duplicates_zero_volume_and_off_grid_rows():
    # On-grid unique hours 0, 1, 3, 6 -> missing 2 and 4-5; one duplicate of 1, one row at 3:30.
    table = hand_bars([0, 1, 1, 3, 3.5, 6], volumes=[1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    report = assess(table, now=T0 + 7 * H)
    assert report.rows == 6
    assert (report.first_bar, report.last_bar) == (T0, T0 + 6 * H)
    assert report.expected_slots == 7
    assert (report.missing_bars, report.gap_runs) == (3, 2)
    assert report.longest_gap == Gap(T0 + 4 * H, T0 + 5 * H, 2)
    assert report.duplicates == 1
    assert report.zero_volume_bars == 2
    assert report.off_grid == 1
    assert report.broken
    assert any("duplicate timestamp" in p for p in report.problems)
    assert any("3 missing bars in 2 gap runs" in p for p in report.problems)


def test_assess_quality_counts_ohlc_nan_and_nonpositive_rows_without_raising():
    table = set_cell(set_cell(set_cell(hand_bars([0, 1, 2, 3]), "high", 1, 98.0), "close", 2, None), "low", 3, -1.0)
    report = assess(table, now=T0 + 4 * H)
    assert (report.ohlc_violations, report.nan_values, report.nonpositive_prices) == (1, 1, 1)
    assert report.broken and report.missing_bars == 0


def test_assess_quality_of_clean_bars_is_not_broken_and_lists_no_problems(bars_factory):
    bars = bars_factory(48)
    report = assess(bars, now=T0 + 48 * H)
    assert not report.broken and not report.stale
    assert report.problems == ()
    assert (report.missing_bars, report.gap_runs, report.longest_gap) == (0, 0, None)
    assert report.expected_slots == 48


def test_assess_quality_is_fresh_exactly_at_the_limit_and_stale_just_past_it():
    table = hand_bars([0, 1, 2])  # last bar opens 02:00, ends 03:00
    limit = 2 * H + timedelta(minutes=15)
    at_limit = assess(table, now=T0 + 3 * H + limit, limit=limit)
    past = assess(table, now=T0 + 3 * H + limit + timedelta(microseconds=1), limit=limit)
    assert at_limit.age == limit and not at_limit.stale
    assert past.age == limit + timedelta(microseconds=1) and past.stale
    assert any(p.startswith("stale") for p in past.problems)


def test_assess_quality_of_an_empty_table_is_stale_with_undefined_age(bars_factory):
    report = assess(bars_factory(0), now=T0)
    assert report.rows == 0 and report.first_bar is None and report.age is None
    assert report.stale and not report.broken and report.problems == ("no bars",)


def test_assess_quality_refuses_a_naive_now(bars_factory):
    with pytest.raises(ValueError, match="naive"):
        assess(bars_factory(2), now=datetime(2024, 1, 2))


def test_report_to_dict_is_json_with_iso_datetimes():
    report = assess(hand_bars([0, 1, 4]), now=T0 + 6 * H)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["last_bar"] == "2024-01-01T04:00:00+00:00"
    assert data["longest_gap"] == {
        "first_missing": "2024-01-01T02:00:00+00:00",
        "last_missing": "2024-01-01T03:00:00+00:00",
        "bars": 2,
    }
    assert data["age_seconds"] == 3600.0 and data["stale"] is False


# --- freshness gate ---------------------------------------------------------------------


def report_at(hours: list[float], now: datetime) -> QualityReport:
    return assess_quality(hand_bars(hours), interval=Interval.H1, now=now, staleness_limit=2 * H)


def test_default_policy_allows_two_bars_plus_fifteen_minutes():
    policy = FreshnessPolicy()
    assert policy.staleness_limit(Interval.H1) == timedelta(hours=2, minutes=15)
    assert policy.staleness_limit(Interval.M15) == timedelta(minutes=45)
    assert FreshnessPolicy(limits={Interval.H1: 3 * H}).staleness_limit(Interval.H1) == 3 * H
    with pytest.raises(TypeError):
        FreshnessPolicy(limits={Interval.H1: H}).limits[Interval.H4] = H  # type: ignore[index]


def test_freshness_gate_passes_fresh_series_and_measures_at_the_injected_now():
    now = T0 + 5 * H
    reports = {("BTC/USD", Interval.H1): report_at([0, 1, 2], now), ("ETH/USD", Interval.H1): report_at([1, 2], now)}
    verdict = require_fresh(reports, FreshnessPolicy(), now=now)
    assert verdict.ok and verdict.stale == () and verdict.broken == ()
    assert verdict.checked_at == now and verdict.as_of is None and verdict.allow_stale is False
    assert verdict.message == "fresh: 2 series checked at 2024-01-01T05:00:00+00:00"


def test_freshness_gate_is_fresh_exactly_at_the_limit_and_stale_just_past_it():
    reports = {("BTC/USD", Interval.H1): report_at([0, 1, 2], T0)}  # last bar ends 03:00
    limit_end = T0 + 3 * H + timedelta(hours=2, minutes=15)
    assert check_freshness(reports, FreshnessPolicy(), now=limit_end).ok
    assert not check_freshness(reports, FreshnessPolicy(), now=limit_end + timedelta(microseconds=1)).ok


def test_freshness_gate_refuses_stale_and_broken_series_naming_each_and_its_age():
    now = T0 + 8 * H
    reports = {
        ("BTC/USD", Interval.H1): report_at([0, 1, 2], now),  # ended 03:00: 5h old
        ("ETH/USD", Interval.H1): report_at([5, 6, 6, 7], now),  # fresh but a duplicate
        ("LTC/USD", Interval.H1): report_at([6, 7], now),  # fresh
    }
    with pytest.raises(StaleDataError) as info:
        require_fresh(reports, FreshnessPolicy(), now=now)
    message = str(info.value)
    assert "2 of 3 series refused at 2024-01-01T08:00:00+00:00" in message
    assert "BTC/USD 1h last bar 2024-01-01T02:00:00+00:00 ended 5h 00m before" in message
    assert "limit 2h 15m" in message
    assert "broken: ETH/USD 1h (1 duplicate timestamps)" in message
    assert "LTC/USD" not in message
    verdict = check_freshness(reports, FreshnessPolicy(), now=now)
    assert [(s.symbol, s.age) for s in verdict.stale] == [("BTC/USD", 5 * H)]
    assert [s.symbol for s in verdict.broken] == ["ETH/USD"]


def test_allow_stale_lets_stale_but_never_broken_data_through_and_is_recorded():
    now = T0 + 8 * H
    stale_only = {("BTC/USD", Interval.H1): report_at([0, 1, 2], now)}
    verdict = require_fresh(stale_only, FreshnessPolicy(allow_stale=True), now=now)
    assert verdict.ok and verdict.allow_stale and [s.symbol for s in verdict.stale] == ["BTC/USD"]
    assert "stale (allowed: allow_stale=True): BTC/USD 1h" in verdict.message
    broken = {("ETH/USD", Interval.H1): report_at([5, 6, 6, 7], now)}
    with pytest.raises(StaleDataError, match="broken: ETH/USD 1h"):
        require_fresh(broken, FreshnessPolicy(allow_stale=True), now=now)


def test_as_of_replaces_now_for_research_on_history_and_is_recorded():
    reports = {("BTC/USD", Interval.H1): report_at([0, 1, 2], T0 + 3 * H)}
    policy = FreshnessPolicy(as_of=T0 + 4 * H)
    verdict = require_fresh(reports, policy, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert verdict.ok and verdict.as_of == T0 + 4 * H and verdict.checked_at == T0 + 4 * H
    assert "as_of 2024-01-01T04:00:00+00:00" in verdict.message
    data = json.loads(json.dumps(verdict.to_dict()))
    assert data["as_of"] == "2024-01-01T04:00:00+00:00" and data["allow_stale"] is False
    with pytest.raises(StaleDataError, match="as_of 2024-01-02"):
        require_fresh(reports, FreshnessPolicy(as_of=T0 + 24 * H))


def test_freshness_gate_refuses_a_series_with_no_bars():
    empty = assess_quality(hand_bars([]), interval=Interval.H1, now=T0, staleness_limit=H)
    with pytest.raises(StaleDataError, match="BTC/USD 1h no bars"):
        require_fresh({("BTC/USD", Interval.H1): empty}, FreshnessPolicy(), now=T0)


def test_freshness_gate_needs_reports_and_an_unambiguous_aware_reference_time():
    with pytest.raises(ValueError, match="at least one series"):
        check_freshness({}, FreshnessPolicy(), now=T0)
    mixed = {("BTC/USD", Interval.H1): report_at([0], T0 + H), ("ETH/USD", Interval.H1): report_at([0], T0 + 2 * H)}
    with pytest.raises(ValueError, match="pass now="):
        check_freshness(mixed, FreshnessPolicy())
    with pytest.raises(ValueError, match="naive"):
        check_freshness(mixed, FreshnessPolicy(), now=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        FreshnessPolicy(as_of=datetime(2024, 1, 1))
