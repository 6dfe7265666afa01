"""Comparing a figure with a threshold, the same way in every gate and monitor.

A value within ``TOLERANCE`` (relative, at least absolute ``TOLERANCE``) of its threshold is
**at** the threshold: ``>`` and ``<`` fail there, ``>=`` and ``<=`` hold. Without this a
drawdown of exactly 15 % computed as ``1 - 0.85`` (``0.15000000000000002``) and one of
``0.1499999999999999`` would fall on different sides of a 15 % rule by float noise alone.
An undefined value (``None``) satisfies no comparison.
"""

from __future__ import annotations

from enum import StrEnum

TOLERANCE = 1e-12


class Comparison(StrEnum):
    """How a value must compare with its threshold for a rule to hold."""

    ABOVE = ">"
    AT_LEAST = ">="
    BELOW = "<"
    AT_MOST = "<="


def holds(value: float | None, comparison: Comparison, threshold: float) -> bool:
    """Return True when ``value comparison threshold`` holds (``None`` never holds)."""
    if value is None:
        return False
    at = abs(value - threshold) <= TOLERANCE * max(1.0, abs(threshold))
    match Comparison(comparison):
        case Comparison.ABOVE:
            return value > threshold and not at
        case Comparison.AT_LEAST:
            return value > threshold or at
        case Comparison.BELOW:
            return value < threshold and not at
        case Comparison.AT_MOST:
            return value < threshold or at
