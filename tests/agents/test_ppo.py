"""PPO: config checks, the network, rollout bootstrap, update, and that train() learns."""

from __future__ import annotations

import math

import pytest
import torch

from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.agents.networks import ActorCritic
from cappuccino_core.agents.ppo import (
    Batch,
    RolloutBuffer,
    collect_rollout,
    compute_gae,
    ppo_update,
    train,
)
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.env.portfolio_env import PortfolioEnv
from cappuccino_core.env.protocol import ObservationLayout, StepResult


class TargetTrackingEnv:
    """Batched toy task: the best action is ``tanh(1.5 * obs[:, :A])``, a function of the obs.

    Observations are fresh N(0, 1) draws every step; reward ``-mean((clip(a) - target)^2)``;
    episodes last ``episode_length`` steps and end by truncation (time limit). The
    observation is laid out as ``1 + A + A * features`` values to satisfy the layout.
    """

    def __init__(self, num_envs: int, action_dim: int = 2, features: int = 1,
                 episode_length: int = 8, reward_fn=None) -> None:
        self.num_envs = num_envs
        self.action_dim = action_dim
        self.layout = ObservationLayout(num_assets=action_dim, lookback=1, num_features=features)
        self.obs_dim = self.layout.obs_dim
        self.episode_length = episode_length
        self.reward_fn = reward_fn
        self._gen = torch.Generator()
        self._t = torch.zeros(num_envs, dtype=torch.long)
        self._obs = torch.zeros(num_envs, self.obs_dim)

    def _draw(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.obs_dim, generator=self._gen)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        if seed is not None:
            self._gen.manual_seed(seed)
        self._t.zero_()
        self._obs = self._draw(self.num_envs)
        return self._obs.clone()

    def target(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(1.5 * obs[:, : self.action_dim])

    def step(self, actions: torch.Tensor) -> StepResult:
        clipped = actions.clamp(-1.0, 1.0)
        reward = -((clipped - self.target(self._obs)) ** 2).mean(-1)
        if self.reward_fn is not None:
            reward = self.reward_fn(reward)
        self._t += 1
        truncated = self._t >= self.episode_length
        final_obs = self._draw(self.num_envs)  # the last obs of an episode is a fresh draw too
        self._t[truncated] = 0
        self._obs = self._draw(self.num_envs)
        return StepResult(self._obs.clone(), reward, torch.zeros_like(truncated), truncated,
                          final_obs)


class CounterEnv:
    """One-dimensional env whose obs is the step count; reward 1; ends after ``length`` steps."""

    def __init__(self, num_envs: int, length: int, terminate: bool) -> None:
        self.num_envs, self.action_dim = num_envs, 1
        self.layout = ObservationLayout(num_assets=1, lookback=1, num_features=1)
        self.obs_dim = self.layout.obs_dim
        self.length, self.terminate = length, terminate
        self._t = torch.zeros(num_envs)

    def _obs(self, t: torch.Tensor) -> torch.Tensor:
        return t[:, None].repeat(1, self.obs_dim) / 10.0

    def reset(self, seed: int | None = None) -> torch.Tensor:
        self._t.zero_()
        return self._obs(self._t)

    def step(self, actions: torch.Tensor) -> StepResult:
        self._t += 1
        ended = self._t >= self.length
        final_obs = self._obs(self._t)
        self._t[ended] = 0
        zeros = torch.zeros_like(ended)
        terminated, truncated = (ended, zeros) if self.terminate else (zeros, ended)
        return StepResult(self._obs(self._t), torch.ones(self.num_envs), terminated, truncated,
                          final_obs)


def small_config(**overrides) -> PPOConfig:
    settings = dict(total_steps=16 * 8 * 4, num_envs=16, rollout_steps=8, minibatch_size=64,
                    update_epochs=2, eval_every_updates=2, hidden_sizes=(16, 16))
    settings.update(overrides)
    return PPOConfig(**settings)


def deterministic_score(env_seed: int = 123):
    """Return an evaluator: mean reward of the mean action over 4 steps of a fresh env."""
    def evaluate(agent: ActorCritic) -> float:
        env = TargetTrackingEnv(num_envs=256)
        obs = env.reset(seed=env_seed)
        total = 0.0
        for _ in range(4):
            result = env.step(agent.act_deterministic(obs))
            total += float(result.reward.mean())
            obs = result.obs
        return total / 4
    return evaluate


# --- PPOConfig -------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("gamma", 0.0), ("gamma", 1.5), ("learning_rate", 0.0), ("learning_rate", -1e-3),
    ("learning_rate", math.nan), ("gae_lambda", 1.1), ("clip_coef", 0.0), ("num_envs", 0),
    ("update_epochs", 0), ("max_grad_norm", -1.0), ("target_kl", 0.0), ("ent_coef", -0.1),
    ("hidden_sizes", ()), ("hidden_sizes", (64, 0)), ("torch_threads", 0),
    ("eval_every_updates", 0), ("rollout_steps", 2.5), ("encoder_sizes", ()), ("encoder_sizes", (16, 0)),
])
def test_config_rejects_a_bad_hyperparameter_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        PPOConfig(**{field: value})


