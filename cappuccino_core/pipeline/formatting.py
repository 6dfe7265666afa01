"""How the pipeline's reports write a figure."""

from __future__ import annotations

from typing import Any


def fmt_number(value: Any) -> str:
    """A figure for reading (``undefined`` for ``None``)."""
    if value is None:
        return "undefined"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def fmt_percent(value: Any) -> str:
    """A fraction as a signed percentage (``undefined`` for ``None``)."""
    return "undefined" if value is None else f"{100 * value:+.2f}%"
