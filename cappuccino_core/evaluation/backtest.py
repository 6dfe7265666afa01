"""The backtester: a policy trades fixed windows of a panel through the training environment.

It does not re-implement anything: it runs ``PortfolioEnv`` in evaluation mode (fixed starts,
no auto-reset), so fills, fees, timing, the risk layers (``EnvConfig.risk``) and the benchmark
are exactly the training ones. Several windows run as one batch. Deterministic: the same
policy, panel and windows give the same report.

Each report also lists its trades (``Trade``): round trips per asset, from flat (or from the
starting book, when a window starts invested) back to flat, with who closed them: the policy,
or the risk rule that forced the sell. A position still open when the window ends is a trade
marked at the last close with exit reason ``end``; it is not counted in the metrics' closed trades.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.env.portfolio_env import PortfolioEnv
from cappuccino_core.evaluation.metrics import PerformanceReport, RoundTrip, compute_performance, round_trips_from_fills
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.risk.layers import RiskDecision, RiskRule

_FLAT_RTOL = 1e-9  # a position this small relative to its peak is flat (as in ``metrics.round_trips_from_fills``)

EXIT_RULES: tuple[RiskRule, ...] = (
    RiskRule.PORTFOLIO_TRAILING_STOP, RiskRule.MOVE_TO_CASH, RiskRule.PROFIT_TAKE,
    RiskRule.STOP_LOSS, RiskRule.TRAILING_STOP, RiskRule.POSITION_TRIM,
)
"""Rules that force sells, in the order ``apply_risk`` applies them (the first that fired names a sell)."""

POLICY_EXIT = "policy"
"""Exit reason of a sell the policy asked for (no risk rule forced it)."""

END_EXIT = "end"
"""Exit reason of a position still open at the end of the window (marked at the last close)."""

_REASON_NAMES = np.array([POLICY_EXIT, *(str(rule) for rule in EXIT_RULES)], dtype=object)  # by exit code


@dataclass(frozen=True)
class PolicyContext:
    """What a policy may see besides its observation; everything is at the decision bar or before.

    Attributes:
        panel: the panel being traded (rule-based policies read ``close[:row + 1]`` only).
        rows: ``[N]`` decision rows.
        steps: ``[N]`` steps taken in the episode so far.
        cash: ``[N]`` cash.
        holdings: ``[N, A]`` units held.
        close: ``[N, A]`` close prices at the decision rows.
    """

    panel: MarketPanel
    rows: torch.Tensor
    steps: int
    cash: torch.Tensor
    holdings: torch.Tensor
    close: torch.Tensor


class Policy(Protocol):
    """Maps observations to actions in ``[-1, 1]^A``. Contract: deterministic, no look-ahead."""

    name: str

    def act(self, obs: torch.Tensor, context: PolicyContext) -> torch.Tensor:
        """Return actions ``[N, A]`` for observations ``[N, obs_dim]``."""
        ...


@dataclass(frozen=True)
class Trade:
    """One round trip in one asset, fees included.

    Attributes:
        symbol: the asset.
        side: ``+1`` long (the env is long-only).
        entry_step: the step whose fill opened it; ``-1`` for the window's starting book
            (booked without costs at the decision bar's close).
        exit_step: the step whose fill closed it; ``H`` (the number of steps) for a position
            still open at the end, marked at the last close.
        entry_ns, exit_ns: bar open times (ns) of the fills (the decision bar for the starting
            book, the last bar for the end mark).
        entry_notional: capital put in (``sum |qty| * price`` of the buys).
        pnl: profit in quote currency, fees included.
        fees: fees paid.
        exit_reason: ``policy``, the ``RiskRule`` that forced the closing sell, or ``end``.
    """

    symbol: str
    side: int
    entry_step: int
    exit_step: int
    entry_ns: int
    exit_ns: int
    entry_notional: float
    pnl: float
    fees: float
    exit_reason: str

    @property
    def pnl_fraction(self) -> float:
        """P&L as a fraction of the capital put in."""
        return self.pnl / self.entry_notional

    @property
    def closed(self) -> bool:
        """Whether the trade was closed inside the window (not marked at its end)."""
        return self.exit_reason != END_EXIT


@dataclass(frozen=True, eq=False)
class EvalReport:
    """One window traded by one policy.

    Attributes:
        policy: the policy's name.
        metrics: every performance number (returns net of fees; alpha against the frictionless
            equal-weight buy-and-hold index of the window's assets from the window's first bar).
        timestamps: ``[H + 1]`` bar times (ns) of the equity curve: the decision bar, then each step's bar.
        equity: ``[H + 1]`` portfolio value relative to the start (1.0 at the start).
        benchmark: ``[H + 1]`` equal-weight buy-and-hold index (1.0 at the start).
        returns, benchmark_returns: ``[H]`` fractional per-step returns.
        actions: ``[H, A]`` actions the policy took (for parity checks).
        weights: ``[H, A]`` asset weights after each step.
        fill_step, fill_asset, fill_qty, fill_price, fill_fee: one entry per fill.
        executed_actions: ``[H, A]`` actions filled, after the risk layers (equal to
            ``actions`` when they are off).
        risk_counts: triggers of each risk rule over the window (rule name -> count).
        fill_reason: one entry per fill: ``policy``, or the ``RiskRule`` that forced the sell.
        trades: the window's round trips, ordered by exit (see ``Trade``).
    """

    policy: str
    metrics: PerformanceReport
    start_row: int
    timestamps: np.ndarray
    equity: np.ndarray
    benchmark: np.ndarray
    returns: np.ndarray
    benchmark_returns: np.ndarray
    actions: np.ndarray
    weights: np.ndarray
    fill_step: np.ndarray
    fill_asset: np.ndarray
    fill_qty: np.ndarray
    fill_price: np.ndarray
    fill_fee: np.ndarray
    executed_actions: np.ndarray | None = None
    risk_counts: dict[str, int] = field(default_factory=dict)
    fill_reason: np.ndarray | None = None
    trades: tuple[Trade, ...] = ()


def backtest(
    policy: Policy,
    panel: MarketPanel,
    normalizer: FeatureNormalizer,
    config: EnvConfig,
    *,
    start_row: int | None = None,
    bars: int | None = None,
) -> EvalReport:
    """Trade one window: from ``start_row`` (default: the first row with a full lookback) for ``bars`` steps.

    Raises:
        ValueError: the window does not fit inside one segment of the panel.
    """
    start = config.lookback - 1 if start_row is None else start_row
    horizon = panel.num_bars - 1 - start if bars is None else bars
    return backtest_windows(policy, panel, normalizer, config, np.array([start]), horizon)[0]


def backtest_windows(
    policy: Policy,
    panel: MarketPanel,
    normalizer: FeatureNormalizer,
    config: EnvConfig,
    starts: np.ndarray,
    horizon: int,
) -> list[EvalReport]:
    """Trade several windows of ``horizon`` steps at once, one episode per start row."""
    if horizon < 1:
        raise ValueError(f"a backtest needs at least one step, got horizon={horizon}")
    run_config = EnvConfig.from_dict({**config.to_dict(), "episode_bars": horizon, "num_envs": len(starts)})
    env = PortfolioEnv(panel, run_config, normalizer, starts=np.asarray(starts))
    n, a = env.num_envs, env.action_dim
    obs = env.reset()
    value = np.empty((horizon + 1, n))
    bench = np.empty((horizon + 1, n))
    actions = np.empty((horizon, n, a))
    executed = np.empty((horizon, n, a))
    weights = np.empty((horizon, n, a))
    units = np.empty((horizon, n, a))
    notional = np.empty((horizon, n, a))
    pre_weights = np.empty((horizon, n, a))
    post_weights = np.empty((horizon, n, a))
    reasons = np.zeros((horizon, n, a), dtype=np.int8)  # 0: the policy, k: EXIT_RULES[k - 1]
    value[0] = config.initial_cash
    bench[0] = 1.0
    with torch.no_grad():
        for step in range(horizon):
            cash, holdings = env.book()
            context = PolicyContext(panel, env.rows, step, cash, holdings, env.close_prices())
            action = policy.act(obs, context).clamp(-1.0, 1.0)
            obs = env.step(action).obs
            record = env.last_record
            fill_prices = torch.from_numpy(panel.open[record.row.numpy()])
            pre_weights[step] = _weights(cash, holdings, fill_prices)
            post_weights[step] = _weights(record.fills.cash, record.fills.holdings, fill_prices)
            actions[step] = action.numpy()
            executed[step] = record.actions.numpy()
            value[step + 1] = record.value_after.numpy()
            bench[step + 1] = bench[step] * (1.0 + record.benchmark_return.numpy())
            weights[step] = record.weights_after.numpy()
            units[step] = record.fills.units.numpy()
            notional[step] = record.fills.notional.numpy()
            if record.risk is not None:
                reasons[step] = _exit_codes(record.risk, n, a)
    starts = np.asarray(starts)
    opening = _opening_units(panel, run_config, starts)
    counts = {str(rule): env.risk_state.count(rule).tolist() for rule in RiskRule}
    return [
        _report(
            policy.name, panel, config, int(starts[i]), value[:, i], bench[:, i], actions[:, i],
            weights[:, i], pre_weights[:, i], post_weights[:, i], units[:, i], notional[:, i],
            executed[:, i], {rule: int(c[i]) for rule, c in counts.items()}, reasons[:, i], opening[i],
        )
        for i in range(n)
    ]


def _exit_codes(decision: RiskDecision, n: int, a: int) -> np.ndarray:
    """``[N, A]`` code of the first exit rule (in application order) that fired on each book and asset, else 0."""
    codes = np.zeros((n, a), dtype=np.int8)
    for code, rule in reversed(list(enumerate(EXIT_RULES, start=1))):  # earlier rules overwrite later ones
        mask = decision.triggers.get(rule)
        if mask is None:
            continue
        fired = mask.numpy()
        codes[np.broadcast_to(fired[:, None] if fired.ndim == 1 else fired, (n, a))] = code
    return codes


def _opening_units(panel: MarketPanel, config: EnvConfig, starts: np.ndarray) -> np.ndarray:
    """``[N, A]`` units of each window's starting book (``PortfolioEnv._start_episodes``; zeros when it starts in cash)."""
    if not config.start_invested:
        return np.zeros((len(starts), panel.num_assets))
    close = panel.close[starts]
    return config.initial_cash / panel.num_assets / close


def _trades(panel: MarketPanel, start: int, horizon: int, opening: np.ndarray, step_idx: np.ndarray,
            asset_idx: np.ndarray, qty: np.ndarray, price: np.ndarray, fee: np.ndarray,
            reason: np.ndarray) -> tuple[list[RoundTrip], tuple[Trade, ...]]:
    """The window's closed round trips (for the metrics) and its trades, the open ones marked at the last close.

    The starting book enters as cost-free buys at the decision close (so selling it is not a
    short), and each position left at the end as a cost-free sell at the last close.
    """
    held = np.flatnonzero(opening)
    end_units, peak = opening.copy(), np.abs(opening)
    for a in np.unique(asset_idx):
        position = opening[a] + np.cumsum(qty[asset_idx == a])
        end_units[a], peak[a] = position[-1], max(peak[a], float(np.max(np.abs(position))))
    marked = np.flatnonzero(np.abs(end_units) > _FLAT_RTOL * peak)  # flat as ``round_trips_from_fills`` judges it
    steps = np.concatenate([np.full(held.size, -1), step_idx, np.full(marked.size, horizon)])
    assets = np.concatenate([held, asset_idx, marked]).astype(int)
    all_qty = np.concatenate([opening[held], qty, -end_units[marked]])
    all_price = np.concatenate([panel.close[start, held], price, panel.close[start + horizon, marked]])
    all_fee = np.concatenate([np.zeros(held.size), fee, np.zeros(marked.size)])
    reasons = [POLICY_EXIT] * held.size + list(reason) + [END_EXIT] * marked.size
    if not all_qty.size:
        return [], ()
    trips = round_trips_from_fills(all_qty, all_price, all_fee, asset=assets.tolist())
    # A fill of step s is at the open of bar s + 1; the starting book at the decision bar, the end mark at the last bar.
    bar_ns = lambda s: int(panel.timestamps[start + min(s + 1, horizon)])  # noqa: E731
    trades = tuple(
        Trade(symbol=panel.symbols[int(t.asset)], side=t.side, entry_step=int(steps[t.open_fill]),
              exit_step=int(steps[t.close_fill]), entry_ns=bar_ns(int(steps[t.open_fill])),
              exit_ns=bar_ns(int(steps[t.close_fill])), entry_notional=t.entry_notional, pnl=t.pnl, fees=t.fees,
              exit_reason=reasons[t.close_fill])
        for t in trips
    )
    closed = [t for t in trips if reasons[t.close_fill] != END_EXIT]
    return closed, trades


def _weights(cash: torch.Tensor, holdings: torch.Tensor, prices: torch.Tensor) -> np.ndarray:
    """Asset weights of a book valued at ``prices`` (turnover and exposure are measured at the fill)."""
    held = holdings * prices
    return (held / (cash + held.sum(dim=-1)).unsqueeze(-1)).numpy()


def _report(
    name: str,
    panel: MarketPanel,
    config: EnvConfig,
    start: int,
    value: np.ndarray,
    bench: np.ndarray,
    actions: np.ndarray,
    weights: np.ndarray,
    pre_weights: np.ndarray,
    post_weights: np.ndarray,
    units: np.ndarray,
    notional: np.ndarray,
    executed: np.ndarray,
    risk_counts: dict[str, int],
    reasons: np.ndarray,
    opening: np.ndarray,
) -> EvalReport:
    horizon = actions.shape[0]
    returns = value[1:] / value[:-1] - 1.0
    bench_returns = bench[1:] / bench[:-1] - 1.0
    step_idx, asset_idx = np.nonzero(units)
    qty = units[step_idx, asset_idx]
    price = np.abs(notional[step_idx, asset_idx] / qty)
    fee = np.abs(notional[step_idx, asset_idx]) * config.fee_rate
    codes = np.where(qty < 0, reasons[step_idx, asset_idx], 0)  # a buy is always the policy's
    fill_reason = _REASON_NAMES[codes]
    trips, trades = _trades(panel, start, horizon, opening, step_idx, asset_idx, qty, price, fee, fill_reason)
    metrics = compute_performance(
        returns, bench_returns, panel.interval, weights=post_weights, weights_before_trade=pre_weights, round_trips=trips
    )
    return EvalReport(
        policy=name,
        metrics=metrics,
        start_row=start,
        timestamps=panel.timestamps[start : start + horizon + 1].copy(),
        equity=value / value[0],
        benchmark=bench,
        returns=returns,
        benchmark_returns=bench_returns,
        actions=actions,
        weights=weights,
        fill_step=step_idx,
        fill_asset=asset_idx,
        fill_qty=qty,
        fill_price=price,
        fill_fee=fee,
        executed_actions=executed,
        risk_counts=risk_counts,
        fill_reason=fill_reason,
        trades=trades,
    )