def test_config_rejects_a_minibatch_larger_than_the_batch():
    with pytest.raises(ValueError, match="minibatch_size"):
        PPOConfig(num_envs=8, rollout_steps=8, minibatch_size=128, total_steps=1024)


def test_config_rejects_a_minibatch_that_does_not_divide_the_batch():
    with pytest.raises(ValueError, match="minibatch_size"):
        PPOConfig(num_envs=8, rollout_steps=8, minibatch_size=48, total_steps=1024)


def test_config_rejects_a_budget_smaller_than_one_batch():
    with pytest.raises(ValueError, match="total_steps"):
        PPOConfig(num_envs=8, rollout_steps=8, minibatch_size=32, total_steps=63)


def test_config_rejects_an_unknown_activation():
    with pytest.raises(ValueError, match="swish"):
        PPOConfig(activation="swish")


def test_config_rejects_an_unknown_architecture():
    with pytest.raises(ValueError, match="transformer"):
        PPOConfig(architecture="transformer")


def test_config_round_trips_through_a_dict():
    config = PPOConfig(hidden_sizes=(32, 16), activation="relu", target_kl=0.02,
                       architecture="asset_encoder", encoder_sizes=(8, 4))
    assert PPOConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="bogus"):
        PPOConfig.from_dict({**config.to_dict(), "bogus": 1})


def test_default_config_is_consistent():
    config = PPOConfig()
    assert config.num_updates >= 1 and config.batch_size % config.minibatch_size == 0


# --- ActorCritic -----------------------------------------------------------------------------

def test_actor_starts_near_zero_mean_with_the_configured_std():
    agent = ActorCritic(10, 3, (32, 32), init_log_std=-0.5,
                        generator=torch.Generator().manual_seed(0))
    obs = torch.randn(64, 10)
    dist = agent.distribution(obs)
    assert dist.loc.abs().max() < 0.1  # actor output layer gain 0.01
    torch.testing.assert_close(dist.scale, torch.full((64, 3), math.exp(-0.5)))
    assert agent.get_value(obs).shape == (64,)


def test_log_prob_is_the_normal_density_of_the_raw_sample():
    agent = ActorCritic(6, 2, (8,), generator=torch.Generator().manual_seed(1))
    obs = torch.randn(5, 6)
    action, log_prob, entropy, _ = agent.get_action_and_value(
        obs, generator=torch.Generator().manual_seed(2))
    dist = torch.distributions.Normal(agent.actor_mean(obs), agent.actor_logstd.exp())
    torch.testing.assert_close(log_prob, dist.log_prob(action).sum(-1))
    torch.testing.assert_close(entropy, dist.entropy().sum(-1))


def test_deterministic_action_is_the_mean_clipped_to_unit_range():
    agent = ActorCritic(4, 3, (8,))
    with torch.no_grad():
        agent.actor_mean[-1].bias.copy_(torch.tensor([5.0, -5.0, 0.0]))
    action = agent.act_deterministic(torch.zeros(2, 4))
    assert action[:, 0].eq(1.0).all() and action[:, 1].eq(-1.0).all()
    assert action[:, 2].abs().max() < 1.0


