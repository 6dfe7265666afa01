"""The capital ramp: a new live model trades a growing share of the configured live capital.

Steps (default): 25 %, then 50 %, then 100 %. The model starts on the first step; it moves to
the next one after ``profitable_days_per_step`` profitable days (a completed UTC day with a
return above 0) on the current step. A losing day does not reset the count: losses are the
monitors' business (daily loss limit, consecutive losing days), which demote the model. A
model demoted and promoted again starts the ramp over (pass only the days since it went live).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cappuccino_core.evaluation.metrics import as_returns


@dataclass(frozen=True)
class RampConfig:
    """How live capital ramps up."""

    live_capital: float  # the configured live capital at full size, in quote currency
    fractions: tuple[float, ...] = (0.25, 0.5, 1.0)  # share of live_capital on each step, increasing, last 1.0
    profitable_days_per_step: int = 3  # profitable days on a step before moving to the next one

    def __post_init__(self) -> None:
        if not (math.isfinite(self.live_capital) and self.live_capital > 0):
            raise ValueError(f"live_capital must be a positive number, got {self.live_capital!r}")
        fractions = tuple(float(f) for f in self.fractions)
        if not fractions or any(not 0.0 < f <= 1.0 for f in fractions):
            raise ValueError(f"fractions must be non-empty, each in (0, 1], got {self.fractions!r}")
        if any(b <= a for a, b in zip(fractions, fractions[1:], strict=False)) or fractions[-1] != 1.0:
            raise ValueError(f"fractions must increase and end at 1.0, got {self.fractions!r}")
        days = self.profitable_days_per_step
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise ValueError(f"profitable_days_per_step must be an int >= 1, got {days!r}")
        object.__setattr__(self, "fractions", fractions)


@dataclass(frozen=True)
class RampState:
    """Where a live model is on the ramp.

    Attributes:
        step: index of the current step (0 = first).
        fraction: share of the live capital on this step.
        capital: capital to trade now (``fraction * live_capital``).
        profitable_days_on_step: profitable days counted on the current step.
        days_to_next_step: profitable days still needed, ``None`` on the last step.
    """

    step: int
    fraction: float
    capital: float
    profitable_days_on_step: int
    days_to_next_step: int | None

    def to_dict(self) -> dict[str, Any]:
        """Return the state as a JSON-ready dict."""
        return {"step": self.step, "fraction": self.fraction, "capital": self.capital,
                "profitable_days_on_step": self.profitable_days_on_step, "days_to_next_step": self.days_to_next_step}


def ramp_state(daily_returns: Sequence[float], config: RampConfig) -> RampState:
    """Return the ramp step reached after the completed days since the model went live.

    Args:
        daily_returns: each completed UTC day's return since going live, in order (the
            current, unfinished day excluded).
        config: the ramp.

    Raises:
        ValueError: a daily return that is not a finite number >= -1.
    """
    returns = as_returns(daily_returns, "daily_returns")
    step, count = 0, 0
    last = len(config.fractions) - 1
    for r in returns:
        if step == last:
            break
        if r > 0.0:
            count += 1
            if count == config.profitable_days_per_step:
                step, count = step + 1, 0
    fraction = config.fractions[step]
    to_next = None if step == last else config.profitable_days_per_step - count
    return RampState(step, fraction, fraction * config.live_capital, 0 if step == last else count, to_next)
