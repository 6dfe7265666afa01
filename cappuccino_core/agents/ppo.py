"""PPO for continuous actions over a batched environment, in the paper's order.

Read top to bottom: ``collect_rollout`` (run the policy, time-limit bootstrap), ``compute_gae``
(generalised advantage estimation, Schulman et al. 2016), ``ppo_update`` (minibatch epochs of
the clipped surrogate, Schulman et al. 2017, with value loss, entropy bonus, gradient clipping
and target-KL early stop), and ``train`` (the loop, LR annealing, evaluation and callbacks).
Variable names follow CleanRL's ppo_continuous_action.py.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch import nn

from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.agents.networks import PolicyNetwork, build_actor_critic
from cappuccino_core.env.protocol import VecEnv

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RolloutBuffer:
    """Preallocated ``[rollout_steps, num_envs, ...]`` storage, overwritten in place each update.

    ``dones[t]`` is 1 where ``obs[t]`` is the first observation of a new episode (the previous
    step ended one), CleanRL's convention. ``rewards`` already include the time-limit bootstrap.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    values: torch.Tensor

    @classmethod
    def allocate(
        cls, rollout_steps: int, num_envs: int, obs_dim: int, action_dim: int
    ) -> RolloutBuffer:
        """Allocate zeroed float32 tensors for one rollout."""
        shape = (rollout_steps, num_envs)
        return cls(
            obs=torch.zeros((*shape, obs_dim)),
            actions=torch.zeros((*shape, action_dim)),
            logprobs=torch.zeros(shape),
            rewards=torch.zeros(shape),
            dones=torch.zeros(shape),
            values=torch.zeros(shape),
        )


@dataclass(frozen=True)
class RolloutEnd:
    """Where a rollout stopped: what the next rollout starts from, and finished episodes.

    Attributes:
        next_obs: ``[N, obs_dim]`` observation after the last step.
        next_done: ``[N]`` float, 1 where ``next_obs`` starts a new episode.
        episode_return: ``[N]`` undiscounted reward so far in each running episode.
        finished_returns: ``[E]`` undiscounted returns of the episodes that ended (raw rewards).
    """

    next_obs: torch.Tensor
    next_done: torch.Tensor
    episode_return: torch.Tensor
    finished_returns: torch.Tensor


class PhaseClock:
    """Seconds spent in each phase of training, summed with ``perf_counter`` (cheap, always on).

    ``env``: ``env.step`` (stepping, accounting, observation assembly); ``rollout_forward``:
    the policy's forward passes while collecting a rollout (incl. the time-limit bootstrap);
    ``update``: the bootstrap value, GAE and ``ppo_update``.
    """

    __slots__ = ("env", "rollout_forward", "update")

    def __init__(self) -> None:
        self.env = 0.0
        self.rollout_forward = 0.0
        self.update = 0.0

    def freeze(self) -> PhaseSeconds:
        """Return the totals as an immutable value."""
        return PhaseSeconds(env=self.env, rollout_forward=self.rollout_forward, update=self.update)


@dataclass(frozen=True)
class PhaseSeconds:
    """Wall seconds of a run spent per phase (see ``PhaseClock``); evaluation is in none of them."""

    env: float
    rollout_forward: float
    update: float

    def per_steps(self, env_steps: int, per: int = 100_000) -> dict[str, float]:
        """Return the seconds of each phase per ``per`` env steps."""
        scale = per / env_steps
        return {"env": self.env * scale, "rollout_forward": self.rollout_forward * scale,
                "update": self.update * scale}


