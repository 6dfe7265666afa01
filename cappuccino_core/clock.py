"""Time as an input: the wall clock for real trading, fixed and replay clocks for tests and offline runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Tells the current time. Contract: always a UTC-aware ``datetime``; never goes backwards."""

    def now(self) -> datetime:
        """Return the current time (UTC-aware)."""
        ...


class SystemClock:
    """The wall clock. The only place in the core that reads the machine's time."""

    def now(self) -> datetime:
        """Return the machine's current UTC time."""
        return datetime.now(UTC)


class FixedClock:
    """A clock that stays where it is put (tests, ``--as-of`` research runs)."""

    def __init__(self, at: datetime) -> None:
        self._at = ensure_utc(at)

    def now(self) -> datetime:
        """Return the fixed time."""
        return self._at

    def set(self, at: datetime) -> None:
        """Move the clock to ``at`` (which must not be earlier than the current time)."""
        at = ensure_utc(at)
        if at < self._at:
            raise ValueError(f"a clock never goes backwards: {at.isoformat()} < {self._at.isoformat()}")
        self._at = at


def ensure_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; refuse naive datetimes (their time zone is a guess)."""
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: give a time zone (UTC expected)")
    return moment.astimezone(UTC)


def parse_utc(text: str) -> datetime:
    """Parse an ISO-8601 time; a bare date or a time without offset is taken as UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
