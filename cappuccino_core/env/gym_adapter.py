"""A Gymnasium single-episode adapter over ``PortfolioEnv``, for users of other RL libraries.

Requires the optional ``gymnasium`` extra (``pip install cappuccino[gym]``). It runs the very
same batched environment with ``N = 1``, so costs, timing and reward are identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.env.portfolio_env import PortfolioEnv
from cappuccino_core.features.panel import MarketPanel

try:
    import gymnasium as gym
    from gymnasium import spaces
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the Gymnasium adapter needs the 'gym' extra: pip install 'cappuccino[gym]'") from exc


class PortfolioGymEnv(gym.Env):
    """One episode at a time; ``reset(seed=...)`` draws a random start, ``truncated`` ends it."""

    metadata = {"render_modes": []}

    def __init__(self, panel: MarketPanel, config: EnvConfig, normalizer: FeatureNormalizer, *, seed: int = 0) -> None:
        super().__init__()
        self._config = EnvConfig.from_dict({**config.to_dict(), "num_envs": 1})
        self._env = PortfolioEnv(panel, self._config, normalizer, seed=seed)
        bound = max(self._config.obs_clip, 1.0)
        self.observation_space = spaces.Box(-bound, bound, shape=(self._env.obs_dim,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self._env.action_dim,), dtype=np.float32)
        self._done = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start a new episode at a random valid bar."""
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(0, 2**31 - 1))
        obs = self._env.reset(seed=seed)
        self._done = False
        return obs[0].numpy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Apply one action; the episode is truncated after ``episode_bars`` steps."""
        if self._done:
            raise RuntimeError("the episode is over: call reset()")
        result = self._env.step(torch.as_tensor(np.asarray(action, dtype=np.float32)).reshape(1, -1))
        truncated = bool(result.truncated[0])
        obs = result.final_obs[0] if truncated else result.obs[0]
        self._done = truncated
        record = self._env.last_record
        info = {"portfolio_value": float(record.value_after[0]), "fees": float(record.fills.fees[0])}
        return obs.numpy(), float(result.reward[0]), False, truncated, info