@torch.no_grad()  # not inference_mode: its tensors (next_obs) could not be used with autograd afterwards
def collect_rollout(
    env: VecEnv,
    agent: PolicyNetwork,
    obs: torch.Tensor,
    buffer: RolloutBuffer,
    *,
    done: torch.Tensor,
    episode_return: torch.Tensor,
    gamma: float,
    generator: torch.Generator | None = None,
    clock: PhaseClock | None = None,
) -> RolloutEnd:
    """Run the stochastic policy for ``rollout_steps`` batched steps, filling ``buffer``.

    Time-limit fix (Pardo et al. 2018): a truncated episode did not really end, so its last
    reward becomes ``r + gamma * V(final_obs)``; the step is then marked done like a
    termination, so GAE does not bootstrap through the auto-reset observation. ``clock``, if
    given, accumulates the seconds spent in the env and in the policy's forward passes.
    """
    clock = clock if clock is not None else PhaseClock()
    finished: list[torch.Tensor] = []
    for step in range(buffer.obs.shape[0]):
        buffer.obs[step] = obs
        buffer.dones[step] = done
        tick = time.perf_counter()
        action, logprob, _, value = agent.get_action_and_value(obs, generator=generator)
        tock = time.perf_counter()
        clock.rollout_forward += tock - tick
        buffer.actions[step] = action
        buffer.logprobs[step] = logprob
        buffer.values[step] = value

        result = env.step(action)  # raw Gaussian sample; the env clips to [-1, 1]
        tick = time.perf_counter()
        clock.env += tick - tock
        reward = result.reward.clone()
        truncated = result.truncated & ~result.terminated
        if truncated.any():
            reward[truncated] += gamma * agent.get_value(result.final_obs[truncated])
            clock.rollout_forward += time.perf_counter() - tick
        buffer.rewards[step] = reward

        episode_return = episode_return + result.reward
        ended = result.terminated | result.truncated
        if ended.any():
            finished.append(episode_return[ended])
            episode_return = episode_return.masked_fill(ended, 0.0)
        obs, done = result.obs, ended.float()
    finished_returns = torch.cat(finished) if finished else torch.zeros(0)
    return RolloutEnd(obs, done, episode_return, finished_returns)


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    next_done: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(advantages, returns)``, each ``[T, N]``, by GAE (Schulman et al. 2016, eq. 16).

    ``delta_t = r_t + gamma * V(s_{t+1}) * (1 - done_{t+1}) - V(s_t)`` and
    ``A_t = delta_t + gamma * lam * (1 - done_{t+1}) * A_{t+1}``, computed backwards in time
    and vectorised over envs; ``returns = advantages + values`` are the critic's targets.
    ``dones`` follow the buffer convention (``dones[t]``: ``obs[t]`` starts an episode);
    ``next_value``/``next_done`` describe the observation after the last step.
    """
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros_like(next_value)
    for t in reversed(range(num_steps)):
        if t == num_steps - 1:
            nextnonterminal = 1.0 - next_done
            nextvalues = next_value
        else:
            nextnonterminal = 1.0 - dones[t + 1]
            nextvalues = values[t + 1]
        delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
        advantages[t] = lastgaelam = delta + gamma * lam * nextnonterminal * lastgaelam
    returns = advantages + values
    return advantages, returns


@dataclass(frozen=True)
class Batch:
    """One update's samples flattened to ``[rollout_steps * num_envs, ...]`` (the ``b_`` arrays)."""

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor

    @classmethod
    def from_rollout(
        cls, buffer: RolloutBuffer, advantages: torch.Tensor, returns: torch.Tensor
    ) -> Batch:
        """Flatten time and env axes (views, no copies)."""
        return cls(
            obs=buffer.obs.flatten(0, 1),
            actions=buffer.actions.flatten(0, 1),
            logprobs=buffer.logprobs.flatten(),
            advantages=advantages.flatten(),
            returns=returns.flatten(),
            values=buffer.values.flatten(),
        )

    def select(self, indices: torch.Tensor) -> Batch:
        """Return the rows ``indices`` of every array (one minibatch, the ``mb_`` arrays).

        ``index_select`` rather than ``tensor[indices]``: the same rows, gathered several times faster.
        """
        return Batch(*(getattr(self, f.name).index_select(0, indices) for f in fields(self)))


@dataclass(frozen=True)
class UpdateStats:
    """Diagnostics of one ``ppo_update``; losses and KL are means over its minibatches.

    ``explained_variance`` is None when the returns have zero variance (undefined).
    """

    pg_loss: float
    v_loss: float
    entropy_loss: float
    approx_kl: float
    old_approx_kl: float
    clipfrac: float
    explained_variance: float | None
    grad_norm: float
    epochs_run: int
    early_stopped: bool


