"""Evaluate models on holdout windows once, in batches, with an in-memory and a database cache.

A model's result on a window does not change, so each (model, window) is evaluated once per
evaluation context and kept: in memory for the run (dropped when the model leaves the arena)
and in ``arena_window_result`` (so a resumed run or another worker never recomputes it).

The unit of work is **a model on every window of a scope** (all match windows, or all
confirmation windows), never on a subset. A challenger that wins will need the other windows
anyway; the batch a model is evaluated in is then the same whatever the arena's history, so
results are bit-identical after a crash and resume (a float32 network's last bits depend on the
batch shape); and the cost of a tournament is ``candidates x match windows`` evaluations,
independent of the number of matches. Several models sharing a feature normaliser trade in one
``backtest_windows`` batch (a stacked policy hands each its own rows), so the environment is
stepped once per bar for all of them.

Each player trades in its trained environment with the market's conditions
(``market.trading_env``); models are batched by (feature normaliser, trading config). A player
that cannot trade the market (``market.CannotTrade``) is remembered as such for this context and
gets no results (it forfeits its matches on this market).

The context hash names everything besides the model that decides a result: the panel's bars
(``data_hash``), symbols, interval and feature spec, and the market's config (fees, slippage,
risk layers, history lookback, ...; not ``num_envs``/``episode_bars``, which the backtester
overrides). What a model brings itself (its trained config) is fixed by its id.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

from cappuccino_core.arena.market import CannotTrade, Player, PlayerLoader, baseline_env, trading_env
from cappuccino_core.arena.match import WindowResult
from cappuccino_core.arena.store import ArenaStore
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.evaluation.backtest import Policy, PolicyContext, backtest_windows
from cappuccino_core.features.panel import MarketPanel

logger = logging.getLogger(__name__)

PolicyLoader = Callable[[str], tuple[Policy, FeatureNormalizer]]
"""A loader of scripted players: candidate id -> (policy, normaliser); they trade the market's config."""

BASELINE_PREFIX = "baseline/"

# In-memory cache of one context: model id -> window start (ns) -> result.
WindowMemory = dict[str, dict[int, WindowResult]]


