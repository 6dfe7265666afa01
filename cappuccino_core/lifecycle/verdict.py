"""Levels and verdicts shared by the live monitors (limits and drift against the backtest).

Levels, in order: ``ok``; ``warning`` (look at it); ``critical`` (a limit broke: demote the
live model to paper); ``emergency`` (stop trading: demote and pull the kill switch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from cappuccino_core.lifecycle.thresholds import Comparison, holds


class Level(StrEnum):
    """How serious a monitor's finding is."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        """0 for ok up to 3 for emergency."""
        return _RANK[self]


_RANK = {Level.OK: 0, Level.WARNING: 1, Level.CRITICAL: 2, Level.EMERGENCY: 3}


@dataclass(frozen=True)
class Check:
    """One monitored figure: its value, the limit it broke (if any), the level and why."""

    name: str
    value: float | None
    limit: float | None
    level: Level
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """Return the check as a JSON-ready dict."""
        return {"name": self.name, "value": self.value, "limit": self.limit, "level": str(self.level),
                "detail": self.detail}


@dataclass(frozen=True)
class MonitorVerdict:
    """The worst level among a monitor's checks, and every check."""

    level: Level
    checks: tuple[Check, ...]
    as_of: datetime

    @property
    def breached(self) -> tuple[str, ...]:
        """Names of the checks at critical or emergency (the limits that broke)."""
        return tuple(c.name for c in self.checks if c.level.rank >= Level.CRITICAL.rank)

    @property
    def demote(self) -> bool:
        """True when a limit broke: the live model goes back to paper."""
        return self.level.rank >= Level.CRITICAL.rank

    @property
    def stop_trading(self) -> bool:
        """True at emergency: trading stops (kill switch)."""
        return self.level is Level.EMERGENCY

    def check(self, name: str) -> Check:
        """Return the check called ``name``."""
        return next(c for c in self.checks if c.name == name)

    def reasons(self) -> tuple[str, ...]:
        """The details of every check above ok, worst first."""
        ordered = sorted((c for c in self.checks if c.level is not Level.OK), key=lambda c: -c.level.rank)
        return tuple(f"{c.level}: {c.detail}" for c in ordered)

    def to_dict(self) -> dict[str, Any]:
        """Return the verdict as a JSON-ready dict."""
        return {"level": str(self.level), "as_of": self.as_of.isoformat(), "breached": list(self.breached),
                "checks": [c.to_dict() for c in self.checks]}


def verdict(checks: Sequence[Check], as_of: datetime) -> MonitorVerdict:
    """Combine checks into a verdict at the worst of their levels."""
    worst = max((c.level for c in checks), key=lambda level: level.rank, default=Level.OK)
    return MonitorVerdict(worst, tuple(checks), as_of)


def grade(
    value: float | None, comparison: Comparison, thresholds: Sequence[tuple[Level, float | None]]
) -> tuple[Level, float | None]:
    """Return the first level whose threshold ``value`` reaches (``comparison``), and that threshold.

    ``thresholds`` go from the most to the least serious; a ``None`` threshold is off. An
    undefined value is ``ok`` (the caller says why in the check's detail).
    """
    for level, threshold in thresholds:
        if threshold is not None and holds(value, comparison, threshold):
            return level, threshold
    return Level.OK, None
