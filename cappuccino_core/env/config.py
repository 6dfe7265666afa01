"""Configuration of the portfolio environment (and of every backtest, which runs the same env)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class RewardMode(StrEnum):
    """What the per-step reward measures."""

    LOG_RETURN = "log_return"  # log(V_{t+1} / V_t)
    EXCESS_LOG_RETURN = "excess_log_return"  # minus the equal-weight buy-and-hold log return


@dataclass(frozen=True)
class EnvConfig:
    """Everything that shapes an episode, its costs and its reward.

    Execution rule (used everywhere: training, backtest, arena, sandbox, live parity): the
    observation at decision bar ``t`` uses bars up to and including ``t``; the action executes
    at the **open of bar t+1** with slippage; the step's return is measured from the close of
    ``t`` to the close of ``t+1``.
    """

    lookback: int = 20  # bars of features in each observation
    episode_bars: int = 256  # steps per training episode
    num_envs: int = 256  # episodes stepped together
    initial_cash: float = 10_000.0  # starting cash, quote currency; only ratios reach reward and metrics
    fee_rate: float = 0.0025  # fee per side as a fraction of traded notional (0.25%)
    slippage_bps: float = 5.0  # adverse price move per fill, basis points
    min_order_notional: float = 1.0  # orders smaller than this (quote currency) are dropped
    min_cash_reserve: float = 0.0  # fraction of equity that buys may not spend
    action_dampening: float = 1.0  # actions are multiplied by this before mapping to orders
    reward_mode: RewardMode = RewardMode.EXCESS_LOG_RETURN  # absolute or excess-over-buy-and-hold
    concentration_penalty: float = 0.0  # times the Herfindahl index of asset weights, subtracted per step
    reward_scale: float = 100.0  # multiplies the reward (log returns per bar are tiny)
    obs_clip: float = 5.0  # normalised features are clipped to [-obs_clip, obs_clip]

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
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"invalid EnvConfig: {values}")
        object.__setattr__(self, "reward_mode", RewardMode(self.reward_mode))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        out = asdict(self)
        out["reward_mode"] = str(self.reward_mode)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvConfig:
        """Rebuild from ``to_dict`` output."""
        return cls(**data)
