"""Settings of the risk layers: one frozen config shared by the env, the backtester and the trader.

Every threshold is a fraction (``0.10`` is 10 %). ``None`` switches a rule off. Comparisons
trigger exactly at the threshold (see ``cappuccino_core.risk`` for the full rules).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from cappuccino_core.data.intervals import Interval

# Relative tolerance of every threshold comparison, so that a price or equity exactly at a
# threshold triggers even when ``entry * (1 - 0.1)`` rounds one ulp away from the price.
THRESHOLD_TOLERANCE = 1e-12


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def cooldown_bars_for(hours: float, interval: Interval | str) -> int:
    """Return the number of bars that covers ``hours`` at ``interval`` (rounded up).

    Example: 24 h is 24 bars at ``1h``, 6 at ``4h``, 96 at ``15m`` and 1 at ``1d``; 1 h at
    ``4h`` rounds up to 1 bar, so a cooldown never ends before the requested time.

    Args:
        hours: the cooldown duration in hours (not negative).
        interval: the bar interval the book trades at.
    """
    if not math.isfinite(hours) or hours < 0:
        raise ValueError(f"cooldown hours must be a finite number >= 0, got {hours!r}")
    seconds = Interval.parse(interval).seconds if isinstance(interval, str) else interval.seconds
    return math.ceil(hours * 3600 / seconds - 1e-9)


@dataclass(frozen=True)
class RiskConfig:
    """Every risk rule's switch and threshold (``None`` = rule off).

    Portfolio rules act on the whole book, position rules on one asset; the order in which
    they apply is fixed (see ``apply_risk``). Defaults (the same in training, validation, the
    arena, the sandbox, production and live): 10 % stop-loss, 30 % position cap, 10 % portfolio
    trailing stop, profit-taking of half of every position at +20 % per cycle; trailing stop,
    move-to-cash and the conviction filter are off. The owner's first values (1.5 % portfolio
    trailing stop, +3 % profit-taking) fired about 14 and 4 times a week on hourly crypto bars,
    about the size of a day's noise, and kept about a quarter of a planted edge; these keep
    about 60 % of it (README, "Risk layers", and ``benchmarks`` section ``risk``).
    """

    stop_loss: float | None = 0.10  # sell a position at price <= entry * (1 - this); entry = average fill price
    trailing_stop: float | None = None  # sell a position at price <= its high since entry * (1 - this)
    max_position_fraction: float | None = 0.30  # largest weight of one asset: buys capped, positions above trimmed
    action_dampening: float = 1.0  # the policy's actions are multiplied by this (forced sells are not)
    portfolio_trailing_stop: float | None = 0.10  # sell everything at equity <= cycle peak * (1 - this)
    profit_take_threshold: float | None = 0.20  # at equity >= cycle start * (1 + this), take profit once per cycle
    profit_take_fraction: float = 0.5  # profit-taking sells at least this fraction of every position
    move_to_cash_threshold: float | None = None  # sell everything, pause buys at equity <= book peak * (1 - this)
    cooldown_bars: int = 24  # decisions without buys after move-to-cash, its own included (24 = 24 h of 1h bars)
    conviction_threshold: float | None = None  # drop policy buys whose conviction score in [0, 1] is below this
    conviction_weights: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)  # size, momentum, vol, drawdown
    conviction_fast_bars: int = 24  # span (bars) of the fast return and volatility averages of the score
    conviction_slow_bars: int = 168  # span (bars) of the slow volatility average, the regime's baseline
    conviction_drawdown_scale: float = 0.05  # book drawdown at which the score's drawdown part reaches 0
    dust_notional: float = 1.0  # a position worth less than this (quote currency) counts as flat for every rule

    def __post_init__(self) -> None:
        def fraction_or_none(value: float | None, *, upper_inclusive: bool = False) -> bool:
            if value is None:
                return True
            return 0.0 < value <= 1.0 if upper_inclusive else 0.0 < value < 1.0

        weights = self.conviction_weights
        checks = {
            "stop_loss": fraction_or_none(self.stop_loss),
            "trailing_stop": fraction_or_none(self.trailing_stop),
            "max_position_fraction": fraction_or_none(self.max_position_fraction, upper_inclusive=True),
            "action_dampening": 0.0 < self.action_dampening <= 1.0,
            "portfolio_trailing_stop": fraction_or_none(self.portfolio_trailing_stop),
            "profit_take_threshold": self.profit_take_threshold is None
            or (math.isfinite(self.profit_take_threshold) and self.profit_take_threshold > 0.0),
            "profit_take_fraction": 0.0 < self.profit_take_fraction <= 1.0,
            "move_to_cash_threshold": fraction_or_none(self.move_to_cash_threshold),
            "cooldown_bars": _is_count(self.cooldown_bars) and self.cooldown_bars >= 0,
            "conviction_threshold": self.conviction_threshold is None or 0.0 <= self.conviction_threshold <= 1.0,
            "conviction_weights": len(weights) == 4 and all(w >= 0.0 for w in weights) and sum(weights) > 0.0,
            "conviction_fast_bars": _is_count(self.conviction_fast_bars) and self.conviction_fast_bars >= 1,
            "conviction_slow_bars": _is_count(self.conviction_slow_bars)
            and self.conviction_slow_bars > self.conviction_fast_bars,
            "conviction_drawdown_scale": self.conviction_drawdown_scale > 0.0,
            "dust_notional": math.isfinite(self.dust_notional) and self.dust_notional >= 0.0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"invalid RiskConfig: {values}")
        object.__setattr__(self, "conviction_weights", tuple(float(w) for w in weights))

    @classmethod
    def off(cls) -> RiskConfig:
        """Return a config with every rule switched off (the policy's actions pass unchanged)."""
        return cls(
            stop_loss=None,
            max_position_fraction=None,
            portfolio_trailing_stop=None,
            profit_take_threshold=None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        out = asdict(self)
        out["conviction_weights"] = list(self.conviction_weights)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RiskConfig:
        """Rebuild from ``to_dict`` output."""
        values = dict(data)
        if "conviction_weights" in values:
            values["conviction_weights"] = tuple(values["conviction_weights"])
        return cls(**values)