# --- collect_rollout -------------------------------------------------------------------------

def _rollout(env, agent, steps, gamma=0.9):
    buffer = RolloutBuffer.allocate(steps, env.num_envs, env.obs_dim, env.action_dim)
    end = collect_rollout(env, agent, env.reset(seed=0), buffer,
                          done=torch.zeros(env.num_envs), episode_return=torch.zeros(env.num_envs),
                          gamma=gamma, generator=torch.Generator().manual_seed(0))
    return buffer, end


def test_rollout_bootstraps_truncated_steps_from_the_final_observation():
    env = CounterEnv(num_envs=3, length=3, terminate=False)
    agent = ActorCritic(env.obs_dim, 1, (8,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        agent.critic[-1].bias.fill_(2.0)  # make V clearly non-zero
    buffer, end = _rollout(env, agent, steps=7)

    v_final = agent.get_value(env._obs(torch.full((3,), 3.0))).detach()
    torch.testing.assert_close(buffer.rewards[2], 1.0 + 0.9 * v_final)
    torch.testing.assert_close(buffer.rewards[5], 1.0 + 0.9 * v_final)
    torch.testing.assert_close(buffer.rewards[[0, 1, 3, 4, 6]], torch.ones(5, 3))
    # the step after a truncation starts a new episode, so GAE does not look across it
    assert buffer.dones[:, 0].tolist() == [0, 0, 0, 1, 0, 0, 1]
    assert end.next_done.eq(0).all()
    # episode returns count raw rewards, not the bootstrap
    assert end.finished_returns.tolist() == [3.0] * 6
    assert end.episode_return.tolist() == [1.0] * 3


def test_rollout_does_not_bootstrap_terminated_steps():
    env = CounterEnv(num_envs=2, length=3, terminate=True)
    agent = ActorCritic(env.obs_dim, 1, (8,))
    with torch.no_grad():
        agent.critic[-1].bias.fill_(2.0)
    buffer, end = _rollout(env, agent, steps=3)
    assert buffer.rewards.eq(1.0).all()
    assert end.next_done.eq(1).all()


def test_rollout_stores_the_raw_actions_whose_log_probs_it_records():
    env = TargetTrackingEnv(num_envs=32)
    agent = ActorCritic(env.obs_dim, env.action_dim, (8,), init_log_std=1.0)
    buffer, _ = _rollout(env, agent, steps=4)
    assert buffer.actions.abs().max() > 1.0  # unclipped samples are kept
    _, log_prob, _, value = agent.get_action_and_value(buffer.obs.flatten(0, 1),
                                                       buffer.actions.flatten(0, 1))
    torch.testing.assert_close(log_prob.detach(), buffer.logprobs.flatten())
    torch.testing.assert_close(value.detach(), buffer.values.flatten())


# --- ppo_update ------------------------------------------------------------------------------

def _one_batch(config: PPOConfig, env, agent) -> Batch:
    buffer, end = _rollout(env, agent, steps=config.rollout_steps, gamma=config.gamma)
    next_value = agent.get_value(end.next_obs).detach()
    advantages, returns = compute_gae(buffer.rewards, buffer.values, buffer.dones, next_value,
                                      end.next_done, config.gamma, config.gae_lambda)
    return Batch.from_rollout(buffer, advantages, returns)


def test_update_stops_its_epochs_early_when_kl_exceeds_the_target():
    config = small_config(update_epochs=10, target_kl=1e-9, learning_rate=1e-2)
    env = TargetTrackingEnv(config.num_envs)
    agent = ActorCritic(env.obs_dim, env.action_dim, config.hidden_sizes)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate)
    stats = ppo_update(agent, optimizer, _one_batch(config, env, agent), config)
    assert stats.early_stopped and stats.epochs_run == 1
    assert stats.approx_kl >= 0.0


def test_update_runs_every_epoch_without_a_kl_target():
    config = small_config(update_epochs=3, target_kl=None)
    env = TargetTrackingEnv(config.num_envs)
    agent = ActorCritic(env.obs_dim, env.action_dim, config.hidden_sizes)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate)
    before = [p.detach().clone() for p in agent.parameters()]
    stats = ppo_update(agent, optimizer, _one_batch(config, env, agent), config)
    assert not stats.early_stopped and stats.epochs_run == 3
    assert 0.0 <= stats.clipfrac <= 1.0 and stats.explained_variance is not None
    assert any(not torch.equal(b, p) for b, p in zip(before, agent.parameters()))


