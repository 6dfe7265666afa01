"""One fair score: validation and the arena score the same weekly windows, from the benchmark's own book.

A buy-and-hold replica has no edge and must score about zero in both; an oracle of the planted
trend must score clearly positive in both. Before windows started from the benchmark's book, a
window started in cash and a replica paid the entry cost the frictionless index never pays:
on short windows that alone scored it far below zero (the contrast test below).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from cappuccino_core.agents.fit import ValidationSet, evaluate_policy
from cappuccino_core.arena.config import ArenaConfig
from cappuccino_core.arena.market import trading_env
from cappuccino_core.arena.store import ArenaStore
from cappuccino_core.arena.tournament import Arena
from cappuccino_core.clock import FixedClock
from cappuccino_core.data.intervals import Interval
from cappuccino_core.db import create_schema, make_engine, session_factory
from cappuccino_core.accounting import ExecutionCosts
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.env.normalization import FeatureNormalizer
from cappuccino_core.evaluation.baselines import EqualWeightBuyAndHold
from cappuccino_core.evaluation.scoring import excess_sharpe, window_bars
from cappuccino_core.search.protocol import ProtocolConfig
from cappuccino_core.risk.config import RiskConfig
from tests.arena.arena_scenarios import SYMBOLS, T0, DoNothing, Oracle, PolicyBook, make_market

WEEK = 168
MARKET_ENV = EnvConfig(lookback=8)  # the product's conditions: benchmark-book start, default risk layers
# The geometry under test, without the risk layers: a passive book under a 10 % stop-loss is sold
# out of falling assets and never buys back, a cost of the layers that every policy bears (and
# that baselines, which trade without them, do not), so the replica is tested with them off.
NO_LAYERS = EnvConfig(lookback=8, risk=RiskConfig.off())
COSTS = ExecutionCosts(MARKET_ENV.fee_rate, MARKET_ENV.slippage_bps, MARKET_ENV.min_order_notional)


@pytest.fixture(scope="module")
def market():
    return make_market(seed=11, plant_strength=1.0, bars=12 * WEEK)


def _players(market) -> dict[str, object]:
    return {"replica": EqualWeightBuyAndHold(COSTS), "do-nothing": DoNothing(), "oracle": Oracle(market)}


def _validation_score(policy, market, env: EnvConfig = MARKET_ENV, hours: float | None = None) -> float | None:
    horizon = ProtocolConfig().window_bars(Interval.H1) if hours is None else window_bars(Interval.H1, hours)
    identity = FeatureNormalizer.identity(len(SYMBOLS), market.panel.features.shape[2])
    score, _ = evaluate_policy(policy, ValidationSet(market.panel, horizon=horizon), identity, env)
    return score


def _arena_match(tmp_path, market, king: str, challenger: str, env: EnvConfig = MARKET_ENV):
    engine = make_engine(f"sqlite:///{tmp_path / 'arena.db'}")
    create_schema(engine)
    arena = Arena(ArenaStore(session_factory(engine)), "fair", ArenaConfig(), clock=FixedClock(T0 + timedelta(days=1)))
    for i, candidate in enumerate((king, challenger)):
        arena.register(candidate, registered_at=T0 + timedelta(minutes=i))
    book = PolicyBook(_players(market))
    (result,) = arena.play_pending(lambda c: book.load(c), market.panel, env, max_matches=1)
    return result


def test_validation_and_the_arena_cut_windows_of_the_same_hours_at_every_interval() -> None:
    protocol, arena = ProtocolConfig(), ArenaConfig()
    assert protocol.window_hours == arena.window_hours >= WEEK
    for interval in (Interval.M15, Interval.H1, Interval.H4, Interval.D1):
        assert protocol.window_bars(interval) == window_bars(interval, arena.window_hours)


@pytest.mark.parametrize("replica", ["replica", "do-nothing"])
def test_a_buy_and_hold_replica_scores_about_zero_in_validation(market, replica) -> None:
    score = _validation_score(_players(market)[replica], market, env=NO_LAYERS)
    assert score is not None and abs(score) <= 0.5, score


@pytest.mark.parametrize("env", [NO_LAYERS, MARKET_ENV], ids=["no risk layers", "default risk layers"])
def test_an_oracle_of_the_planted_trend_scores_clearly_positive_in_validation(market, env) -> None:
    score = _validation_score(Oracle(market), market, env=env)
    assert score is not None and score > 3.0, score


def test_in_the_arena_the_replica_scores_about_zero_and_the_oracle_clearly_positive(tmp_path, market) -> None:
    result = _arena_match(tmp_path, market, "replica", "oracle", env=NO_LAYERS)
    assert result.window_bars == ProtocolConfig().window_bars(Interval.H1) == WEEK
    assert result.king_score is not None and abs(result.king_score) <= 0.5, result.king_score
    assert result.challenger_score is not None and result.challenger_score > 3.0, result.challenger_score
    assert result.winner_id == "oracle"


def test_the_arena_scores_a_policy_exactly_as_validation_does_on_the_same_windows(tmp_path, market) -> None:
    result = _arena_match(tmp_path, market, "do-nothing", "oracle")
    identity = FeatureNormalizer.identity(len(SYMBOLS), market.panel.features.shape[2])
    _, reports = evaluate_policy(Oracle(market), ValidationSet(market.panel, horizon=WEEK), identity, MARKET_ENV)
    starts = set(result.window_starts)
    same_windows = [r for r in reports if int(r.timestamps[0]) in starts]
    assert len(same_windows) == len(result.window_starts) >= 4
    assert result.challenger_score == pytest.approx(excess_sharpe(same_windows, Interval.H1), rel=1e-9)


def test_validation_the_arena_and_the_traders_share_one_risk_config() -> None:
    trained = EnvConfig(lookback=8, action_dampening=0.8)  # what a model card records
    assert EnvConfig().risk == RiskConfig()  # the traders (sandbox, production, live) apply RiskConfig()
    assert trading_env(EnvConfig(), trained).effective_risk == trained.effective_risk
    assert trading_env(EnvConfig(), trained).start_invested == trained.start_invested


def test_started_in_cash_on_short_windows_a_replica_scored_far_below_zero(market) -> None:
    """The geometry this replaces: an 8-bar window from cash against a frictionless index."""
    in_cash = EnvConfig(lookback=8, start_invested=False, risk=RiskConfig.off())
    score = _validation_score(EqualWeightBuyAndHold(COSTS), market, env=in_cash, hours=8)
    assert score is not None and score < -5.0, score
