"""The conviction filter: a score in ``[0, 1]`` for each policy buy; weak buys are dropped.

The score is the weighted mean (``RiskConfig.conviction_weights``) of four parts, each in ``[0, 1]``:

* size: the buy's share of equity relative to a full position,
  ``min(1, a_i / max(1, sum(a+)) * cash / equity / max_position_fraction)`` (1 when the cap is off);
* momentum: ``0.5 + 0.5 * tanh(mean / volatility)`` of the asset's fast exponential averages of
  log returns: buying into a rise scores above 0.5, into a fall below;
* volatility regime: ``min(1, slow volatility / fast volatility)``: 1 in a calm or normal
  regime, lower when recent volatility exceeds its baseline;
* drawdown: ``1 - min(1, book drawdown / conviction_drawdown_scale)``, the drawdown measured
  from ``RiskState.book_peak``: the deeper the book is under water, the lower.

Sells are never filtered: a risk layer never stands in the way of reducing risk. The return
statistics are updated once per ``apply_risk`` call from the decision prices, and only while the
filter is on; a book's first bar has no return and leaves them unchanged.
"""

from __future__ import annotations

import torch

from cappuccino_core.risk.config import RiskConfig

_TINY = 1e-12  # keeps 0 / 0 out of the volatility ratios (log returns are far larger)


def update_return_stats(
    prices: torch.Tensor,
    last_price: torch.Tensor,
    return_fast: torch.Tensor,
    variance_fast: torch.Tensor,
    variance_slow: torch.Tensor,
    config: RiskConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fold the bar's log return into the averages; return ``(last_price, return_fast, variance_fast, variance_slow)``.

    Averages are exponential with ``alpha = 2 / (span + 1)`` for the fast and slow spans.
    """
    known = last_price > 0
    log_return = torch.where(known, torch.log(prices / last_price), torch.zeros_like(prices))
    squared = log_return * log_return
    fast = 2.0 / (config.conviction_fast_bars + 1)
    slow = 2.0 / (config.conviction_slow_bars + 1)
    return_fast = torch.where(known, torch.lerp(return_fast, log_return, fast), return_fast)
    variance_fast = torch.where(known, torch.lerp(variance_fast, squared, fast), variance_fast)
    variance_slow = torch.where(known, torch.lerp(variance_slow, squared, slow), variance_slow)
    return prices, return_fast, variance_fast, variance_slow


def conviction_scores(
    actions: torch.Tensor,
    *,
    cash: torch.Tensor,
    equity: torch.Tensor,
    book_peak: torch.Tensor,
    return_fast: torch.Tensor,
    variance_fast: torch.Tensor,
    variance_slow: torch.Tensor,
    config: RiskConfig,
) -> torch.Tensor:
    """Return ``[N, A]`` conviction scores in ``[0, 1]`` (meaningful where ``actions > 0``)."""
    buys = actions.relu()
    share = buys / buys.sum(dim=-1, keepdim=True).clamp_min(1.0)
    full_position = config.max_position_fraction if config.max_position_fraction is not None else 1.0
    cash_weight = (cash / equity).unsqueeze(1)
    size = (share * cash_weight / full_position).clamp_max(1.0)

    sigma_fast = variance_fast.sqrt()
    momentum = 0.5 + 0.5 * torch.tanh(return_fast / (sigma_fast + _TINY))
    regime = ((variance_slow.sqrt() + _TINY) / (sigma_fast + _TINY)).clamp_max(1.0)

    drawdown = (1.0 - equity / book_peak).relu()
    context = (1.0 - drawdown / config.conviction_drawdown_scale).clamp_min(0.0).unsqueeze(1)

    w_size, w_momentum, w_regime, w_context = config.conviction_weights
    total = w_size + w_momentum + w_regime + w_context
    return (w_size * size + w_momentum * momentum + w_regime * regime + w_context * context) / total