def ppo_update(
    agent: PolicyNetwork,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    config: PPOConfig,
    *,
    generator: torch.Generator | None = None,
    update: int = 1,
) -> UpdateStats:
    """Run ``update_epochs`` epochs of minibatch gradient steps on the PPO loss.

    ``L = L^CLIP + vf_coef * L^VF - ent_coef * H`` (Schulman et al. 2017, eq. 9, written as a
    loss to minimise). ``update`` only names the update in error messages.

    Raises:
        FloatingPointError: a loss or the gradient norm became non-finite.
    """
    b_size = batch.obs.shape[0]
    # Reorder the observations the way the network reads them once, not in every minibatch.
    obs = agent.prepare(batch.obs)
    if config.bf16_update:
        # Autocast would round the observations to bfloat16 in every minibatch's first layer:
        # round them once, and gather half the bytes per minibatch (the same values either way).
        obs = obs.bfloat16()
    batch = replace(batch, obs=obs)
    totals = torch.zeros(6)  # pg_loss, v_loss, entropy_loss, approx_kl, old_approx_kl, clipfrac
    grad_norms = []
    epochs_run, early_stopped = 0, False
    for epoch in range(config.update_epochs):
        b_inds = torch.randperm(b_size, generator=generator)
        for mb_index, start in enumerate(range(0, b_size, config.minibatch_size)):
            mb_inds = b_inds[start : start + config.minibatch_size]
            mb = batch.select(mb_inds)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16_update):
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(mb.obs, mb.actions, prepared=True)
            # The losses in float32: the ratio compares against the rollout's float32 log-probs.
            newlogprob, entropy, newvalue = newlogprob.float(), entropy.float(), newvalue.float()
            logratio = newlogprob - mb.logprobs
            ratio = logratio.exp()
            with torch.no_grad():
                # KL(old||new) estimators; (ratio - 1) - log ratio is unbiased and >= 0 (k3).
                old_approx_kl = (-logratio).mean()
                approx_kl = ((ratio - 1) - logratio).mean()
                clipfrac = ((ratio - 1.0).abs() > config.clip_coef).float().mean()

            mb_advantages = mb.advantages
            if config.norm_adv:
                mb_advantages = (mb_advantages - mb_advantages.mean()) / (
                    mb_advantages.std() + 1e-8
                )
            # Clipped surrogate: max of the negated objectives = -min(r A, clip(r) A).
            pg_loss1 = -mb_advantages * ratio
            pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - config.clip_coef,
                                                    1 + config.clip_coef)
            pg_loss = torch.max(pg_loss1, pg_loss2).mean()

            mb_returns = mb.returns
            v_loss_unclipped = (newvalue - mb_returns) ** 2
            if config.clip_vloss:
                mb_values = mb.values
                v_clipped = mb_values + torch.clamp(
                    newvalue - mb_values, -config.clip_coef, config.clip_coef
                )
                v_loss = 0.5 * torch.max(v_loss_unclipped, (v_clipped - mb_returns) ** 2).mean()
            else:
                v_loss = 0.5 * v_loss_unclipped.mean()

            entropy_loss = entropy.mean()
            loss = pg_loss - config.ent_coef * entropy_loss + config.vf_coef * v_loss
            where = f"PPO update {update}, epoch {epoch + 1}, minibatch {mb_index + 1}"
            _check_finite(where, pg_loss=pg_loss, v_loss=v_loss, entropy_loss=entropy_loss)

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
            _check_finite(where, grad_norm=grad_norm)
            optimizer.step()

            grad_norms.append(grad_norm)
            totals += torch.stack([pg_loss.detach(), v_loss.detach(), entropy_loss.detach(),
                                   approx_kl, old_approx_kl, clipfrac])
        epochs_run += 1
        # Early stop on the last minibatch's KL, as CleanRL does.
        if config.target_kl is not None and approx_kl.item() > config.target_kl:
            early_stopped = True
            break

    means = (totals / (epochs_run * config.num_minibatches)).tolist()
    return UpdateStats(
        pg_loss=means[0], v_loss=means[1], entropy_loss=means[2], approx_kl=means[3],
        old_approx_kl=means[4], clipfrac=means[5],
        explained_variance=explained_variance(batch.values, batch.returns),
        grad_norm=float(torch.stack(grad_norms).mean()),
        epochs_run=epochs_run, early_stopped=early_stopped,
    )


