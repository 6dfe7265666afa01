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

The context hash names everything besides the model that decides a result: the panel's bars
(``data_hash``), symbols, interval and feature spec, and the environment config (fees, slippage,
lookback, ...; not ``num_envs``/``episode_bars``, which the backtester overrides).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

from cappuccino_core.arena.match import WindowResult
from cappuccino_core.arena.store import ArenaStore
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.evaluation import metrics
from cappuccino_core.evaluation.backtest import Policy, PolicyContext, backtest_windows
from cappuccino_core.features.panel import MarketPanel

logger = logging.getLogger(__name__)

PolicyLoader = Callable[[str], tuple[Policy, FeatureNormalizer]]
"""Loads a candidate's policy and the feature normaliser it was trained with, by candidate id."""

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
        load_policy: PolicyLoader,
        *,
        horizon: int,
        baselines: Sequence[Policy],
        memory: WindowMemory,
        torch_threads: int = 1,
    ) -> None:
        """Set up the evaluator.

        Args:
            store: where results are cached across runs.
            panel: the arena holdout panel.
            env_config: fees, slippage and execution rule shared by every player.
            load_policy: loads a candidate by id (called only on a cache miss).
            horizon: steps per window.
            baselines: rule-based policies, evaluated under the id ``baseline/<name>``.
            memory: the in-memory cache for this context (kept by the caller across runs).
            torch_threads: intra-op torch threads while a batch runs (restored afterwards).
        """
        self.store = store
        self.panel = panel
        self.env_config = env_config
        self.load_policy = load_policy
        self.horizon = horizon
        self.context = context_hash(panel, env_config)
        self._baselines = {BASELINE_PREFIX + b.name: b for b in baselines}
        self._identity = FeatureNormalizer.identity(panel.num_assets, panel.features.shape[2])
        self._memory = memory
        self._torch_threads = torch_threads
        self._db_checked: set[str] = set()
        self.evaluations = 0  # window evaluations run by this evaluator (not served from a cache)

    @property
    def baseline_ids(self) -> tuple[str, ...]:
        """Ids of the baselines, in the order given."""
        return tuple(self._baselines)

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

        Raises:
            EvaluationError: a policy could not be loaded or failed while trading.
        """
        wanted = list(dict.fromkeys(m for m in model_ids if not self.has(m, rows)))
        unchecked = [m for m in wanted if m not in self._db_checked]
        for model_id, found in self.store.load_window_results(unchecked, self.context, self.horizon).items():
            self._remember(found)
            self._db_checked.add(model_id)
        missing = [m for m in wanted if not self.has(m, rows)]
        if not missing:
            return
        fresh: list[WindowResult] = []
        for normalizer, group in self._load_groups(missing):
            fresh.extend(self._run(normalizer, group, rows))
        self.store.save_window_results(fresh, self.context, self.horizon)
        self._remember(fresh)
        self.evaluations += len(fresh)

    def forget(self, model_ids: Sequence[str]) -> None:
        """Drop models that left the arena from memory (their rows stay in the database)."""
        for model_id in model_ids:
            self._memory.pop(model_id, None)
            self._db_checked.discard(model_id)

    def _remember(self, results: Sequence[WindowResult]) -> None:
        for r in results:
            self._memory.setdefault(r.model_id, {})[r.start_ns] = r

    def _load_groups(self, model_ids: Sequence[str]) -> list[tuple[FeatureNormalizer, list[tuple[str, Policy]]]]:
        """Load each policy and group them by feature normaliser (one batch per group)."""
        groups: dict[str, tuple[FeatureNormalizer, list[tuple[str, Policy]]]] = {}
        for model_id in model_ids:
            if model_id in self._baselines:
                policy, normalizer = self._baselines[model_id], self._identity
            else:
                try:
                    policy, normalizer = self.load_policy(model_id)
                except Exception as exc:
                    raise EvaluationError(f"loading candidate {model_id!r} failed: {exc}") from exc
            key = _fingerprint(normalizer)
            groups.setdefault(key, (normalizer, []))[1].append((model_id, policy))
        return list(groups.values())

    def _run(
        self, normalizer: FeatureNormalizer, group: list[tuple[str, Policy]], rows: np.ndarray
    ) -> list[WindowResult]:
        """Trade every model of ``group`` on every window in ``rows`` in one backtest batch."""
        stacked = _StackedPolicy([policy for _, policy in group], rows.size)
        starts = np.tile(rows, len(group))
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(self._torch_threads)
        try:
            reports = backtest_windows(stacked, self.panel, normalizer, self.env_config, starts, self.horizon)
        except Exception as exc:
            names = ", ".join(repr(m) for m, _ in group)
            raise EvaluationError(f"evaluating candidates {names} failed: {exc}") from exc
        finally:
            torch.set_num_threads(previous_threads)
        results = []
        for i, report in enumerate(reports):
            model_id = group[i // rows.size][0]
            excess = metrics.excess_returns(report.returns, report.benchmark_returns)
            start_ns = int(self.panel.timestamps[report.start_row])
            results.append(WindowResult(model_id, start_ns, excess, report.metrics.alpha))
        logger.debug("evaluated %d model(s) on %d windows", len(group), rows.size)
        return results


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
