"""The batched portfolio environment: N episodes of spot, long-only trading stepped as tensors.

Timeline of one step for an episode at decision bar ``t`` (see ``EnvConfig``):

1. The observation was built from feature rows ``t - lookback + 1 .. t`` and the book
   valued at ``close[t]``: nothing after bar ``t`` is visible.
2. The action executes at ``open[t + 1]`` with slippage and fees (``accounting``).
3. The book is valued at ``close[t + 1]``; the reward is the fractional (log) return
   ``log(V[t+1] / V[t])``, optionally minus the log return of the equal-weight
   buy-and-hold index over the same bar, minus a concentration penalty, times a scale.

Between 1 and 2 the risk layers (``cappuccino_core.risk``, ``EnvConfig.risk``) turn the
policy's actions into the actions filled, at the decision prices ``close[t]``; after the fills
they book them into the risk state (entry prices, peaks, cycles), marked at ``close[t + 1]``.
Action dampening happens there and nowhere else.

Every accumulator (cash, holdings, step counters, benchmark base, risk state) is per episode and
is reset when the episode starts. Episodes start at random rows inside one panel segment
(``MarketPanel.window_starts``), or at fixed rows for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from cappuccino_core.accounting import ExecutionCosts, Fills, execute_actions, portfolio_value
from cappuccino_core.env.config import EnvConfig, RewardMode
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.env.protocol import ObservationLayout, StepResult
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.risk.layers import RiskConfig, RiskDecision, RiskState, apply_risk, update_after_fills


@dataclass(frozen=True)
class StepRecord:
    """Book-keeping of the last step, for backtests and journals (all ``[N]`` or ``[N, A]``).

    ``row`` is the bar at which the step's return ends (``t + 1``). ``actions`` are the
    actions filled (the policy's after the risk layers); ``risk`` is the risk layers'
    decision (``None`` when every rule is off and there is no dampening).
    """

    row: torch.Tensor
    value_before: torch.Tensor
    value_after: torch.Tensor
    benchmark_return: torch.Tensor
    weights_after: torch.Tensor
    fills: Fills
    actions: torch.Tensor | None = None
    risk: RiskDecision | None = None


def risk_is_noop(risk: RiskConfig) -> bool:
    """Return True when ``risk`` can never change an action (every rule off, no dampening)."""
    rules = (
        risk.stop_loss, risk.trailing_stop, risk.max_position_fraction, risk.portfolio_trailing_stop,
        risk.profit_take_threshold, risk.move_to_cash_threshold, risk.conviction_threshold,
    )
    return all(rule is None for rule in rules) and risk.action_dampening == 1.0


def normalized_feature_rows(panel: MarketPanel, normalizer: FeatureNormalizer, obs_clip: float) -> torch.Tensor:
    """Return the panel's normalised features flattened per row, ``[T, A * F]`` float32."""
    features = normalizer.transform(panel.features, clip=obs_clip)
    return torch.from_numpy(features.reshape(panel.num_bars, panel.num_assets * panel.features.shape[2]))


def observe(
    feature_rows: torch.Tensor,
    rows: torch.Tensor,
    lookback: int,
    cash: torch.Tensor,
    holdings: torch.Tensor,
    close: torch.Tensor,
) -> torch.Tensor:
    """Build observations (``ObservationLayout``) of ``N`` books deciding at ``rows``.

    The one implementation of the observation: the environment, the backtester and the trader
    all call it.

    Args:
        feature_rows: ``[T, A * F]`` normalised features (``normalized_feature_rows``).
        rows: ``[N]`` decision rows; rows ``rows - lookback + 1 .. rows`` are read.
        lookback: bars per window.
        cash: ``[N]`` cash.
        holdings: ``[N, A]`` units held.
        close: ``[N, A]`` close prices at the decision rows (the book is valued at them).
    """
    index = (rows.unsqueeze(1) - _window_offsets(lookback)).reshape(-1)
    window = feature_rows.index_select(0, index).reshape(rows.shape[0], -1)
    value = portfolio_value(cash, holdings, close)
    cash_fraction = (cash / value).unsqueeze(1)
    holding_fractions = holdings * close / value.unsqueeze(1)
    portfolio = torch.cat([cash_fraction, holding_fractions], dim=1).to(torch.float32)
    return torch.cat([portfolio, window], dim=1)


@lru_cache(maxsize=16)
def _window_offsets(lookback: int) -> torch.Tensor:
    """``[lookback - 1, ..., 0]``: how far each window row lies before the decision row (read-only)."""
    return torch.arange(lookback - 1, -1, -1)


def _book_opening(state: RiskState, mask: torch.Tensor, units: torch.Tensor, close: torch.Tensor,
                  risk: RiskConfig) -> RiskState:
    """Book the starting units of the rows in ``mask`` into the risk state as a cost-free fill at ``close``.

    The risk layers then treat the starting book like any position (entry prices, cycle start,
    equity peak), through the same ``update_after_fills`` every fill goes through.
    """
    count, assets = units.shape
    zeros = torch.zeros(count, dtype=units.dtype)
    fills = Fills(cash=zeros, holdings=units, units=units, notional=units * close, fees=zeros,
                  dropped=torch.zeros(count, assets, dtype=torch.bool))
    rows = state.select(mask)
    booked = update_after_fills(rows, fills=fills, prices_after=close, cash=zeros, holdings=units, config=risk,
                                validate=False)
    return state.assign(mask, booked)


class PortfolioEnv:
    """``VecEnv`` over a ``MarketPanel``; see the module docstring for the timeline."""

    def __init__(
        self,
        panel: MarketPanel,
        config: EnvConfig,
        normalizer: FeatureNormalizer,
        *,
        seed: int = 0,
        starts: np.ndarray | None = None,
    ) -> None:
        """Build the environment.

        Args:
            panel: the bars and features to trade.
            config: episode, cost and reward settings.
            normalizer: feature statistics fitted on the training rows.
            seed: seeds the episode start sampler.
            starts: fixed decision rows for the ``num_envs`` episodes (evaluation mode: no
                random starts and no auto-reset). ``None`` samples random valid starts.
        """
        self.config = config
        self.panel = panel
        self.costs = ExecutionCosts(
            fee_rate=config.fee_rate,
            slippage_bps=config.slippage_bps,
            min_order_notional=config.min_order_notional,
            min_cash_reserve=config.min_cash_reserve,
        )
        num_assets, num_features = panel.num_assets, panel.features.shape[2]
        self.layout = ObservationLayout(num_assets=num_assets, lookback=config.lookback, num_features=num_features)
        self.obs_dim = self.layout.obs_dim
        self.action_dim = num_assets
        self._features = normalized_feature_rows(panel, normalizer, config.obs_clip)
        self._open = torch.from_numpy(np.ascontiguousarray(panel.open, dtype=np.float64))
        self._close = torch.from_numpy(np.ascontiguousarray(panel.close, dtype=np.float64))
        for name, prices in (("open", self._open), ("close", self._close)):
            if not bool(((prices > 0) & torch.isfinite(prices)).all()):
                raise ValueError(f"panel {name} prices must be positive and finite")
        self.risk = config.effective_risk
        self._risk_on = not risk_is_noop(self.risk)
        self._generator = torch.Generator().manual_seed(seed)

        if starts is None:
            valid = panel.window_starts(config.lookback, config.episode_bars)
            if valid.size == 0:
                raise ValueError(
                    f"no window of {config.lookback} lookback + {config.episode_bars} bars fits in one segment "
                    f"of the panel ({panel.num_bars} rows)"
                )
            self._valid_starts = torch.from_numpy(valid)
            self._fixed_starts = None
            self.num_envs = config.num_envs
        else:
            fixed = np.asarray(starts, dtype=np.int64)
            allowed = set(panel.window_starts(config.lookback, config.episode_bars).tolist())
            bad = [int(s) for s in fixed if int(s) not in allowed]
            if bad:
                raise ValueError(f"start rows {bad[:5]} leave no room for lookback and episode inside one segment")
            self._valid_starts = None
            self._fixed_starts = torch.from_numpy(fixed)
            self.num_envs = int(fixed.shape[0])

        n = self.num_envs
        self._t = torch.zeros(n, dtype=torch.long)
        self._steps = torch.zeros(n, dtype=torch.long)
        self._cash = torch.zeros(n, dtype=torch.float64)
        self._holdings = torch.zeros(n, num_assets, dtype=torch.float64)
        self._bench_base = torch.ones(n, num_assets, dtype=torch.float64)
        self._risk_state = RiskState.initial(n, num_assets)
        self._all = torch.ones(n, dtype=torch.bool)
        self.last_record: StepRecord | None = None

    # --- episode control -------------------------------------------------------------

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start ``N`` fresh episodes; every accumulator is cleared."""
        if seed is not None:
            self._generator.manual_seed(seed)
        self._start_episodes(self._all)
        self.last_record = None
        return self._observe()

    def _start_episodes(self, mask: torch.Tensor) -> None:
        count = int(mask.sum())
        if count == 0:
            return
        if self._fixed_starts is not None:
            starts = self._fixed_starts[mask]
        else:
            pick = torch.randint(len(self._valid_starts), (count,), generator=self._generator)
            starts = self._valid_starts[pick]
        self._t[mask] = starts
        self._steps[mask] = 0
        self._bench_base[mask] = self._close[starts]
        if self._risk_on:
            self._risk_state = self._risk_state.reset_rows(mask)
        if not self.config.start_invested:
            self._cash[mask] = self.config.initial_cash
            self._holdings[mask] = 0.0
            return
        # The benchmark's book at the decision close, booked without costs (see EnvConfig).
        close = self._close[starts]
        units = self.config.initial_cash / close.shape[1] / close
        self._cash[mask] = 0.0
        self._holdings[mask] = units
        if self._risk_on:
            self._risk_state = _book_opening(self._risk_state, mask, units, close, self.risk)

    # --- observation -------------------------------------------------------------------

    def _observe(self) -> torch.Tensor:
        return observe(self._features, self._t, self.config.lookback, self._cash, self._holdings, self._close[self._t])

    # --- step -----------------------------------------------------------------------------

    def step(self, actions: torch.Tensor) -> StepResult:
        """Execute ``actions`` at the next bar's open and advance every episode one bar."""
        if self._fixed_starts is not None and bool((self._steps >= self.config.episode_bars).any()):
            raise RuntimeError("evaluation episodes are over; call reset() to run them again")
        cfg = self.config
        t, t_next = self._t, self._t + 1
        close_now, close_next = self._close[t], self._close[t_next]
        value_before = portfolio_value(self._cash, self._holdings, close_now)

        executed = actions.detach().to(torch.float64).clamp(-1.0, 1.0)
        decision = None
        if self._risk_on:  # prices come from a checked panel and actions are clipped above
            decision = apply_risk(executed, self._risk_state, cash=self._cash, holdings=self._holdings,
                                  prices=close_now, config=self.risk, validate=False)
            executed = decision.actions
        fills = execute_actions(self._cash, self._holdings, executed, self._open[t_next], self.costs)
        self._cash, self._holdings = fills.cash, fills.holdings
        if decision is not None:
            self._risk_state = update_after_fills(decision.state, fills=fills, prices_after=close_next,
                                                  cash=fills.cash, holdings=fills.holdings, config=self.risk,
                                                  validate=False)
        value_after = portfolio_value(self._cash, self._holdings, close_next)

        log_return = torch.log(value_after / value_before)
        bench_before = (close_now / self._bench_base).mean(dim=1)
        bench_after = (close_next / self._bench_base).mean(dim=1)
        bench_return = bench_after / bench_before - 1.0
        reward = log_return
        if cfg.reward_mode is RewardMode.EXCESS_LOG_RETURN:
            reward = reward - torch.log1p(bench_return)
        weights = self._holdings * close_next / value_after.unsqueeze(1)
        if cfg.concentration_penalty > 0:
            reward = reward - cfg.concentration_penalty * (weights * weights).sum(dim=1)
        reward = (reward * cfg.reward_scale).to(torch.float32)

        self.last_record = StepRecord(
            row=t_next.clone(),
            value_before=value_before,
            value_after=value_after,
            benchmark_return=bench_return,
            weights_after=weights,
            fills=fills,
            actions=executed,
            risk=decision,
        )
        self._t = t_next
        self._steps = self._steps + 1
        truncated = self._steps >= cfg.episode_bars
        terminated = torch.zeros_like(truncated)
        obs = self._observe()
        final_obs = obs
        if self._fixed_starts is None and bool(truncated.any()):
            final_obs = obs.clone()
            self._start_episodes(truncated)
            obs = self._observe()
        return StepResult(obs=obs, reward=reward, terminated=terminated, truncated=truncated, final_obs=final_obs)

    # --- introspection for backtests and tests ----------------------------------------------

    @property
    def rows(self) -> torch.Tensor:
        """Current decision row of every episode ``[N]``."""
        return self._t.clone()

    def book(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return copies of ``(cash [N], holdings [N, A])``."""
        return self._cash.clone(), self._holdings.clone()

    @property
    def risk_state(self) -> RiskState:
        """The risk layers' memory of every episode (rows reset when an episode starts)."""
        return self._risk_state

    def close_prices(self) -> torch.Tensor:
        """Close prices at the current decision rows ``[N, A]``."""
        return self._close[self._t]