def explained_variance(y_pred: torch.Tensor, y_true: torch.Tensor) -> float | None:
    """Return ``1 - Var[y_true - y_pred] / Var[y_true]``, or None when ``Var[y_true]`` is 0."""
    var_y = float(y_true.var())
    if var_y == 0.0:
        return None
    return 1.0 - float((y_true - y_pred).var()) / var_y


def _check_finite(where: str, **values: torch.Tensor) -> None:
    """Raise FloatingPointError naming every non-finite value (never train on through NaN)."""
    bad = {name: float(v.detach()) for name, v in values.items() if not torch.isfinite(v).all()}
    if bad:
        detail = ", ".join(f"{name}={value}" for name, value in bad.items())
        raise FloatingPointError(f"{where}: non-finite {detail}")


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced and how it went.

    Attributes:
        agent: the trained actor-critic (its ``state_dict`` is the checkpoint).
        final_score: score at the last evaluation; None if never defined.
        best_score: best score over all evaluations; None if never defined.
        best_step: env step of ``best_score``; None with it.
        learning_curve: ``(env_step, score)`` at each evaluation where the score is defined.
        train_returns: ``(env_step, mean undiscounted return)`` of the training episodes that
            finished during each update (updates where none finished are left out).
        update_stats: one ``UpdateStats`` per update.
        env_steps: env steps collected (``num_updates * batch_size``).
        wall_seconds: wall time of the run (monotonic clock).
        steps_per_second: ``env_steps / wall_seconds``, evaluation time included.
        kl_early_stops: number of updates cut short by ``target_kl``.
        phase_seconds: wall seconds spent in env steps, rollout forward passes and updates.
    """

    agent: PolicyNetwork
    final_score: float | None
    best_score: float | None
    best_step: int | None
    learning_curve: tuple[tuple[int, float], ...]
    train_returns: tuple[tuple[int, float], ...]
    update_stats: tuple[UpdateStats, ...]
    env_steps: int
    wall_seconds: float
    steps_per_second: float
    kl_early_stops: int
    phase_seconds: PhaseSeconds


def train(
    config: PPOConfig,
    env: VecEnv,
    *,
    seed: int,
    evaluate: Callable[[PolicyNetwork], float] | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a fresh actor-critic (``config.architecture``) on ``env`` with PPO; deterministic on CPU for a ``seed``.

    Every ``eval_every_updates`` updates and after the last, the score is ``evaluate(agent)``
    (or, without ``evaluate``, the mean return of training episodes finished since the last
    evaluation, undefined if none did) and then ``callback(env_step, score)`` is called when
    the score is defined. Exceptions from either (e.g. ``optuna.TrialPruned``) propagate
    unchanged. Sets ``torch.set_num_threads(config.torch_threads)`` for the run and restores
    the previous value afterwards (the setting is process-wide).

    Raises:
        ValueError: ``seed`` is negative, the env's sizes disagree with the config, or
            ``evaluate`` returned NaN or +inf (-inf is accepted as "worst possible").
        FloatingPointError: a loss became non-finite (see ``ppo_update``).
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if env.num_envs != config.num_envs:
        raise ValueError(f"env has num_envs={env.num_envs} but config.num_envs={config.num_envs}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.torch_threads)
    try:
        return _train_loop(config, env, seed, evaluate, callback)
    finally:
        torch.set_num_threads(previous_threads)


def _train_loop(
    config: PPOConfig,
    env: VecEnv,
    seed: int,
    evaluate: Callable[[PolicyNetwork], float] | None,
    callback: Callable[[int, float], None] | None,
) -> TrainResult:
    started = time.perf_counter()
    # A private generator (not torch.manual_seed) so concurrent trials in one process replay
    # exactly; seeded from a stream independent of the env's seed.
    generator = torch.Generator().manual_seed(_agent_seed(seed))
    agent = build_actor_critic(config.architecture, env.layout, env.action_dim, config.hidden_sizes,
                               config.activation, config.init_log_std, encoder_sizes=config.encoder_sizes,
                               generator=generator)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, eps=1e-5)
    buffer = RolloutBuffer.allocate(config.rollout_steps, config.num_envs, env.obs_dim,
                                    env.action_dim)
    obs = env.reset(seed=seed)
    done = torch.zeros(config.num_envs)
    episode_return = torch.zeros(config.num_envs)
    curve: list[tuple[int, float]] = []
    train_returns: list[tuple[int, float]] = []
    all_stats: list[UpdateStats] = []
    window_returns: list[torch.Tensor] = []
    num_updates = config.num_updates
    clock = PhaseClock()

    for update in range(1, num_updates + 1):
        if config.anneal_lr:  # linear decay to 0 over the run
            frac = 1.0 - (update - 1.0) / num_updates
            optimizer.param_groups[0]["lr"] = frac * config.learning_rate

        rollout = collect_rollout(env, agent, obs, buffer, done=done,
                                  episode_return=episode_return, gamma=config.gamma,
                                  generator=generator, clock=clock)
        obs, done, episode_return = rollout.next_obs, rollout.next_done, rollout.episode_return
        tick = time.perf_counter()
        with torch.no_grad():
            next_value = agent.get_value(obs)
        advantages, returns = compute_gae(buffer.rewards, buffer.values, buffer.dones,
                                          next_value, done, config.gamma, config.gae_lambda)
        stats = ppo_update(agent, optimizer, Batch.from_rollout(buffer, advantages, returns),
                           config, generator=generator, update=update)
        clock.update += time.perf_counter() - tick
        all_stats.append(stats)

        global_step = update * config.batch_size
        if rollout.finished_returns.numel():
            train_returns.append((global_step, float(rollout.finished_returns.mean())))
            window_returns.append(rollout.finished_returns)
        if update % config.eval_every_updates == 0 or update == num_updates:
            score = _score(agent, evaluate, window_returns, global_step)
            window_returns = []
            if score is not None:
                curve.append((global_step, score))
                logger.info("step %d: score %.6g (kl %.4f, ev %s)", global_step, score,
                            stats.approx_kl, stats.explained_variance)
                if callback is not None:
                    callback(global_step, score)

    wall_seconds = time.perf_counter() - started
    env_steps = num_updates * config.batch_size
    best_step, best_score = max(curve, key=lambda point: point[1]) if curve else (None, None)
    return TrainResult(
        agent=agent,
        final_score=curve[-1][1] if curve and curve[-1][0] == env_steps else None,
        best_score=best_score,
        best_step=best_step,
        learning_curve=tuple(curve),
        train_returns=tuple(train_returns),
        update_stats=tuple(all_stats),
        env_steps=env_steps,
        wall_seconds=wall_seconds,
        steps_per_second=env_steps / wall_seconds,
        kl_early_stops=sum(s.early_stopped for s in all_stats),
        phase_seconds=clock.freeze(),
    )


def _score(
    agent: PolicyNetwork,
    evaluate: Callable[[PolicyNetwork], float] | None,
    window_returns: list[torch.Tensor],
    global_step: int,
) -> float | None:
    """Return the evaluation score, or the mean finished training return; None if undefined."""
    if evaluate is None:
        return float(torch.cat(window_returns).mean()) if window_returns else None
    score = float(evaluate(agent))
    # -inf is a legitimate "worst possible" (e.g. a flat policy's undefined Sharpe, so Optuna
    # still sees a number); NaN or +inf would silently corrupt best-score selection.
    if math.isnan(score) or score == math.inf:
        raise ValueError(f"evaluate returned an invalid score ({score}) at env step {global_step}")
    return score


def _agent_seed(seed: int) -> int:
    """Derive the agent's RNG seed from the run seed, independent of the env's stream."""
    return int(np.random.SeedSequence([seed, 0x5EED]).generate_state(1, np.uint64)[0] >> 1)
