"""Bar quality: refuse broken bar tables, and measure the health of good ones.

Two questions, two functions:

* ``validate_bars`` -- may these bars be stored or used? It returns the canonical bar
  table (``cappuccino_core.data.bars``) or raises ``BarDataError`` naming every hard
  problem with its row and timestamp.
* ``assess_quality`` -- how healthy is this table? It never raises for row-level problems;
  it counts them (and gaps, zero-volume bars, staleness) in a ``QualityReport``.

Decisions (the contract of this module):

* Columns other than ``timestamp, open, high, low, close, volume, trade_count, vwap`` are
  **refused**, not dropped: a table that carries something we do not understand is
  named rather than silently trimmed. Select the bar columns before validating.
* Timestamps may arrive as a time-zone-aware datetime column (any zone; converted to UTC),
  as ISO-8601 strings with an offset or ``Z`` (all rows must carry the same offset), or as
  integer epoch **milliseconds** (Binance's convention; values outside 1990-2200 are
  refused as probably seconds or nanoseconds). Naive datetimes are refused.
* Zero-volume bars are allowed (Binance's halt placeholders) and counted.
* Row numbers in messages count data rows from 0.
* The grid is epoch-aligned: a bar at ``interval`` must open at a multiple of
  ``interval.seconds`` since 1970-01-01T00:00Z.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from cappuccino_core.data.bars import (
    OPTIONAL_COLUMNS,
    PRICE_COLUMNS,
    REQUIRED_COLUMNS,
    TIMESTAMP_DTYPE,
)
from cappuccino_core.data.errors import BarDataError
from cappuccino_core.data.intervals import Interval

logger = logging.getLogger(__name__)

VALUE_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS[1:]
BAR_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_OFFSET_PATTERN = r"(?:Z|z|[+-]\d{2}:?\d{2})$"
# Plausible epoch-millisecond range: 1990-01-01 .. 2200-01-01.
_EPOCH_MS_MIN = 631_152_000_000
_EPOCH_MS_MAX = 7_258_118_400_000


@dataclass(frozen=True)
class Gap:
    """A run of consecutive missing grid slots.

    Attributes:
        first_missing: open time of the first missing bar.
        last_missing: open time of the last missing bar.
        bars: number of missing bars in the run.
    """

    first_missing: datetime
    last_missing: datetime
    bars: int

    def to_dict(self) -> dict[str, Any]:
        """Return the gap as JSON-ready values (ISO-8601 datetimes)."""
        return {
            "first_missing": self.first_missing.isoformat(),
            "last_missing": self.last_missing.isoformat(),
            "bars": self.bars,
        }


@dataclass(frozen=True)
class QualityReport:
    """The health of one bar table (one symbol, one interval) at time ``now``.

    Attributes:
        interval: the bar interval the table was assessed at.
        rows: rows in the table.
        first_bar: earliest bar open time, or None for an empty table.
        last_bar: latest bar open time, or None for an empty table.
        expected_slots: grid slots from the first to the last on-grid bar, inclusive.
        missing_bars: grid slots between the first and last bar with no row.
        gap_runs: number of runs of consecutive missing slots.
        longest_gap: the longest run (earliest on ties), or None without gaps.
        gaps: every run of missing slots, in time order.
        duplicates: rows whose timestamp already appeared on an earlier row.
        unsorted_rows: rows whose timestamp is earlier than the previous row's.
        zero_volume_bars: bars with volume 0 (allowed; exchange halt placeholders).
        ohlc_violations: rows with high < low, high < max(open, close) or low > min(open, close).
        nonpositive_prices: rows with some price <= 0.
        negative_volume: rows with volume < 0.
        nan_values: NaN, infinite or null cells in the required value columns.
        optional_violations: bad ``trade_count``/``vwap`` cells (NaN, negative, vwap <= 0).
        off_grid: rows whose timestamp is not on the interval's epoch-aligned grid.
        now: the injected time the staleness was measured at.
        staleness_limit: the largest age that still counts as fresh.
        age: ``now`` minus the end of the last bar, or None for an empty table.
        stale: True when ``age > staleness_limit`` or the table is empty.
        broken: True when any hard violation is present (what ``validate_bars`` refuses).
        problems: one human-readable line per problem found.
    """

    interval: Interval
    rows: int
    first_bar: datetime | None
    last_bar: datetime | None
    expected_slots: int
    missing_bars: int
    gap_runs: int
    longest_gap: Gap | None
    gaps: tuple[Gap, ...]
    duplicates: int
    unsorted_rows: int
    zero_volume_bars: int
    ohlc_violations: int
    nonpositive_prices: int
    negative_volume: int
    nan_values: int
    optional_violations: int
    off_grid: int
    now: datetime
    staleness_limit: timedelta
    age: timedelta | None
    stale: bool
    broken: bool
    problems: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready values: ISO-8601 datetimes, durations in seconds."""
        return {
            "interval": self.interval.value,
            "rows": self.rows,
            "first_bar": _iso(self.first_bar),
            "last_bar": _iso(self.last_bar),
            "expected_slots": self.expected_slots,
            "missing_bars": self.missing_bars,
            "gap_runs": self.gap_runs,
            "longest_gap": self.longest_gap.to_dict() if self.longest_gap else None,
            "gaps": [gap.to_dict() for gap in self.gaps],
            "duplicates": self.duplicates,
            "unsorted_rows": self.unsorted_rows,
            "zero_volume_bars": self.zero_volume_bars,
            "ohlc_violations": self.ohlc_violations,
            "nonpositive_prices": self.nonpositive_prices,
            "negative_volume": self.negative_volume,
            "nan_values": self.nan_values,
            "optional_violations": self.optional_violations,
            "off_grid": self.off_grid,
            "now": self.now.isoformat(),
            "staleness_limit_seconds": self.staleness_limit.total_seconds(),
            "age_seconds": self.age.total_seconds() if self.age is not None else None,
            "stale": self.stale,
            "broken": self.broken,
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class _Violation:
    """One kind of hard problem found in a table: how many rows, and the first one."""

    key: str
    count: int
    first_row: int
    message: str


def validate_bars(df: pl.DataFrame, *, where: str, interval: Interval) -> pl.DataFrame:
    """Return ``df`` as the canonical bar table, or refuse it.

    Args:
        df: bars as delivered by a source or file (see the module docstring for the
            accepted timestamp forms).
        where: the file, symbol or source the bars came from; starts every error message.
        interval: the bar interval; timestamps must sit on its epoch-aligned grid.

    Returns:
        The bars with ``timestamp`` as ``Datetime("us", "UTC")`` and Float64 values, in
        canonical column order (optional columns kept when present). Values are unchanged.

    Raises:
        BarDataError: a required column is missing, an unknown column is present, the
            timestamps are naive, in mixed time zones or unparseable, or any row breaks a
            bar rule (order, duplicates, NaN/null, prices <= 0, volume < 0, OHLC
            consistency, off-grid). The message names every problem with its first row
            and timestamp and how many rows have it.
    """
    bars = _canonical_frame(df, where)
    violations = _find_violations(bars, Interval(interval))
    if violations:
        raise BarDataError(where, "; ".join(v.message for v in violations))
    return bars


def assess_quality(
    df: pl.DataFrame, *, interval: Interval, now: datetime, staleness_limit: timedelta
) -> QualityReport:
    """Measure the health of a bar table: gaps, rule violations, zero volume, staleness.

    Row-level problems are counted, not raised. Gaps are measured on the sorted, unique,
    on-grid timestamps; off-grid rows are counted but do not take part in gap finding.

    Args:
        df: the bars (canonical or as delivered).
        interval: the bar interval.
        now: the injected current time (UTC-aware); age is ``now`` minus the end of the
            last bar (its open time plus one interval).
        staleness_limit: the largest age that is still fresh (an age equal to it is fresh).

    Returns:
        The ``QualityReport``.

    Raises:
        BarDataError: the table cannot be read as bars at all (missing or unknown columns,
            naive / mixed-zone / unparseable timestamps, non-numeric values).
        ValueError: ``now`` is naive.
    """
    _require_aware(now, "now")
    interval = Interval(interval)
    bars = _canonical_frame(df, "assess_quality")
    violations = {v.key: v for v in _find_violations(bars, interval)}
    ts_us = bars["timestamp"].dt.epoch("us").to_numpy()
    step_us = interval.seconds * 1_000_000
    on_grid = _sorted_unique(ts_us[ts_us % step_us == 0])
    gaps = _gaps_from_epoch_us(on_grid, step_us)
    missing = sum(gap.bars for gap in gaps)
    longest = max(gaps, key=lambda gap: gap.bars) if gaps else None  # max keeps the first on ties

    first_bar = _from_us(int(ts_us.min())) if len(ts_us) else None
    last_bar = _from_us(int(ts_us.max())) if len(ts_us) else None
    age = now - (last_bar + interval.timedelta) if last_bar is not None else None
    stale = age is None or age > staleness_limit

    def count(key: str) -> int:
        return violations[key].count if key in violations else 0

    ohlc = _count_rows(bars, _ohlc_mask())
    problems = [v.message for v in violations.values()]
    if not len(bars):
        problems.append("no bars")
    if gaps:
        assert longest is not None
        problems.append(
            f"{missing} missing bars in {len(gaps)} gap runs; longest {longest.bars} bars "
            f"({longest.first_missing.isoformat()} -> {longest.last_missing.isoformat()})"
        )
    if age is not None and stale:
        problems.append(f"stale: last bar ended {age} before {now.isoformat()} (limit {staleness_limit})")
    return QualityReport(
        interval=interval,
        rows=len(bars),
        first_bar=first_bar,
        last_bar=last_bar,
        expected_slots=int((on_grid[-1] - on_grid[0]) // step_us + 1) if len(on_grid) else 0,
        missing_bars=missing,
        gap_runs=len(gaps),
        longest_gap=longest,
        gaps=tuple(gaps),
        duplicates=count("duplicate"),
        unsorted_rows=count("unsorted"),
        zero_volume_bars=_count_rows(bars, pl.col("volume") == 0),
        ohlc_violations=ohlc,
        nonpositive_prices=_count_rows(bars, _nonpositive_price_mask()),
        negative_volume=count("negative_volume"),
        nan_values=_count_bad_cells(bars),
        optional_violations=sum(count(k) for k in violations if k.startswith("optional_")),
        off_grid=count("off_grid"),
        now=now,
        staleness_limit=staleness_limit,
        age=age,
        stale=stale,
        broken=bool(violations),
        problems=tuple(problems),
    )


def find_gaps(timestamps: pl.Series | Sequence[datetime], interval: Interval) -> list[Gap]:
    """Return the runs of missing grid slots between the first and last timestamp.

    Args:
        timestamps: bar open times, UTC-aware (a polars Datetime series or datetimes);
            order and duplicates do not matter.
        interval: the bar interval defining the epoch-aligned grid.

    Returns:
        One ``Gap`` per run of consecutive empty slots, in time order.

    Raises:
        ValueError: a timestamp is naive or off the grid.
    """
    interval = Interval(interval)
    step_us = interval.seconds * 1_000_000
    ts_us = _sorted_unique(_epoch_us(timestamps))
    off = ts_us % step_us != 0
    if off.any():
        raise ValueError(f"timestamp {_from_us(int(ts_us[off][0])).isoformat()} is off the {interval} grid")
    return _gaps_from_epoch_us(ts_us, step_us)


# --- canonical frame ------------------------------------------------------------------


def _canonical_frame(df: pl.DataFrame, where: str) -> pl.DataFrame:
    """Check the columns and coerce types; raise for problems that make rows unreadable."""
    if not isinstance(df, pl.DataFrame):
        raise BarDataError(where, f"expected a polars DataFrame, got {type(df).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise BarDataError(
            where, f"missing required column(s) {', '.join(missing)}; columns present: {', '.join(df.columns)}"
        )
    unknown = [c for c in df.columns if c not in BAR_COLUMNS]
    if unknown:
        raise BarDataError(
            where,
            f"unknown column(s) {', '.join(unknown)}; a bar table holds only {', '.join(BAR_COLUMNS)}",
        )
    columns = [_coerce_timestamps(df["timestamp"], where).alias("timestamp")]
    columns += [_coerce_values(df[c], where) for c in BAR_COLUMNS[1:] if c in df.columns]
    return pl.DataFrame(columns)


def _coerce_timestamps(col: pl.Series, where: str) -> pl.Series:
    """Return the timestamp column as ``Datetime("us", "UTC")`` or raise naming the row."""
    dtype = col.dtype
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            raise BarDataError(
                where, "timestamps are naive (no time zone); expected UTC-aware bar open times"
            )
        if dtype.time_unit == "ns":
            sub_us = (col.dt.epoch("ns") % 1000 != 0).fill_null(False)
            if sub_us.any():
                row = int(sub_us.arg_true()[0])
                raise BarDataError(where, f"row {row}: timestamp {col[row]} has sub-microsecond precision")
        result = col.dt.convert_time_zone("UTC").cast(TIMESTAMP_DTYPE)
    elif dtype == pl.String:
        result = _parse_iso_timestamps(col, where)
    elif dtype.is_integer():
        result = _parse_epoch_ms(col, where)
    else:
        raise BarDataError(
            where,
            f"timestamp column has type {dtype}; expected UTC-aware datetimes, ISO-8601 strings "
            "with an offset, or integer epoch milliseconds",
        )
    nulls = result.is_null()
    if nulls.any():
        row = int(nulls.arg_true()[0])
        raise BarDataError(where, f"row {row}: timestamp is missing ({int(nulls.sum())} rows in all)")
    return result


def _parse_iso_timestamps(col: pl.Series, where: str) -> pl.Series:
    """Parse ISO-8601 strings that all carry the same UTC offset (or ``Z``)."""
    text = col.str.strip_chars()
    offsets = text.str.extract(f"({_OFFSET_PATTERN})")
    naive = offsets.is_null() & text.is_not_null()
    if naive.any():
        row = int(naive.arg_true()[0])
        raise BarDataError(
            where,
            f"row {row}: timestamp {text[row]!r} is naive (no time zone); write ISO-8601 with an "
            "offset such as +00:00 or Z, or integer epoch milliseconds",
        )
    normalised = offsets.str.replace(r"^[Zz]$", "+00:00").str.replace(r"^([+-]\d{2})(\d{2})$", "$1:$2")
    present = normalised.drop_nulls()
    if len(present) and present.n_unique() > 1:
        reference = present[0]
        row = int((normalised != reference).fill_null(False).arg_true()[0])
        raise BarDataError(
            where,
            f"mixed time zones: row {row} timestamp {text[row]!r} has offset {normalised[row]} "
            f"but earlier rows have {reference}; all rows must share one offset",
        )
    local = text.str.replace(_OFFSET_PATTERN, "").str.to_datetime(strict=False, time_unit="us")
    unparsed = local.is_null() & text.is_not_null()
    if unparsed.any():
        row = int(unparsed.arg_true()[0])
        raise BarDataError(
            where,
            f"row {row}: timestamp {text[row]!r} cannot be parsed as ISO-8601 "
            f"({int(unparsed.sum())} rows in all)",
        )
    shift = _offset_seconds(present[0]) if len(present) else 0
    return (local - timedelta(seconds=shift)).dt.replace_time_zone("UTC").cast(TIMESTAMP_DTYPE)


def _offset_seconds(offset: str) -> int:
    """Return the seconds east of UTC of a ``+HH:MM`` offset."""
    sign = -1 if offset[0] == "-" else 1
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    return sign * (hours * 3600 + minutes * 60)


def _parse_epoch_ms(col: pl.Series, where: str) -> pl.Series:
    """Read integer epoch milliseconds, refusing values outside 1990-2200 (wrong unit)."""
    ms = col.cast(pl.Int64)
    implausible = ((ms < _EPOCH_MS_MIN) | (ms >= _EPOCH_MS_MAX)).fill_null(False)
    if implausible.any():
        row = int(implausible.arg_true()[0])
        raise BarDataError(
            where,
            f"row {row}: integer timestamp {ms[row]} is not epoch milliseconds between 1990 and "
            "2200 (seconds or nanoseconds?)",
        )
    return pl.from_epoch(ms, time_unit="ms").dt.replace_time_zone("UTC").cast(TIMESTAMP_DTYPE)


def _coerce_values(col: pl.Series, where: str) -> pl.Series:
    """Return a value column as Float64, naming the first cell that is not a number."""
    dtype = col.dtype
    if dtype.is_numeric() or dtype == pl.Null:
        return col.cast(pl.Float64)
    if dtype != pl.String:
        raise BarDataError(where, f"column {col.name} has type {dtype}; expected numbers")
    text = col.str.strip_chars()
    values = text.cast(pl.Float64, strict=False)
    # An empty cell is a missing value (reported by the null check); anything else must parse.
    bad = values.is_null() & text.is_not_null() & (text != "")
    if bad.any():
        row = int(bad.arg_true()[0])
        raise BarDataError(
            where, f"row {row}: {col.name} value {text[row]!r} is not a number ({int(bad.sum())} rows in all)"
        )
    return values


# --- violations -----------------------------------------------------------------------


def _values_ok() -> pl.Expr:
    """True on rows whose required values are all present and finite."""
    return pl.all_horizontal([pl.col(c).is_not_null() & pl.col(c).is_finite() for c in VALUE_COLUMNS])


def _nonpositive_price_mask() -> pl.Expr:
    return pl.any_horizontal([pl.col(c) <= 0 for c in PRICE_COLUMNS]).fill_null(False) & _values_ok()


def _ohlc_mask() -> pl.Expr:
    return (
        (pl.col("high") < pl.col("low"))
        | (pl.col("high") < pl.max_horizontal("open", "close"))
        | (pl.col("low") > pl.min_horizontal("open", "close"))
    ).fill_null(False) & _values_ok()


def _count_rows(bars: pl.DataFrame, mask: pl.Expr) -> int:
    return int(bars.select(mask.sum()).item()) if len(bars) else 0


def _count_bad_cells(bars: pl.DataFrame) -> int:
    if not len(bars):
        return 0
    exprs = [(pl.col(c).is_null() | ~pl.col(c).is_finite().fill_null(True)).sum() for c in VALUE_COLUMNS]
    return int(sum(bars.select(exprs).row(0)))


def _rules(bars: pl.DataFrame, interval: Interval) -> list[tuple[str, pl.Expr, str]]:
    """The hard rules as (key, row mask, description) in reporting order."""
    ts = pl.col("timestamp").dt.epoch("us")
    ok = _values_ok()
    rules: list[tuple[str, pl.Expr, str]] = [
        ("unsorted", (ts < ts.shift(1)).fill_null(False), "rows not sorted ascending"),
        ("duplicate", ~pl.col("timestamp").is_first_distinct(), "duplicate timestamp"),
        ("off_grid", ts % (interval.seconds * 1_000_000) != 0, f"timestamp off the {interval} grid"),
    ]
    for c in VALUE_COLUMNS:
        rules.append((f"null_{c}", pl.col(c).is_null(), f"{c} is missing (null)"))
        rules.append((f"nan_{c}", ~pl.col(c).is_finite().fill_null(True), f"{c} is NaN or infinite"))
    for c in PRICE_COLUMNS:
        rules.append((f"nonpositive_{c}", (pl.col(c) <= 0).fill_null(False) & ok, f"{c} <= 0"))
    rules += [
        ("negative_volume", (pl.col("volume") < 0).fill_null(False) & ok, "volume < 0"),
        ("high_below_low", (pl.col("high") < pl.col("low")).fill_null(False) & ok, "high < low"),
        (
            "high_below_body",
            (pl.col("high") < pl.max_horizontal("open", "close")).fill_null(False) & ok,
            "high < max(open, close)",
        ),
        (
            "low_above_body",
            (pl.col("low") > pl.min_horizontal("open", "close")).fill_null(False) & ok,
            "low > min(open, close)",
        ),
    ]
    if "trade_count" in bars.columns:
        tc = pl.col("trade_count")
        bad_count = (~tc.is_finite() | (tc < 0)).fill_null(False)
        rules.append(("optional_trade_count", bad_count, "trade_count is NaN, infinite or < 0"))
    if "vwap" in bars.columns:
        vw = pl.col("vwap")
        bad_vwap = (~vw.is_finite() | (vw <= 0)).fill_null(False)
        rules.append(("optional_vwap", bad_vwap, "vwap is NaN, infinite or <= 0"))
    return rules


def _find_violations(bars: pl.DataFrame, interval: Interval) -> list[_Violation]:
    """Evaluate every hard rule in one pass; describe each broken rule by its first row."""
    if not len(bars):
        return []
    rules = _rules(bars, interval)
    masks = bars.select([mask.alias(key) for key, mask, _ in rules])
    counts = masks.sum().row(0)
    violations = []
    for (key, _, description), n in zip(rules, counts, strict=True):
        if not n:
            continue
        row = int(masks[key].arg_true()[0])
        message = f"{description} at row {row} ({_row_detail(bars, key, row)})"
        if n > 1:
            message += f" ({n} rows in all)"
        violations.append(_Violation(key=key, count=int(n), first_row=row, message=message))
    return violations


def _row_detail(bars: pl.DataFrame, key: str, row: int) -> str:
    """Describe the offending row: its timestamp, and the values or neighbour that break the rule."""
    stamp = _iso(bars["timestamp"][row])
    if key == "unsorted":
        return f"{stamp} is earlier than row {row - 1} {_iso(bars['timestamp'][row - 1])}"
    if key == "duplicate":
        first = int((bars["timestamp"] == bars["timestamp"][row]).arg_true()[0])
        return f"{stamp}, first seen at row {first}"
    if key == "off_grid":
        return stamp
    values = ", ".join(f"{c}={bars[c][row]!r}" for c in BAR_COLUMNS[1:] if c in bars.columns)
    return f"{stamp}: {values}"


# --- time helpers ---------------------------------------------------------------------


def _gaps_from_epoch_us(ts_us: np.ndarray, step_us: int) -> list[Gap]:
    """Runs of missing slots in sorted, unique, on-grid epoch-microsecond timestamps."""
    if len(ts_us) < 2:
        return []
    steps = np.diff(ts_us) // step_us
    starts = np.nonzero(steps > 1)[0]
    return [
        Gap(
            first_missing=_from_us(int(ts_us[i] + step_us)),
            last_missing=_from_us(int(ts_us[i + 1] - step_us)),
            bars=int(steps[i] - 1),
        )
        for i in starts
    ]


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted unique values; a sort and a neighbour comparison (cheaper than ``np.unique``)."""
    if len(values) < 2:
        return values
    ordered = values if bool(np.all(values[1:] > values[:-1])) else np.sort(values)
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _epoch_us(timestamps: pl.Series | Sequence[datetime]) -> np.ndarray:
    """Epoch microseconds of UTC-aware timestamps as an int64 array."""
    if isinstance(timestamps, pl.Series):
        if not isinstance(timestamps.dtype, pl.Datetime) or timestamps.dtype.time_zone is None:
            raise ValueError(f"timestamps must be a time-zone-aware Datetime series, got {timestamps.dtype}")
        return timestamps.drop_nulls().dt.epoch("us").to_numpy()
    values = []
    for ts in timestamps:
        _require_aware(ts, "timestamp")
        values.append((ts - _EPOCH) // _US)
    return np.asarray(values, dtype=np.int64)


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def _require_aware(ts: datetime, name: str) -> None:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{name} must be a UTC-aware datetime, got naive {ts.isoformat()}")
