"""Errors of the market-data layer. Each names where the problem is and what it is."""

from __future__ import annotations


class BarDataError(ValueError):
    """Bars that must not be stored or used.

    Attributes:
        where: the file, symbol/interval or source the bars came from.
        problem: what is wrong, naming the row or timestamp where there is one.
    """

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


class SourceError(RuntimeError):
    """A bar source could not deliver (retries exhausted, credentials refused, bad reply)."""


class SourceRefused(SourceError):
    """A refusal no retry can change: credentials rejected (HTTP 401/403), a request refused
    (another 4xx), a missing directory, file, symbol or interval. Never retried; reported in one line."""


class StaleDataError(RuntimeError):
    """The freshness gate refused: some symbol is stale or broken. The message lists which."""


def failures_line(failures: dict[str, str], *, shown: int = 3, width: int = 300) -> str:
    """Join per-item failures into one bounded line: the first ``shown``, each cut at ``width`` characters.

    Seven symbols refused for the same reason say it once each at most three times, then
    ``and N more``: the full list stays in the run's report.
    """
    items = [f"{name}: {_cut(str(error), width)}" for name, error in failures.items()]
    more = len(items) - shown
    return "; ".join(items[:shown]) + (f"; and {more} more" if more > 0 else "")


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
