"""The king-of-the-hill rules, played by scripted players of known quality on the synthetic market."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from cappuccino_core.arena.config import ArenaConfig
from cappuccino_core.arena.edge_test import edge_test
from cappuccino_core.arena.match import (
    SEED_WINDOWS,
    MatchOutcome,
    WindowResult,
    WindowsDoNotFit,
    decide_outcome,
    derive_seed,
    draw_match_windows,
    fit_window_bars,
    holdout_windows,
    match_score,
)
from cappuccino_core.arena.state import EntrantStatus, ExitReason
from cappuccino_core.arena.store import ArenaStore, ArenaWindowResultRow
from cappuccino_core.arena.tournament import Arena
from cappuccino_core.clock import FixedClock
from cappuccino_core.data.intervals import Interval
from cappuccino_core.db import create_schema, make_engine, session_factory
from cappuccino_core.evaluation import metrics
from cappuccino_core.evaluation.baselines import EqualWeightBuyAndHold
from cappuccino_core.evaluation.scoring import excess_sharpe
from tests.arena.arena_scenarios import (
    COSTS,
    ENV,
    T0,
    HoldRandomMix,
    PolicyBook,
    RandomWeights,
    make_market,
    register_all,
    rules_players,
)

RULES = ArenaConfig(windows_per_match=4, window_bars=48, seed=1)  # promotion_streak=20 (the default)


@pytest.fixture(scope="module")
def planted_market():
    """A market with the plant on (plant_strength=1.0)."""
    return make_market(seed=11, plant_strength=1.0)


@pytest.fixture
def store(tmp_path) -> ArenaStore:
    engine = make_engine(f"sqlite:///{tmp_path / 'arena.db'}")
    create_schema(engine)
    return ArenaStore(session_factory(engine))


def _arena(store: ArenaStore, config: ArenaConfig = RULES, arena_id: str = "rules") -> Arena:
    return Arena(store, arena_id, config, clock=FixedClock(T0 + timedelta(days=1)))


def test_the_oracle_is_promoted_exactly_on_its_twentieth_consecutive_win(store, planted_market) -> None:
    players = rules_players(planted_market)
    arena = _arena(store)
    register_all(arena, list(players))
    book = PolicyBook(players)

    # Match 1: the first two entrants; match 2: the oracle challenges and wins (win 1); so its
    # 19th consecutive win is match 20 and its 20th is match 21.
    arena.play_pending(book.load, planted_market.panel, ENV, max_matches=20)
    before = arena.status()
    assert (before.king, before.streak) == ("oracle", 19)
    assert not before.promoted

    played = arena.play_pending(book.load, planted_market.panel, ENV, max_matches=1)
    assert played[0].match_number == 21
    assert (played[0].winner_id, played[0].streak_after, played[0].promoted_id) == ("oracle", 20, "oracle")
    assert played[0].edge_test is not None and played[0].edge_test.passed
    assert played[0].king_after is None
    after = arena.status()
    oracle = next(e for e in after.entrants if e.candidate_id == "oracle")
    assert (oracle.status, oracle.reason, oracle.decided_in_match) == (EntrantStatus.PROMOTED, ExitReason.PROMOTED, 21)
    # The next entrant becomes king with a streak of zero.
    assert (after.king, after.streak) == ("random-20", 0)

    oracle_matches = [r for r in arena.match_log() if "oracle" in (r.king_id, r.challenger_id)]
    assert [r.streak_after for r in oracle_matches] == list(range(1, 21))
    assert all(r.winner_id == "oracle" for r in oracle_matches)
    assert all(r.edge_test is None and r.promoted_id is None for r in oracle_matches[:-1])


def test_beaten_models_are_eliminated_and_challengers_enter_in_registration_order(store, planted_market) -> None:
    players = rules_players(planted_market)
    arena = _arena(store)
    register_all(arena, list(players))
    played = arena.play_pending(PolicyBook(players).load, planted_market.panel, ENV)

    status = arena.status()
    assert status.waiting == ()
    crowned = [e.candidate_id for e in status.entrants if e.crowned_after_match is not None]
    assert crowned == ["random-00", "random-20"]  # at the start and after the promotion
    challengers = [r.challenger_id for r in played]
    expected = [c for c in players if c not in crowned]
    assert challengers == expected
    for result in played:
        loser = next(e for e in status.entrants if e.candidate_id == result.loser_id)
        assert (loser.status, loser.reason, loser.decided_in_match) == (
            EntrantStatus.ELIMINATED, ExitReason.LOST, result.match_number
        )
    assert status.promoted == ("oracle",)
    assert len(status.eliminated) == len(players) - 2  # all but the promoted oracle and the king
    assert status.matches_played == len(played) == 23


def test_match_windows_come_from_the_seed_recorded_with_the_match(store, planted_market) -> None:
    players = rules_players(planted_market, randoms=4)
    arena = _arena(store)
    register_all(arena, list(players))
    played = arena.play_pending(PolicyBook(players).load, planted_market.panel, ENV)
    windows = holdout_windows(planted_market.panel, lookback=ENV.lookback, window_bars=48,
                              confirmation_fraction=RULES.confirmation_fraction, windows_per_match=4)
    confirmation = set(planted_market.panel.timestamps[windows.confirmation_rows].tolist())
    for result in played:
        assert result.seed == derive_seed(RULES.seed, result.match_number, SEED_WINDOWS)
        rows = draw_match_windows(windows.match_rows, 4, result.seed)
        assert result.window_starts == tuple(planted_market.panel.timestamps[rows].tolist())
        assert not confirmation & set(result.window_starts)  # matches never use the edge-test windows
    assert len({r.window_starts for r in played}) > 1


def test_a_tie_keeps_the_king_and_its_streak_and_eliminates_the_challenger(store, planted_market) -> None:
    players = {"weak": RandomWeights(seed=1, hold=1), "twin-a": HoldRandomMix(seed=4), "twin-b": HoldRandomMix(seed=4)}
    arena = _arena(store)
    register_all(arena, list(players))
    first, second = arena.play_pending(PolicyBook(players).load, planted_market.panel, ENV)

    assert (first.outcome, first.winner_id, first.streak_after) == (MatchOutcome.CHALLENGER_WINS, "twin-a", 1)
    assert second.outcome is MatchOutcome.TIE
    assert second.king_score == second.challenger_score
    assert (second.king_after, second.streak_after, second.loser_id) == ("twin-a", 1, "twin-b")
    status = arena.status()
    assert (status.king, status.streak) == ("twin-a", 1)
    twin_b = next(e for e in status.entrants if e.candidate_id == "twin-b")
    assert (twin_b.status, twin_b.reason) == (EntrantStatus.ELIMINATED, ExitReason.TIED)


def test_a_king_reaching_the_streak_without_an_edge_is_eliminated_and_the_next_entrant_crowned(store) -> None:
    market = make_market(seed=21, plant_strength=0.0)
    players = {"bh-clone": EqualWeightBuyAndHold(COSTS, name="bh_clone")}
    players |= {f"churn-{i}": RandomWeights(seed=40 + i, hold=1) for i in range(5)}
    arena = _arena(store, ArenaConfig(promotion_streak=3, windows_per_match=4, window_bars=48, seed=2))
    register_all(arena, list(players))
    played = arena.play_pending(PolicyBook(players).load, market.panel, ENV)

    third = played[2]
    assert (third.winner_id, third.streak_after, third.rejected_id, third.promoted_id) == ("bh-clone", 3, "bh-clone", None)
    assert third.edge_test is not None and not third.edge_test.passed
    assert any("not above zero" in reason for reason in third.edge_test.reasons)
    status = arena.status()
    clone = next(e for e in status.entrants if e.candidate_id == "bh-clone")
    assert (clone.status, clone.reason, clone.decided_in_match) == (EntrantStatus.ELIMINATED, ExitReason.NO_EDGE, 3)
    assert played[3].king_id == "churn-3" and played[3].king_streak_before == 0
    assert status.promoted == ()


def test_each_model_is_evaluated_once_per_window_and_a_rerun_evaluates_nothing(store, planted_market) -> None:
    players = rules_players(planted_market)
    arena = _arena(store)
    register_all(arena, list(players))
    book = PolicyBook(players)
    arena.play_pending(book.load, planted_market.panel, ENV)

    windows = holdout_windows(planted_market.panel, lookback=ENV.lookback, window_bars=48,
                              confirmation_fraction=RULES.confirmation_fraction, windows_per_match=4)
    # Every candidate once on the match windows; the oracle once more on the confirmation windows.
    assert sorted(book.loads) == sorted([*players, "oracle"])
    with store._sessions() as session:
        rows = session.scalar(select(func.count()).select_from(ArenaWindowResultRow))
    baselines = 4  # buy and hold, momentum, mean reversion, 60/40 (BTC and ETH are traded)
    assert rows == len(players) * windows.match_rows.size + (1 + baselines) * windows.confirmation_rows.size

    fresh = _arena(store)  # a restarted process: empty memory, everything from the database
    fresh.register("late-random", registered_at=T0 + timedelta(days=2))
    fresh_book = PolicyBook({**players, "late-random": RandomWeights(seed=999)})
    fresh.play_pending(fresh_book.load, planted_market.panel, ENV)
    assert fresh_book.loads == ["late-random"]


def test_registration_is_idempotent_and_keeps_the_order(store) -> None:
    arena = _arena(store)
    first = arena.register("a", registered_at=T0)
    arena.register("b", registered_at=T0)
    again = arena.register("a", registered_at=T0 + timedelta(hours=5))
    assert again == first and first.order == 1
    assert [(e.candidate_id, e.order) for e in arena.status().entrants] == [("a", 1), ("b", 2)]
    assert arena.status().entrants[0].registered_at == T0
    with pytest.raises(ValueError, match="reserved"):
        arena.register("baseline/momentum")


def test_an_arena_cannot_be_reopened_with_other_rules(store) -> None:
    _arena(store, RULES)
    _arena(store, ArenaConfig(**{**RULES.to_dict(), "prefetch_matches": 2}))  # a throughput knob only
    with pytest.raises(ValueError, match="other rules"):
        _arena(store, ArenaConfig(**{**RULES.to_dict(), "promotion_streak": 5}))


def test_the_holdout_is_cut_into_non_overlapping_windows_with_the_latest_kept_for_the_edge_test(planted_market) -> None:
    panel = planted_market.panel
    windows = holdout_windows(panel, lookback=8, window_bars=48, confirmation_fraction=0.3, windows_per_match=4)
    rows = np.concatenate([windows.match_rows, windows.confirmation_rows])
    assert np.all(np.diff(rows) >= 48)
    assert windows.confirmation_rows.size == round(rows.size * 0.3)
    assert windows.confirmation_rows.min() > windows.match_rows.max()
    with pytest.raises(ValueError, match="non-overlapping windows"):
        holdout_windows(panel, lookback=8, window_bars=48, confirmation_fraction=0.3, windows_per_match=rows.size)


def test_fitted_windows_are_the_longest_that_leave_a_match_its_windows(planted_market) -> None:
    panel = planted_market.panel
    rules = {"lookback": 8, "confirmation_fraction": 0.3, "windows_per_match": 20}
    bars = fit_window_bars(panel, **rules)
    windows = holdout_windows(panel, window_bars=bars, **rules)
    assert windows.match_rows.size >= 20 and windows.window_bars == bars
    with pytest.raises(WindowsDoNotFit):
        holdout_windows(panel, window_bars=bars + 1, **rules)
    with pytest.raises(WindowsDoNotFit, match="holds"):
        fit_window_bars(panel.rows(0, 40), **rules)


def test_the_match_score_is_the_one_excess_sharpe_of_concatenated_windows_in_time_order() -> None:
    a = WindowResult("m", 2, np.array([0.01, -0.02, 0.03]), np.array([0.0, 0.01, 0.01]), 0.0)
    b = WindowResult("m", 1, np.array([0.0, 0.005]), np.array([0.002, -0.001]), 0.0)
    expected = metrics.sharpe(np.array([-0.002, 0.006, 0.01, -0.03, 0.02]), Interval.H1)
    assert match_score([a, b], Interval.H1) == pytest.approx(expected)
    assert match_score([a, b], Interval.H1) == excess_sharpe([b, a], Interval.H1)
    replica = WindowResult("m", 1, np.full(5, 0.01), np.full(5, 0.01 + 1e-15), 0.0)  # the index itself, up to rounding
    assert match_score([replica], Interval.H1) == 0.0  # no excess at all: no edge, not an undefined score
    constant = WindowResult("m", 1, np.full(5, 0.01), np.full(5, 0.009), 0.0)  # zero tracking variance, excess > 0
    assert match_score([constant], Interval.H1) is None


def test_the_challenger_must_beat_the_king_and_an_undefined_score_ranks_last() -> None:
    assert decide_outcome(1.0, 1.5, 1e-9) is MatchOutcome.CHALLENGER_WINS
    assert decide_outcome(1.5, 1.0, 1e-9) is MatchOutcome.KING_WINS
    assert decide_outcome(1.0, 1.0 + 1e-12, 1e-9) is MatchOutcome.TIE
    assert decide_outcome(None, -3.0, 0.0) is MatchOutcome.CHALLENGER_WINS
    assert decide_outcome(-3.0, None, 0.0) is MatchOutcome.KING_WINS
    assert decide_outcome(None, None, 0.0) is MatchOutcome.TIE


def test_the_edge_test_needs_a_positive_lower_bound_and_a_win_over_every_baseline() -> None:
    rng = np.random.default_rng(0)
    config = ArenaConfig(n_bootstrap=500)
    index = [rng.normal(0.0, 0.01, 200) for _ in range(3)]

    def results(name: str, mean: float, alpha: float) -> list[WindowResult]:
        return [WindowResult(name, i, index[i] + rng.normal(mean, 0.01, 200), index[i], alpha) for i in range(3)]

    strong = results("k", 0.002, 0.4)
    noise = {"b": results("b", 0.0, 0.0)}
    passed = edge_test(strong, noise, interval=Interval.H1, config=config, seed=1)
    assert passed.passed and passed.ci_low > 0 and passed.reasons == ()

    better = {"b": results("b", 0.02, 0.0)}
    beaten = edge_test(strong, better, interval=Interval.H1, config=config, seed=1)
    assert not beaten.passed and "baseline b" in beaten.reasons[0]
    lenient = ArenaConfig(n_bootstrap=500, require_beat_baselines=False)
    assert edge_test(strong, better, interval=Interval.H1, config=lenient, seed=1).passed

    weak = results("k", 0.0, 0.0)
    assert not edge_test(weak, {}, interval=Interval.H1, config=config, seed=1).passed