@pytest.mark.parametrize("bf16_update", [True, False])
def test_update_computes_its_products_in_bfloat16_only_when_asked_and_keeps_float32_weights(bf16_update):
    config = small_config(bf16_update=bf16_update)
    env = TargetTrackingEnv(config.num_envs)
    agent = ActorCritic(env.obs_dim, env.action_dim, config.hidden_sizes)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate)
    batch = _one_batch(config, env, agent)
    seen: set[torch.dtype] = set()
    agent.critic[-1].register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
    stats = ppo_update(agent, optimizer, batch, config)
    assert seen == ({torch.bfloat16} if bf16_update else {torch.float32})
    assert all(p.dtype == torch.float32 for p in agent.parameters())
    assert math.isfinite(stats.pg_loss) and math.isfinite(stats.v_loss)


def test_a_minibatch_holds_the_same_rows_of_every_batch_array():
    g = torch.Generator().manual_seed(0)
    batch = Batch(*(torch.randn(shape, generator=g) for shape in ((10, 4), (10, 2), 10, 10, 10, 10)))
    rows = torch.tensor([7, 0, 3])
    mb = batch.select(rows)
    for name in ("obs", "actions", "logprobs", "advantages", "returns", "values"):
        assert torch.equal(getattr(mb, name), getattr(batch, name)[rows]), name


# --- train -----------------------------------------------------------------------------------

def test_train_refuses_to_continue_through_a_nan_loss():
    config = small_config()
    env = TargetTrackingEnv(config.num_envs, reward_fn=lambda r: r * math.nan)
    with pytest.raises(FloatingPointError, match=r"PPO update 1, epoch 1, minibatch 1.*loss"):
        train(config, env, seed=0)


def test_train_with_the_same_seed_gives_identical_weights():
    config = small_config()
    first = train(config, TargetTrackingEnv(config.num_envs), seed=7)
    second = train(config, TargetTrackingEnv(config.num_envs), seed=7)
    other = train(config, TargetTrackingEnv(config.num_envs), seed=8)
    for name, tensor in first.agent.state_dict().items():
        assert torch.equal(tensor, second.agent.state_dict()[name]), name
    assert first.learning_curve == second.learning_curve
    assert any(not torch.equal(t, other.agent.state_dict()[n])
               for n, t in first.agent.state_dict().items())


def test_train_reports_scores_to_the_callback_at_every_evaluation_and_at_the_end():
    config = small_config(total_steps=16 * 8 * 5, eval_every_updates=2)
    calls: list[tuple[int, float]] = []
    result = train(config, TargetTrackingEnv(config.num_envs), seed=0,
                   evaluate=deterministic_score(), callback=lambda s, v: calls.append((s, v)))
    assert [step for step, _ in calls] == [256, 512, 640]
    assert tuple(calls) == result.learning_curve
    assert result.final_score == calls[-1][1]
    assert result.best_score == max(v for _, v in calls)
    assert result.env_steps == 640 and len(result.update_stats) == 5
    assert result.steps_per_second > 0 and result.kl_early_stops == 0


def test_train_lets_an_exception_from_the_callback_propagate_unchanged():
    class Pruned(Exception):
        pass

    def prune(step: int, score: float) -> None:
        raise Pruned(f"pruned at {step}")

    config = small_config()
    with pytest.raises(Pruned, match="pruned at 256"):
        train(config, TargetTrackingEnv(config.num_envs), seed=0, callback=prune)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_train_refuses_a_nan_or_infinite_evaluation_score(bad):
    config = small_config()
    with pytest.raises(ValueError, match="invalid score"):
        train(config, TargetTrackingEnv(config.num_envs), seed=0, evaluate=lambda agent: bad)


