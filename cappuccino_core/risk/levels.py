"""Shared helpers of the risk hot path: a config's thresholds as tensors, and input checks."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cappuccino_core.risk.config import THRESHOLD_TOLERANCE, RiskConfig
from cappuccino_core.risk.state import RiskState


@dataclass(frozen=True)
class Levels:
    """A config's thresholds as 0-dim tensors (a Python scalar costs a tensor wrap per operation).

    Comparison levels have the tolerance folded in: ``price <= entry * stop_loss`` triggers at
    ``price <= entry * (1 - stop_loss) * (1 + THRESHOLD_TOLERANCE)``.
    """

    zero: torch.Tensor
    neg_one: torch.Tensor
    dampening: torch.Tensor
    dust: torch.Tensor
    stop_loss: torch.Tensor
    trailing_stop: torch.Tensor
    portfolio_stop: torch.Tensor
    move_to_cash: torch.Tensor
    profit_take: torch.Tensor
    neg_profit_fraction: torch.Tensor
    cap: torch.Tensor
    above_cap: torch.Tensor
    cooldown: torch.Tensor


_CACHE: dict[tuple[int, torch.dtype, torch.device], tuple[RiskConfig, Levels]] = {}


def levels(config: RiskConfig, dtype: torch.dtype, device: torch.device) -> Levels:
    """Return ``config``'s levels for tensors of ``dtype`` on ``device`` (cached per config object)."""
    key = (id(config), dtype, device)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is config:
        return hit[1]
    if len(_CACHE) > 64:
        _CACHE.clear()
    made = _make_levels(config, dtype, device)
    _CACHE[key] = (config, made)  # holding the config keeps its id from being reused
    return made


def _make_levels(config: RiskConfig, dtype: torch.dtype, device: torch.device) -> Levels:
    def const(value: float, kind: torch.dtype = dtype) -> torch.Tensor:
        return torch.tensor(value, dtype=kind, device=device)

    def below(fraction: float | None) -> float:  # "at or below (1 - fraction)"
        return 0.0 if fraction is None else (1.0 - fraction) * (1.0 + THRESHOLD_TOLERANCE)

    cap = 1.0 if config.max_position_fraction is None else config.max_position_fraction
    profit = config.profit_take_threshold or 0.0
    return Levels(
        zero=const(0.0),
        neg_one=const(-1.0),
        dampening=const(config.action_dampening),
        dust=const(config.dust_notional),
        stop_loss=const(below(config.stop_loss)),
        trailing_stop=const(below(config.trailing_stop)),
        portfolio_stop=const(below(config.portfolio_trailing_stop)),
        move_to_cash=const(below(config.move_to_cash_threshold)),
        profit_take=const((1.0 + profit) * (1.0 - THRESHOLD_TOLERANCE)),
        neg_profit_fraction=const(-config.profit_take_fraction),
        cap=const(cap),
        above_cap=const(1.0 + THRESHOLD_TOLERANCE),
        cooldown=const(config.cooldown_bars, torch.int64),
    )


def check_shape(name: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``tensor`` has ``shape``."""
    if tuple(tensor.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")


def check_prices(name: str, prices: torch.Tensor) -> None:
    """Raise naming the first book and asset whose price is not a positive finite number."""
    good = (prices > 0) & torch.isfinite(prices)
    if not bool(good.all()):
        row, col = (int(i) for i in (~good).nonzero()[0])
        raise ValueError(f"{name}[{row}, {col}] = {float(prices[row, col])!r}: prices must be positive and finite")


def check_decision_inputs(
    actions: torch.Tensor,
    state: RiskState,
    cash: torch.Tensor,
    holdings: torch.Tensor,
    prices: torch.Tensor,
    *,
    values: bool,
) -> None:
    """Check shapes against ``state``; with ``values``, also prices (positive, finite) and actions (finite)."""
    n, a = state.num_books, state.num_assets
    check_shape("actions", actions, (n, a))
    check_shape("cash", cash, (n,))
    check_shape("holdings", holdings, (n, a))
    check_shape("prices", prices, (n, a))
    if values:
        check_prices("prices", prices)
        finite = torch.isfinite(actions)
        if not bool(finite.all()):
            row, col = (int(i) for i in (~finite).nonzero()[0])
            raise ValueError(f"actions[{row}, {col}] = {float(actions[row, col])!r}: actions must be finite")
