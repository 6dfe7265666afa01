"""The batched portfolio environment: N episodes of spot, long-only trading stepped as tensors.

Timeline of one step for an episode at decision bar ``t`` (see ``EnvConfig``):

1. The observation was built from feature rows ``t - lookback + 1 .. t`` and the book
   valued at ``close[t]``: nothing after bar ``t`` is visible.
2. The action executes at ``open[t + 1]`` with slippage and fees (``accounting``).
3. The book is valued at ``close[t + 1]``; the reward is the fractional (log) return
   ``log(V[t+1] / V[t])``, optionally minus the log return of the equal-weight
   buy-and-hold index over the same bar, minus a concentration penalty, times a scale.

Every accumulator (cash, holdings, step counters, benchmark base) is per episode and is
reset when the episode starts. Episodes start at random rows inside one panel segment
(``MarketPanel.window_starts``), or at fixed rows for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cappuccino_core.env.accounting import ExecutionCosts, Fills, execute_actions, portfolio_value
from cappuccino_core.env.config import EnvConfig, RewardMode
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.env.protocol import ObservationLayout, StepResult
from cappuccino_core.features.panel import MarketPanel


@dataclass(frozen=True)
class StepRecord:
    """Book-keeping of the last step, for backtests and journals (all ``[N]`` or ``[N, A]``).

    ``row`` is the bar at which the step's return ends (``t + 1``).
    """

    row: torch.Tensor
    value_before: torch.Tensor
    value_after: torch.Tensor
    benchmark_return: torch.Tensor
    weights_after: torch.Tensor
    fills: Fills


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
        features = normalizer.transform(panel.features, clip=config.obs_clip)
        self._features = torch.from_numpy(features.reshape(panel.num_bars, num_assets * num_features))
        self._open = torch.from_numpy(np.ascontiguousarray(panel.open, dtype=np.float64))
        self._close = torch.from_numpy(np.ascontiguousarray(panel.close, dtype=np.float64))
        self._offsets = torch.arange(config.lookback - 1, -1, -1)
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
        self._cash[mask] = self.config.initial_cash
        self._holdings[mask] = 0.0
        self._bench_base[mask] = self._close[starts]

    # --- observation -------------------------------------------------------------------

    def _observe(self) -> torch.Tensor:
        rows = (self._t.unsqueeze(1) - self._offsets).reshape(-1)
        window = self._features.index_select(0, rows).reshape(self.num_envs, -1)
        close = self._close[self._t]
        value = portfolio_value(self._cash, self._holdings, close)
        cash_fraction = (self._cash / value).unsqueeze(1)
        holding_fractions = self._holdings * close / value.unsqueeze(1)
        portfolio = torch.cat([cash_fraction, holding_fractions], dim=1).to(torch.float32)
        return torch.cat([portfolio, window], dim=1)

    # --- step -----------------------------------------------------------------------------

    def step(self, actions: torch.Tensor) -> StepResult:
        """Execute ``actions`` at the next bar's open and advance every episode one bar."""
        if self._fixed_starts is not None and bool((self._steps >= self.config.episode_bars).any()):
            raise RuntimeError("evaluation episodes are over; call reset() to run them again")
        cfg = self.config
        t, t_next = self._t, self._t + 1
        close_now, close_next = self._close[t], self._close[t_next]
        value_before = portfolio_value(self._cash, self._holdings, close_now)

        scaled = actions.detach().to(torch.float64).clamp(-1.0, 1.0) * cfg.action_dampening
        fills = execute_actions(self._cash, self._holdings, scaled, self._open[t_next], self.costs)
        self._cash, self._holdings = fills.cash, fills.holdings
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

    def close_prices(self) -> torch.Tensor:
        """Close prices at the current decision rows ``[N, A]``."""
        return self._close[self._t]
