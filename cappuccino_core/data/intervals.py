"""Bar intervals: one fixed set, with the arithmetic every module needs."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

SECONDS_PER_YEAR = 365 * 24 * 3600  # crypto trades 24/7: 8,760 hourly bars a year


class Interval(StrEnum):
    """A bar interval. The value is the canonical string used in file names and settings."""

    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    M30 = "30m"
    H1 = "1h"
    H4 = "4h"
    D1 = "1d"

    @property
    def seconds(self) -> int:
        """Length of one bar in seconds."""
        return _SECONDS[self]

    @property
    def timedelta(self) -> timedelta:
        """Length of one bar as a ``timedelta``."""
        return timedelta(seconds=self.seconds)

    @property
    def bars_per_year(self) -> float:
        """Bars in a 365-day year of round-the-clock trading (the annualisation factor)."""
        return SECONDS_PER_YEAR / self.seconds

    @classmethod
    def parse(cls, text: str) -> Interval:
        """Parse ``"1h"``, ``"60m"``, ``"1Hour"`` and friends; raise ``ValueError`` naming the input."""
        key = text.strip().lower()
        aliases = {
            "1min": "1m", "5min": "5m", "15min": "15m", "30min": "30m", "60m": "1h",
            "1hour": "1h", "4hour": "4h", "240m": "4h", "1day": "1d", "24h": "1d",
        }
        key = aliases.get(key, key)
        try:
            return cls(key)
        except ValueError:
            allowed = ", ".join(i.value for i in cls)
            raise ValueError(f"unknown bar interval {text!r}; expected one of {allowed}") from None


_SECONDS = {
    Interval.M1: 60,
    Interval.M5: 300,
    Interval.M15: 900,
    Interval.M30: 1800,
    Interval.H1: 3600,
    Interval.H4: 14400,
    Interval.D1: 86400,
}

# The intervals the timeframe search may choose from.
SEARCH_INTERVALS: tuple[Interval, ...] = (Interval.M15, Interval.M30, Interval.H1, Interval.H4, Interval.D1)
