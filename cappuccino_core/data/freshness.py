"""The freshness gate: may these bars be traded or trained on right now?

One question: is every (symbol, interval) fresh and unbroken at the reference time? The
reference time is always injected -- the policy's ``as_of`` (research on history) or the
caller's ``now`` -- never the wall clock. The verdict records which one was used, and
whether stale data was let through, so results can say so.

Default staleness limit: **2 bars plus a 15-minute grace** (45m at 15m, 2h15m at 1h,
8h15m at 4h, 2d 0h15m at 1d). Age is measured from the *end* of the last bar (open time +
one interval), so at 1h a series whose last bar closed at 10:00 is fresh until 12:15
inclusive: up to two bars may be late, and the source gets 15 minutes to publish a bar
after it closes. An age equal to the limit is fresh; anything past it is stale.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from cappuccino_core.data.errors import StaleDataError
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.quality import QualityReport

logger = logging.getLogger(__name__)

DEFAULT_STALENESS_BARS = 2
DEFAULT_GRACE = timedelta(minutes=15)


@dataclass(frozen=True)
class FreshnessPolicy:
    """How old the last bar may be before a symbol counts as stale.

    Attributes:
        staleness_bars: bars that may be missing at the end of the data (default 2).
        grace: extra time after a bar closes for the source to publish it (default 15 min).
        limits: per-interval limits that replace ``staleness_bars * interval + grace``.
        as_of: measure staleness at this time instead of ``now`` (research on history).
        allow_stale: let stale (never broken) data through; the verdict records it.
    """

    staleness_bars: int = DEFAULT_STALENESS_BARS
    grace: timedelta = DEFAULT_GRACE
    limits: Mapping[Interval, timedelta] = field(default_factory=dict, hash=False)
    as_of: datetime | None = None
    allow_stale: bool = False

    def __post_init__(self) -> None:
        if self.staleness_bars < 0:
            raise ValueError(f"staleness_bars must be >= 0, got {self.staleness_bars}")
        if self.grace < timedelta(0):
            raise ValueError(f"grace must be >= 0, got {self.grace}")
        for interval, limit in self.limits.items():
            if limit < timedelta(0):
                raise ValueError(f"staleness limit for {interval} must be >= 0, got {limit}")
        if self.as_of is not None and (self.as_of.tzinfo is None or self.as_of.utcoffset() is None):
            raise ValueError(f"as_of must be UTC-aware, got naive {self.as_of.isoformat()}")
        # Freeze the mapping too, so a policy cannot change after it was recorded.
        object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))

    def staleness_limit(self, interval: Interval) -> timedelta:
        """Return the largest age of the last bar that is still fresh at ``interval``."""
        if interval in self.limits:
            return self.limits[interval]
        return self.staleness_bars * interval.timedelta + self.grace


@dataclass(frozen=True)
class SeriesStatus:
    """Why one (symbol, interval) was held back by the gate.

    Attributes:
        symbol: the trading pair, e.g. ``BTC/USD``.
        interval: the bar interval.
        last_bar: open time of the last bar, or None when there are no bars.
        age: reference time minus the end of the last bar, or None without bars.
        limit: the staleness limit that applied.
        reason: a human-readable explanation.
    """

    symbol: str
    interval: Interval
    last_bar: datetime | None
    age: timedelta | None
    limit: timedelta
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Return the status as JSON-ready values."""
        return {
            "symbol": self.symbol,
            "interval": self.interval.value,
            "last_bar": self.last_bar.isoformat() if self.last_bar else None,
            "age_seconds": self.age.total_seconds() if self.age is not None else None,
            "limit_seconds": self.limit.total_seconds(),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class FreshnessVerdict:
    """The gate's answer.

    Attributes:
        ok: True when nothing is broken and nothing is stale (or stale data is allowed).
        checked_at: the reference time staleness was measured at.
        as_of: the policy's ``as_of`` when it set the reference time, else None.
        allow_stale: whether the policy let stale data through.
        stale: the stale series (reported even when allowed).
        broken: the series with hard quality violations (never allowed).
        message: one line naming every stale or broken series and how old it is.
    """

    ok: bool
    checked_at: datetime
    as_of: datetime | None
    allow_stale: bool
    stale: tuple[SeriesStatus, ...]
    broken: tuple[SeriesStatus, ...]
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Return the verdict as JSON-ready values (for run records)."""
        return {
            "ok": self.ok,
            "checked_at": self.checked_at.isoformat(),
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "allow_stale": self.allow_stale,
            "stale": [s.to_dict() for s in self.stale],
            "broken": [s.to_dict() for s in self.broken],
            "message": self.message,
        }


def check_freshness(
    reports: Mapping[tuple[str, Interval], QualityReport],
    policy: FreshnessPolicy,
    *,
    now: datetime | None = None,
) -> FreshnessVerdict:
    """Judge whether every series is fresh and unbroken at the reference time.

    The reference time is ``policy.as_of`` when set, else ``now``, else the ``now`` the
    reports were assessed at (which must then be the same for all). Each report's own
    ``stale`` flag is not used: age is recomputed from ``last_bar`` with the policy's limit.
    With ``as_of``, assess the reports on bars cut at ``as_of``: a last bar after the
    reference time gives a negative age, which counts as fresh.

    Args:
        reports: quality reports keyed by (symbol, interval).
        policy: the staleness limits, ``as_of`` and ``allow_stale``.
        now: the injected current time (UTC-aware).

    Returns:
        The ``FreshnessVerdict``; it does not raise for stale data (see ``require_fresh``).

    Raises:
        ValueError: no reports, a naive ``now``, or no way to pick a reference time.
    """
    if not reports:
        raise ValueError("no quality reports to check: the freshness gate needs at least one series")
    checked_at = _reference_time(reports, policy, now)
    stale: list[SeriesStatus] = []
    broken: list[SeriesStatus] = []
    for key in sorted(reports, key=lambda key: (key[0], Interval(key[1]).seconds)):
        report = reports[key]
        symbol, interval = key[0], Interval(key[1])
        if report.interval != interval:
            raise ValueError(f"report for {symbol} {interval} was assessed at {report.interval}")
        limit = policy.staleness_limit(interval)
        age = checked_at - (report.last_bar + interval.timedelta) if report.last_bar is not None else None
        if report.broken:
            broken.append(SeriesStatus(symbol, interval, report.last_bar, age, limit, _broken_reason(report)))
        if age is None:
            stale.append(SeriesStatus(symbol, interval, None, None, limit, "no bars"))
        elif age > limit:
            assert report.last_bar is not None
            reason = (
                f"last bar {report.last_bar.isoformat()} ended {_duration(age)} before "
                f"{checked_at.isoformat()} (limit {_duration(limit)})"
            )
            stale.append(SeriesStatus(symbol, interval, report.last_bar, age, limit, reason))
    ok = not broken and (not stale or policy.allow_stale)
    message = _message(len(reports), checked_at, policy, stale, broken)
    if ok and stale:
        logger.warning("freshness gate let stale data through (allow_stale=True): %s", message)
    return FreshnessVerdict(
        ok=ok,
        checked_at=checked_at,
        as_of=policy.as_of,
        allow_stale=policy.allow_stale,
        stale=tuple(stale),
        broken=tuple(broken),
        message=message,
    )


def require_fresh(
    reports: Mapping[tuple[str, Interval], QualityReport],
    policy: FreshnessPolicy,
    *,
    now: datetime | None = None,
) -> FreshnessVerdict:
    """Return the verdict when the gate passes; raise when it refuses.

    Args:
        reports: quality reports keyed by (symbol, interval).
        policy: the staleness limits, ``as_of`` and ``allow_stale``.
        now: the injected current time (UTC-aware).

    Returns:
        The passing ``FreshnessVerdict`` (record it with the results).

    Raises:
        StaleDataError: some series is broken, or stale while ``allow_stale`` is False;
            the message names each one and how old its last bar is.
        ValueError: as for ``check_freshness``.
    """
    verdict = check_freshness(reports, policy, now=now)
    if not verdict.ok:
        raise StaleDataError(verdict.message)
    return verdict


def _reference_time(
    reports: Mapping[tuple[str, Interval], QualityReport], policy: FreshnessPolicy, now: datetime | None
) -> datetime:
    if policy.as_of is not None:
        return policy.as_of
    if now is not None:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError(f"now must be UTC-aware, got naive {now.isoformat()}")
        return now
    nows = {report.now for report in reports.values()}
    if len(nows) != 1:
        raise ValueError(
            "pass now= (or set policy.as_of): the reports were assessed at different times "
            + ", ".join(sorted(n.isoformat() for n in nows))
        )
    return nows.pop()


def _broken_reason(report: QualityReport) -> str:
    counts = {
        "duplicate timestamps": report.duplicates,
        "unsorted rows": report.unsorted_rows,
        "off-grid timestamps": report.off_grid,
        "NaN/null values": report.nan_values,
        "rows with prices <= 0": report.nonpositive_prices,
        "rows with volume < 0": report.negative_volume,
        "OHLC violations": report.ohlc_violations,
        "bad trade_count/vwap cells": report.optional_violations,
    }
    return ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "hard quality violations"


def _message(
    checked: int,
    checked_at: datetime,
    policy: FreshnessPolicy,
    stale: list[SeriesStatus],
    broken: list[SeriesStatus],
) -> str:
    when = f"as_of {checked_at.isoformat()}" if policy.as_of is not None else f"at {checked_at.isoformat()}"
    if not stale and not broken:
        return f"fresh: {checked} series checked {when}"
    held = len(broken) + (0 if policy.allow_stale else len(stale))
    parts = []
    if stale:
        label = "stale (allowed: allow_stale=True)" if policy.allow_stale else "stale"
        parts.append(f"{label}: " + "; ".join(f"{s.symbol} {s.interval} {s.reason}" for s in stale))
    if broken:
        parts.append("broken: " + "; ".join(f"{s.symbol} {s.interval} ({s.reason})" for s in broken))
    head = f"{held} of {checked} series refused {when}" if held else f"passed with stale data {when}"
    return f"{head}: " + " | ".join(parts)


def _duration(delta: timedelta) -> str:
    """Format a duration as ``3d 4h 05m`` (seconds and microseconds only when present)."""
    sign = "-" if delta < timedelta(0) else ""
    micros = abs(delta) // timedelta(microseconds=1)
    seconds, micros = divmod(micros, 1_000_000)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{days}d {hours}h {minutes:02d}m" if days else f"{hours}h {minutes:02d}m"
    if micros:
        text += f" {secs:02d}.{micros:06d}s"
    elif secs:
        text += f" {secs:02d}s"
    return sign + text