def context_hash(panel: MarketPanel, env_config: EnvConfig) -> str:
    """Return the SHA-256 hex digest of everything besides the model that decides a window's result."""
    env = env_config.to_dict()
    for overridden in ("num_envs", "episode_bars"):  # backtest_windows sets these itself
        env.pop(overridden)
    payload = {
        "env": env,
        "data_hash": panel.data_hash,
        "symbols": list(panel.symbols),
        "interval": panel.interval.value,
        "feature_spec": panel.feature_spec.to_dict(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class EvaluationError(RuntimeError):
    """Loading or running a candidate's policy failed; the message names the candidate."""


class WindowEvaluator:
    """Evaluates models on windows of one holdout panel under one environment config."""

    def __init__(
        self,
        store: ArenaStore,
        panel: MarketPanel,
        env_config: EnvConfig,
        load_player: PlayerLoader,
        *,
        horizon: int,
        baselines: Sequence[Policy],
        memory: WindowMemory,
        torch_threads: int = 1,
    ) -> None:
        """Set up the evaluator.

        Args:
            store: where results are cached across runs.
            panel: the market's holdout panel.
            env_config: the market's config (conditions shared by every player, history lookback).
            load_player: loads a candidate by id (called only on a cache miss).
            horizon: steps per window.
            baselines: rule-based policies, evaluated under the id ``baseline/<name>``.
            memory: the in-memory cache for this context (kept by the caller across runs).
            torch_threads: intra-op torch threads while a batch runs (restored afterwards).
        """
        self.store = store
        self.panel = panel
        self.env_config = env_config
        self.load_player = load_player
        self.horizon = horizon
        self.context = context_hash(panel, env_config)
        identity = FeatureNormalizer.identity(panel.num_assets, panel.features.shape[2])
        self._baselines = {BASELINE_PREFIX + b.name: Player(b, identity, baseline_env(env_config)) for b in baselines}
        self._memory = memory
        self._torch_threads = torch_threads
        self._db_checked: set[str] = set()
        self._cannot: dict[str, str] = {}  # model id -> why it cannot trade this market
        self._index: dict[int, np.ndarray] = {}  # window start -> the index's returns (one array, shared)
        self.evaluations = 0  # window evaluations run by this evaluator (not served from a cache)

    @property
    def baseline_ids(self) -> tuple[str, ...]:
        """Ids of the baselines, in the order given."""
        return tuple(self._baselines)

    def cannot_trade(self, model_id: str) -> str | None:
        """Return why ``model_id`` cannot trade this market, or ``None`` (it can, or was not loaded yet)."""
        return self._cannot.get(model_id)

    def ready(self, model_id: str, rows: np.ndarray) -> bool:
        """Return whether ``model_id`` has results on ``rows`` or is known not to trade this market."""
        return model_id in self._cannot or self.has(model_id, rows)

    def has(self, model_id: str, rows: np.ndarray) -> bool:
        """Return whether ``model_id``'s results on every window starting at ``rows`` are in memory."""
        known = self._memory.get(model_id, {})
        return all(int(s) in known for s in self.panel.timestamps[rows])

    def results(self, model_id: str, rows: np.ndarray) -> list[WindowResult]:
        """Return ``model_id``'s results on the windows starting at ``rows`` (they must be evaluated)."""
        known = self._memory[model_id]
        return [known[int(s)] for s in self.panel.timestamps[rows]]

    def ensure(self, model_ids: Sequence[str], rows: np.ndarray) -> None:
        """Make sure every model has results on every window starting at ``rows``.

        Memory first, then the database, then one backtest batch per feature normaliser for
        the models still missing a window (each on all of ``rows``), saved in one transaction.
        A model that cannot trade the market is remembered (``cannot_trade``) and gets no results.

        Raises:
            EvaluationError: a policy could not be loaded or failed while trading.
        """
        wanted = list(dict.fromkeys(m for m in model_ids if not self.ready(m, rows)))
        unchecked = [m for m in wanted if m not in self._db_checked]
        for model_id, found in self.store.load_window_results(unchecked, self.context, self.horizon).items():
            self._remember(found)
            self._db_checked.add(model_id)
        missing = [m for m in wanted if not self.has(m, rows)]
        if not missing:
            return
        fresh: list[WindowResult] = []
        for normalizer, env, group in self._load_groups(missing):
            fresh.extend(self._run(normalizer, env, group, rows))
        self.store.save_window_results(fresh, self.context, self.horizon)
        self._remember(fresh)
        self.evaluations += len(fresh)

    def _remember(self, results: Sequence[WindowResult]) -> None:
        for r in results:
            self._memory.setdefault(r.model_id, {})[r.start_ns] = _share_index(r, self._index)

    def _load_groups(self, model_ids: Sequence[str]) -> list[tuple[FeatureNormalizer, EnvConfig, list[tuple[str, Policy]]]]:
        """Load each player and group them by (feature normaliser, trading config): one batch per group."""
        groups: dict[tuple[str, str], tuple[FeatureNormalizer, EnvConfig, list[tuple[str, Policy]]]] = {}
        for model_id in model_ids:
            if model_id in self._baselines:
                player, env = self._baselines[model_id], self._baselines[model_id].env_config
            else:
                try:
                    player = self.load_player(model_id)
                except CannotTrade as exc:
                    self._cannot[model_id] = str(exc)
                    logger.info("%s cannot trade this market: %s", model_id, exc)
                    continue
                except Exception as exc:
                    raise EvaluationError(f"loading candidate {model_id!r} failed: {exc}") from exc
                env = trading_env(self.env_config, player.env_config)
            assert env is not None
            if env.lookback > self.env_config.lookback:
                raise EvaluationError(
                    f"candidate {model_id!r} observes {env.lookback} bars, but the market keeps only "
                    f"{self.env_config.lookback} bars of history before its windows"
                )
            key = (_fingerprint(player.normalizer), json.dumps(env.to_dict(), sort_keys=True))
            groups.setdefault(key, (player.normalizer, env, []))[2].append((model_id, player.policy))
        return list(groups.values())

    def _run(
        self, normalizer: FeatureNormalizer, env: EnvConfig, group: list[tuple[str, Policy]], rows: np.ndarray
    ) -> list[WindowResult]:
        """Trade every model of ``group`` on every window in ``rows`` in one backtest batch."""
        stacked = _StackedPolicy([policy for _, policy in group], rows.size)
        starts = np.tile(rows, len(group))
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(self._torch_threads)
        try:
            reports = backtest_windows(stacked, self.panel, normalizer, env, starts, self.horizon)
        except Exception as exc:
            names = ", ".join(repr(m) for m, _ in group)
            raise EvaluationError(f"evaluating candidates {names} failed: {exc}") from exc
        finally:
            torch.set_num_threads(previous_threads)
        results = []
        for i, report in enumerate(reports):
            model_id = group[i // rows.size][0]
            start_ns = int(self.panel.timestamps[report.start_row])
            results.append(WindowResult(model_id, start_ns, report.returns, report.benchmark_returns, report.metrics.alpha))
        logger.debug("evaluated %d model(s) on %d windows", len(group), rows.size)
        return results


def _share_index(result: WindowResult, index: dict[int, np.ndarray]) -> WindowResult:
    """Return ``result`` holding the one array kept for its window's index returns (equal for every player)."""
    known = index.setdefault(result.start_ns, result.benchmark_returns)
    if known is result.benchmark_returns or not np.array_equal(known, result.benchmark_returns):
        return result  # the first of its window, or (never expected) an index that differs: kept as it is
    return WindowResult(result.model_id, result.start_ns, result.returns, known, result.alpha)


class _StackedPolicy:
    """Several policies as one: policy ``i`` acts for batch rows ``[i * size, (i + 1) * size)``."""

    name = "arena-stack"

    def __init__(self, policies: Sequence[Policy], size: int) -> None:
        self.policies = list(policies)
        self.size = size

    def act(self, obs: torch.Tensor, context: PolicyContext) -> torch.Tensor:
        """Return each policy's actions for its own rows, concatenated in order."""
        actions = []
        for i, policy in enumerate(self.policies):
            rows = slice(i * self.size, (i + 1) * self.size)
            own = PolicyContext(
                context.panel, context.rows[rows], context.steps, context.cash[rows],
                context.holdings[rows], context.close[rows],
            )
            actions.append(policy.act(obs[rows], own))
        return torch.cat(actions)


def _fingerprint(normalizer: FeatureNormalizer) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(normalizer.mean, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(normalizer.std, dtype="<f8").tobytes())
    return digest.hexdigest()
