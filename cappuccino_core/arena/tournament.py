"""The king-of-the-hill tournament: entrants challenge the king one by one, in registration order.

Rules (state machine; every transition is one transaction in ``ArenaStore``):

* **Entrants** are registered candidates not yet eliminated or promoted, in registration order.
  New candidates may register at any time and join the queue of challengers.
* **Empty throne.** The earliest waiting entrant is crowned with a streak of 0, without a match.
  At the start this makes "the first two entrants meet" (the first defends, the second
  challenges), and after a promotion or a rejection "the next entrant becomes king with a
  streak of zero".
* **Match.** The next waiting entrant challenges the king on the match's windows (``match``),
  drawn from the market the source picks for the two (``market``; for registered candidates,
  ``study_market``: bars no search or validation of either model saw). The loser is eliminated.
  A challenger that wins becomes king with a streak of 1 (its first win); a king that wins adds
  1 to its streak; a tie keeps the king, eliminates the challenger and leaves the streak as it
  was (it is not a win).
* **Walkover.** A player that cannot trade the pair's market (``market.CannotTrade``) has no
  score and loses (both: a tie). A walkover is not a win: a king keeps its streak, a challenger
  that takes the throne this way starts at 0. The loser leaves with reason ``forfeit``.
* **Promotion.** When the winner's streak reaches ``promotion_streak`` it takes the edge test
  (``promotion``) in the same match: it is promoted to the sandbox if it passes, eliminated with
  reason ``no_edge`` if not. Either way it leaves the arena and the throne is empty.

Crash safety: a match is computed from a snapshot and recorded with a compare-and-set against
that snapshot, together with its state change, in one transaction. Nothing else changes the
state. A crash before the commit loses only work (cached evaluations are kept); after it, the
match is in the log and the resumed run plans the next one. Windows and seeds depend only on
the arena seed and the match number, so a resumed run plays exactly the matches an
uninterrupted run would have played (the market of a pair is a function of the pair).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cappuccino_core.arena.config import ArenaConfig
from cappuccino_core.arena.edge_test import EdgeTestResult, edge_test
from cappuccino_core.arena.evaluator import BASELINE_PREFIX, PolicyLoader, WindowEvaluator, WindowMemory, context_hash
from cappuccino_core.arena.market import ArenaMarket, FixedMarket, MarketSource, Player
from cappuccino_core.arena.match import (
    SEED_BOOTSTRAP,
    SEED_WINDOWS,
    HoldoutWindows,
    MatchOutcome,
    WindowsDoNotFit,
    decide_outcome,
    derive_seed,
    draw_match_windows,
    holdout_windows,
    match_id,
    match_score,
    mean_alpha,
)
from cappuccino_core.arena.results import MatchResult
from cappuccino_core.arena.state import ArenaStatus, EntrantState, ThroneState
from cappuccino_core.arena.store import ArenaStore, RecordOutcome
from cappuccino_core.clock import Clock
from cappuccino_core.accounting import ExecutionCosts
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.evaluation.baselines import default_baselines
from cappuccino_core.evaluation.scoring import window_bars
from cappuccino_core.features.panel import MarketPanel

logger = logging.getLogger(__name__)

HOLDOUT = "holdout"
"""Key of the one market of ``Arena.play_pending``."""


@dataclass(frozen=True, eq=False)
class _Table:
    """One market made ready for matches: its windows and its evaluator."""

    market: ArenaMarket
    windows: HoldoutWindows
    evaluator: WindowEvaluator


class Arena:
    """One king-of-the-hill arena, persisted in the project database.

    Several ``Arena`` objects (threads, processes, machines) may share one arena id: the store
    serialises their changes and a match computed from an outdated state is discarded, not
    recorded. Not thread-safe itself (one object per thread).
    """

    def __init__(self, store: ArenaStore, arena_id: str, config: ArenaConfig, *, clock: Clock) -> None:
        """Open the arena ``arena_id``, creating it with ``config`` if it does not exist.

        Raises:
            ValueError: the arena exists with other rules.
        """
        self.store = store
        self.arena_id = arena_id
        self.config = config
        self.clock = clock
        store.ensure_arena(arena_id, config, created_at=clock.now())
        self._memory: dict[str, WindowMemory] = {}  # per evaluation context
        self.evaluations = 0  # window evaluations this object ran (not served from a cache)

    def register(
        self, candidate_id: str, *, registered_at: datetime | None = None, study: str | None = None
    ) -> EntrantState:
        """Register a candidate as the next entrant (idempotent); ``registered_at`` defaults to the clock.

        ``study`` is the study the candidate came from (how ``study_market`` finds its holdout).

        Raises:
            ValueError: the id is empty or names a baseline (``baseline/...``).
        """
        if not candidate_id or candidate_id.startswith(BASELINE_PREFIX):
            raise ValueError(f"candidate id {candidate_id!r} is empty or reserved for baselines ({BASELINE_PREFIX}...)")
        at = self.clock.now() if registered_at is None else registered_at
        entrant = self.store.register(self.arena_id, candidate_id, registered_at=at, study=study)
        logger.info("arena %s: %s registered as entrant %d", self.arena_id, candidate_id, entrant.order)
        return entrant

    def status(self) -> ArenaStatus:
        """Return the arena's current state."""
        return self.store.status(self.arena_id)

    def match_log(self, *, after: int = 0) -> list[MatchResult]:
        """Return the recorded matches numbered above ``after``, in order."""
        return self.store.match_log(self.arena_id, after=after)

    def play_pending(
        self,
        load_policy: PolicyLoader,
        panel: MarketPanel,
        env_config: EnvConfig,
        *,
        max_matches: int | None = None,
        on_match: Callable[[MatchResult], None] | None = None,
    ) -> list[MatchResult]:
        """Play every pending match on one holdout ``panel`` (see ``play``); players are scripted.

        ``load_policy`` returns ``(policy, normaliser)``; every player trades ``env_config``.
        """
        def load(candidate_id: str) -> Player:
            policy, normalizer = load_policy(candidate_id)
            return Player(policy, normalizer)

        market = ArenaMarket(HOLDOUT, panel, env_config, load, description=f"the {panel.interval} holdout panel")
        return self.play(FixedMarket(market), max_matches=max_matches, on_match=on_match)

    def play(
        self,
        markets: MarketSource,
        *,
        max_matches: int | None = None,
        on_match: Callable[[MatchResult], None] | None = None,
    ) -> list[MatchResult]:
        """Play matches until no challenger is waiting (or ``max_matches`` were recorded).

        An empty throne is filled first (the earliest waiting entrant, streak 0), also after the
        last match of this call, so the arena is never left without a king while someone waits.

        Args:
            markets: which market each pair meets on, and the markets themselves.
            max_matches: stop after recording this many matches.
            on_match: called with each result after it is committed (e.g. a mirror).

        Returns:
            The matches this call recorded, in order.

        Raises:
            WindowsDoNotFit: a match's holdout is too short for the configured windows (nothing
                is recorded for it; the message names the market).
            EvaluationError: a candidate could not be loaded or evaluated (nothing is recorded
                for the match; playing again resumes it).
        """
        tables: dict[str, _Table] = {}
        played: list[MatchResult] = []
        try:
            while True:
                throne = self.store.throne(self.arena_id, waiting_limit=self.config.prefetch_matches)
                if throne.king is None:  # crowned even when max_matches is reached: the throne is never left empty
                    if not throne.waiting:
                        break
                    if self.store.crown(self.arena_id, throne.waiting[0], matches_played=throne.matches_played):
                        logger.info("arena %s: %s crowned on an empty throne", self.arena_id, throne.waiting[0])
                    continue
                if not throne.waiting or (max_matches is not None and len(played) >= max_matches):
                    break
                key = markets.key_for(throne.king, throne.waiting[0])
                if key not in tables:
                    tables[key] = self._table(markets.market(key))
                same_market = [w for w in throne.waiting if markets.key_for(throne.king, w) == key]
                result = self._play(throne, tables[key], same_market)
                recorded = self.store.record_match(result)
                if recorded is not RecordOutcome.RECORDED:  # another worker got there first
                    level = logging.INFO if recorded is RecordOutcome.ALREADY_RECORDED else logging.WARNING
                    logger.log(level, "arena %s: match %d not recorded (%s); re-reading the state",
                               self.arena_id, result.match_number, recorded)
                    continue
                self._forget([m for m in (result.loser_id, result.promoted_id, result.rejected_id) if m])
                _log_result(result)
                played.append(result)
                if on_match is not None:
                    on_match(result)
        finally:
            self.evaluations += sum(t.evaluator.evaluations for t in tables.values())
        return played

    def _table(self, market: ArenaMarket) -> _Table:
        """Cut ``market`` into windows and set up its evaluator.

        Raises:
            WindowsDoNotFit: the market's holdout is too short (the message names the market).
        """
        cfg, env, panel = self.config, market.env_config, market.panel
        try:
            bars = cfg.window_bars or window_bars(panel.interval, cfg.window_hours)
            windows = holdout_windows(panel, lookback=env.lookback, window_bars=bars,
                                      confirmation_fraction=cfg.confirmation_fraction,
                                      windows_per_match=cfg.windows_per_match or 1)
        except WindowsDoNotFit as exc:
            raise WindowsDoNotFit(f"arena {self.arena_id!r}, market {market.key!r} ({market.description}): {exc}") from exc
        costs = ExecutionCosts(env.fee_rate, env.slippage_bps, env.min_order_notional, env.min_cash_reserve)
        evaluator = WindowEvaluator(
            self.store, panel, env, market.load, horizon=windows.window_bars,
            baselines=default_baselines(costs, panel.symbols),
            memory=self._memory.setdefault(context_hash(panel, env), {}), torch_threads=cfg.torch_threads,
        )
        return _Table(market, windows, evaluator)

    def _forget(self, model_ids: list[str]) -> None:
        """Drop players that left the arena from every in-memory cache (their rows stay in the database)."""
        for memory in self._memory.values():
            for model_id in model_ids:
                memory.pop(model_id, None)

    def _play(self, throne: ThroneState, table: _Table, same_market: list[str]) -> MatchResult:
        """Compute (not record) the next match from ``throne`` on ``table``'s market."""
        cfg, windows, evaluator = self.config, table.windows, table.evaluator
        assert throne.king is not None and throne.waiting
        king, challenger = throne.king, throne.waiting[0]
        number = throne.matches_played + 1
        seed = derive_seed(cfg.seed, number, SEED_WINDOWS)
        rows = (windows.match_rows if cfg.windows_per_match is None
                else draw_match_windows(windows.match_rows, cfg.windows_per_match, seed))
        if not (evaluator.ready(king, windows.match_rows) and evaluator.ready(challenger, windows.match_rows)):
            # One batch for the king and the next challengers on this market, each on every match
            # window: the following matches then find their players evaluated.
            evaluator.ensure([king, *same_market], windows.match_rows)
        king_forfeit, challenger_forfeit = evaluator.cannot_trade(king), evaluator.cannot_trade(challenger)
        king_results = [] if king_forfeit else evaluator.results(king, rows)
        challenger_results = [] if challenger_forfeit else evaluator.results(challenger, rows)
        interval = evaluator.panel.interval
        king_score = None if king_forfeit else match_score(king_results, interval)
        challenger_score = None if challenger_forfeit else match_score(challenger_results, interval)
        outcome = decide_outcome(king_score, challenger_score, cfg.tie_tolerance)
        walkover = bool(king_forfeit or challenger_forfeit)  # not a win: the streak does not grow
        if outcome is MatchOutcome.CHALLENGER_WINS:
            winner, loser, streak = challenger, king, 0 if walkover else 1
        else:
            winner, loser = king, challenger
            streak = throne.streak + (1 if outcome is MatchOutcome.KING_WINS and not walkover else 0)
        edge: EdgeTestResult | None = None
        if streak >= cfg.promotion_streak:
            edge = self._edge_test(winner, number, windows, evaluator)
        return MatchResult(
            match_id=match_id(self.arena_id, number, king, challenger),
            arena_id=self.arena_id,
            match_number=number,
            seed=seed,
            king_id=king,
            challenger_id=challenger,
            king_streak_before=throne.streak,
            window_starts=tuple(int(s) for s in evaluator.panel.timestamps[rows]),
            window_bars=windows.window_bars,
            context_hash=evaluator.context,
            king_score=king_score,
            challenger_score=challenger_score,
            king_alpha=mean_alpha(king_results),
            challenger_alpha=mean_alpha(challenger_results),
            outcome=outcome,
            loser_id=loser,
            streak_after=streak,
            edge_test=edge,
            promoted_id=winner if edge is not None and edge.passed else None,
            rejected_id=winner if edge is not None and not edge.passed else None,
            king_after=winner if edge is None else None,
            played_at=self.clock.now(),
            market=table.market.key,
            king_forfeit=king_forfeit,
            challenger_forfeit=challenger_forfeit,
        )

    def _edge_test(
        self, king: str, number: int, windows: HoldoutWindows, evaluator: WindowEvaluator
    ) -> EdgeTestResult:
        """Run the edge test of ``king`` on the confirmation windows against every baseline."""
        rows = windows.confirmation_rows
        evaluator.ensure([king, *evaluator.baseline_ids], rows)
        baselines = {
            b.removeprefix(BASELINE_PREFIX): evaluator.results(b, rows) for b in evaluator.baseline_ids
        }
        return edge_test(
            evaluator.results(king, rows), baselines, interval=evaluator.panel.interval, config=self.config,
            seed=derive_seed(self.config.seed, number, SEED_BOOTSTRAP),
        )


def _log_result(result: MatchResult) -> None:
    logger.info(
        "arena %s match %d on %s: %s (%s) vs %s (%s): %s, streak %d%s", result.arena_id, result.match_number,
        result.market, result.king_id, result.king_forfeit or result.king_score, result.challenger_id,
        result.challenger_forfeit or result.challenger_score, result.outcome, result.streak_after,
        f", promoted {result.promoted_id}" if result.promoted_id else
        f", rejected {result.rejected_id} (no edge)" if result.rejected_id else "",
    )
