"""Configuration of the portfolio environment (and of every backtest, which runs the same env)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from cappuccino_core.risk.config import RiskConfig


class RewardMode(StrEnum):
    """What the per-step reward measures."""

    LOG_RETURN = "log_return"  # log(V_{t+1} / V_t)
    EXCESS_LOG_RETURN = "excess_log_return"  # minus the equal-weight buy-and-hold log return


@dataclass(frozen=True)
class EnvConfig:
    """Everything that shapes an episode, its costs, its risk layers and its reward.

    Execution rule (used everywhere: training, backtest, arena, sandbox, live parity): the
    observation at decision bar ``t`` uses bars up to and including ``t``; the action executes
    at the **open of bar t+1** with slippage; the step's return is measured from the close of
    ``t`` to the close of ``t+1``.

    Risk layers (``cappuccino_core.risk``): the policy's actions pass through
    ``apply_risk`` with ``risk`` before they are filled, in training, backtests, validation, the
    arena and the trader alike (one implementation), and ``EnvConfig()`` has the same defaults
    every trader applies (``RiskConfig()``), so a model is selected under the very rules it
    later trades under. A dict without ``risk`` (a model card written before the risk layers
    existed) loads as what it was: no risk layers. Rule-based baselines trade without them (a
    buy-and-hold stopped out by the portfolio trailing stop never buys back).

    Starting book (``start_invested``): every episode and every evaluation window starts in the
    benchmark's own book, ``initial_cash`` spread equally over the assets at the decision bar's
    close, booked without costs like the frictionless index it is compared with. A policy is then
    never charged for starting in cash while its benchmark starts invested (that entry cost and
    the market's direction would otherwise dominate a short window's excess return): doing
    nothing replicates the index exactly, and every deviation from it is the policy's own bet,
    fees included. ``False`` starts in cash.

    Action dampening is one number, ``action_dampening``, applied once, by the risk layers
    (``effective_risk``). A ``risk`` given with its own dampening moves it here; giving two
    different dampenings is refused.
    """

    lookback: int = 20  # bars of features in each observation
    episode_bars: int = 256  # steps per training episode
    num_envs: int = 256  # episodes stepped together
    initial_cash: float = 10_000.0  # starting cash, quote currency; only ratios reach reward and metrics
    fee_rate: float = 0.0025  # fee per side as a fraction of traded notional (0.25%)
    slippage_bps: float = 5.0  # adverse price move per fill, basis points
    min_order_notional: float = 1.0  # orders smaller than this (quote currency) are dropped
    min_cash_reserve: float = 0.0  # fraction of equity that buys may not spend
    action_dampening: float = 1.0  # the policy's actions are multiplied by this (by the risk layers)
    reward_mode: RewardMode = RewardMode.EXCESS_LOG_RETURN  # absolute or excess-over-buy-and-hold
    concentration_penalty: float = 0.0  # times the Herfindahl index of asset weights, subtracted per step
    reward_scale: float = 100.0  # multiplies the reward (log returns per bar are tiny)
    obs_clip: float = 5.0  # normalised features are clipped to [-obs_clip, obs_clip]
    start_invested: bool = True  # episodes and windows start in the benchmark's book (equal weights), not in cash
    risk: RiskConfig = field(default_factory=RiskConfig)  # stops, caps, profit protection (its dampening is 1.0)

    def __post_init__(self) -> None:
        checks = {
            "lookback": self.lookback >= 1,
            "episode_bars": self.episode_bars >= 1,
            "num_envs": self.num_envs >= 1,
            "initial_cash": self.initial_cash > 0,
            "fee_rate": 0.0 <= self.fee_rate < 0.1,
            "slippage_bps": 0.0 <= self.slippage_bps < 1000,
            "min_order_notional": self.min_order_notional >= 0,
            "min_cash_reserve": 0.0 <= self.min_cash_reserve < 1.0,
            "action_dampening": 0.0 < self.action_dampening <= 1.0,
            "concentration_penalty": self.concentration_penalty >= 0,
            "reward_scale": self.reward_scale > 0,
            "obs_clip": self.obs_clip > 0,
            "risk": isinstance(self.risk, RiskConfig | dict),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"invalid EnvConfig: {values}")
        object.__setattr__(self, "reward_mode", RewardMode(self.reward_mode))
        risk = RiskConfig.from_dict(self.risk) if isinstance(self.risk, dict) else self.risk
        if risk.action_dampening != 1.0:
            if self.action_dampening not in (1.0, risk.action_dampening):
                raise ValueError(
                    f"invalid EnvConfig: action_dampening={self.action_dampening!r} but "
                    f"risk.action_dampening={risk.action_dampening!r}; give the dampening once"
                )
            object.__setattr__(self, "action_dampening", risk.action_dampening)
            risk = replace(risk, action_dampening=1.0)
        object.__setattr__(self, "risk", risk)

    @property
    def effective_risk(self) -> RiskConfig:
        """The risk config the env, the backtester and the trader apply: ``risk`` with ``action_dampening``."""
        if self.action_dampening == 1.0:
            return self.risk
        return replace(self.risk, action_dampening=self.action_dampening)

    def with_risk(self, risk: RiskConfig) -> EnvConfig:
        """Return this config with other risk layers (e.g. ``RiskConfig.off()``).

        The dampening stays unless ``risk`` brings its own.
        """
        if risk.action_dampening == 1.0:
            return replace(self, risk=risk)
        return replace(self, action_dampening=1.0, risk=risk)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (``risk`` as ``RiskConfig.to_dict``)."""
        out = asdict(self)
        out["reward_mode"] = str(self.reward_mode)
        out["risk"] = self.risk.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvConfig:
        """Rebuild from ``to_dict`` output; a dict without ``risk`` gets no risk layers (what such a card traded with)."""
        values = dict(data)
        values.setdefault("risk", RiskConfig.off())  # a card from before the risk layers traded without them
        if isinstance(values["risk"], dict):
            values["risk"] = RiskConfig.from_dict(values["risk"])
        return cls(**values)