def test_train_accepts_minus_infinity_as_the_worst_score():
    config = small_config()
    seen: list[float] = []
    result = train(config, TargetTrackingEnv(config.num_envs), seed=0,
                   evaluate=lambda agent: -math.inf, callback=lambda s, v: seen.append(v))
    assert seen == [-math.inf, -math.inf] and result.best_score == -math.inf


def test_train_refuses_an_env_with_a_different_number_of_episodes():
    with pytest.raises(ValueError, match="num_envs"):
        train(small_config(), TargetTrackingEnv(num_envs=4), seed=0)


def test_train_accounts_its_time_to_env_rollout_forward_and_update():
    config = small_config()
    result = train(config, TargetTrackingEnv(config.num_envs), seed=0)
    phases = result.phase_seconds
    assert phases.env > 0 and phases.rollout_forward > 0 and phases.update > 0
    assert phases.env + phases.rollout_forward + phases.update <= result.wall_seconds
    per = phases.per_steps(result.env_steps, per=100_000)
    assert per["update"] == pytest.approx(phases.update * 100_000 / result.env_steps)


def test_train_builds_the_architecture_the_config_names():
    config = small_config(architecture="asset_encoder", encoder_sizes=(4,))
    result = train(config, TargetTrackingEnv(config.num_envs, features=3), seed=0)
    assert result.agent.describe()["kind"] == "asset_encoder"
    assert result.agent.describe()["encoder_sizes"] == [4]
    trunk = small_config(architecture="shared_trunk")
    assert train(trunk, TargetTrackingEnv(trunk.num_envs, features=3), seed=0).agent.describe() == {"kind": "shared_trunk"}


def test_train_restores_the_torch_thread_count():
    before = torch.get_num_threads()
    config = small_config(torch_threads=1 if before != 1 else 2)
    train(config, TargetTrackingEnv(config.num_envs), seed=0)
    assert torch.get_num_threads() == before


def test_train_learns_an_action_that_depends_on_the_observation():
    config = PPOConfig(total_steps=64 * 16 * 40, num_envs=64, rollout_steps=16,
                       minibatch_size=256, update_epochs=4, learning_rate=3e-3,
                       hidden_sizes=(32, 32), eval_every_updates=10, init_log_std=-0.5,
                       gamma=0.9)
    evaluate = deterministic_score()
    env = TargetTrackingEnv(config.num_envs)
    untrained = evaluate(ActorCritic(env.obs_dim, env.action_dim, config.hidden_sizes))
    result = train(config, env, seed=0, evaluate=evaluate)

    # A mean action of 0 scores -E[tanh(1.5 x)^2] ~ -0.57; tracking the target scores ~0.
    assert untrained < -0.4
    assert result.final_score > 0.1 * untrained  # squared error cut by more than 10x
    first_returns = result.train_returns[0][1]
    last_returns = result.train_returns[-1][1]
    assert last_returns > first_returns + 0.5 * abs(first_returns)


def test_train_runs_on_the_portfolio_env_and_replays_exactly(random_walk_panel):
    env_config = EnvConfig(lookback=5, episode_bars=20, num_envs=8)
    normalizer = FeatureNormalizer.fit(random_walk_panel.features[:300])
    config = small_config(num_envs=8, rollout_steps=32, total_steps=8 * 32 * 3)
    results = [train(config, PortfolioEnv(random_walk_panel, env_config, normalizer), seed=5)
               for _ in range(2)]
    first, second = results
    assert first.agent.obs_dim == 1 + 3 + 5 * 3 * 11
    assert len(first.train_returns) == 3  # 20-bar episodes end (truncate) inside each rollout
    assert all(math.isfinite(s.v_loss) for s in first.update_stats)
    assert first.train_returns == second.train_returns
    for name, tensor in first.agent.state_dict().items():
        assert torch.equal(tensor, second.agent.state_dict()[name]), name
