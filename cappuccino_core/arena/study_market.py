"""Which bars a match between two registered candidates uses: the arena holdout of their studies.

**The rule.** Every candidate comes from a training study with a time split
``search | holdout | replay`` (``search.split.HistorySplit``). Its training and all its
validation used bars before its study's ``search_end`` only. A match between a king from study
K and a challenger from study C is played on the bars after the **later** of the two
``search_end``s and before the ``holdout_end`` of the study that has it: no search or
validation of either model saw those bars, and the replay period after that holdout stays
unseen for the sandbox. Windows are drawn from the holdout of that one study
(``search.split.holdout_panel`` of its own panel, at its interval, hash-checked against the
bars it was prepared on), so every match between candidates of the same pair of studies uses
the same market, and a resumed run draws the same windows. When both ``search_end``s are equal
the study with the earlier ``holdout_end`` is used (ties: the smaller study name), so the
windows lie in both holdouts.

A holdout too short for the configured windows is refused (``match.WindowsDoNotFit``, naming
the study and its period): the match is not played and nothing is recorded.

**Who can trade it.** The market is the holdout study's symbols at its bar interval. A
candidate trained on another interval or asset universe cannot trade it and forfeits the match
(``market.CannotTrade``; e.g. an old king after the timeframe search moved to another interval).
Every other candidate is loaded with ``registry.loader.load_policy(uri, panel,
expected_study=<its study>)``, which also refuses a model whose card does not match the panel.

**History.** Each window keeps ``history_bars`` bars before its decision bar (at least the
study's own lookback), enough for any player's lookback; a player that needs more is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from cappuccino_core.arena.market import ArenaMarket, CannotTrade, Player
from cappuccino_core.arena.store import ArenaStore
from cappuccino_core.data.store import BarStore
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.registry.loader import load_policy
from cappuccino_core.search.market import study_panel
from cappuccino_core.search.spec import StudySpec
from cappuccino_core.search.split import holdout_panel

SpecLookup = Callable[[str], StudySpec]
"""Returns the stored spec of a study by name (``search.runner.require_spec``)."""


@dataclass(frozen=True)
class MatchHoldout:
    """The period a match may use: ``[start, end)`` of ``study``'s holdout."""

    study: str
    start: datetime
    end: datetime


def match_holdout(king: StudySpec, challenger: StudySpec) -> MatchHoldout:
    """Return the holdout a candidate of ``king`` and one of ``challenger`` meet on (the rule above)."""
    later = min((king, challenger), key=lambda s: (-s.split.search_end.timestamp(), s.split.holdout_end, s.name))
    return MatchHoldout(later.name, later.split.search_end, later.split.holdout_end)


class StudyMarkets:
    """The ``MarketSource`` of registered candidates: each pair meets on their studies' holdout."""

    def __init__(
        self,
        arena_store: ArenaStore,
        arena_id: str,
        *,
        specs: SpecLookup,
        bars: BarStore,
        tracking_uri: str,
        conditions: EnvConfig,
        history_bars: int,
    ) -> None:
        """Set up the source.

        Args:
            arena_store, arena_id: where each entrant's study is recorded.
            specs: looks a study's spec up by name.
            bars: the bar store the studies were prepared on.
            tracking_uri: the MLflow store the candidates are registered in.
            conditions: fees, slippage, minimum order, initial cash and risk layers of every match.
            history_bars: bars kept before each window's decision bar.
        """
        if history_bars < 2:
            raise ValueError(f"history_bars must be >= 2, got {history_bars}")
        self._arena_store, self._arena_id = arena_store, arena_id
        self._lookup, self._bars, self._tracking_uri = specs, bars, tracking_uri
        self._conditions, self._history = conditions, history_bars
        self._studies: dict[str, str | None] = {}
        self._specs: dict[str, StudySpec] = {}

    def study_of(self, candidate_id: str) -> str:
        """Return the study ``candidate_id`` came from.

        Raises:
            LookupError: the entrant is unknown or has no study (it was not admitted from the registry).
        """
        if candidate_id not in self._studies:
            self._studies = self._arena_store.studies(self._arena_id)
        study = self._studies.get(candidate_id)
        if study is None:
            raise LookupError(f"arena {self._arena_id!r}: entrant {candidate_id!r} has no recorded study")
        return study

    def spec(self, study: str) -> StudySpec:
        """Return the stored spec of ``study`` (read once)."""
        if study not in self._specs:
            self._specs[study] = self._lookup(study)
        return self._specs[study]

    def key_for(self, king_id: str, challenger_id: str) -> str:
        """Return the study whose holdout the pair meets on."""
        return match_holdout(self.spec(self.study_of(king_id)), self.spec(self.study_of(challenger_id))).study

    def market(self, key: str) -> ArenaMarket:
        """Build the holdout market of study ``key``."""
        spec = self.spec(key)
        history = max(self._history, spec.lookback)
        panel = holdout_panel(study_panel(self._bars, spec, spec.interval), spec.split, history)
        env = replace(self._conditions, lookback=history)
        period = f"{spec.split.search_end.isoformat()} .. {spec.split.holdout_end.isoformat()}"
        return ArenaMarket(key, panel, env, self._loader(spec, panel),
                           description=f"holdout of study {key}, {spec.interval} bars {period}")

    def _loader(self, market: StudySpec, panel) -> Callable[[str], Player]:
        def load(candidate_id: str) -> Player:
            study = self.study_of(candidate_id)
            own = self.spec(study)
            if own.interval != market.interval or tuple(own.symbols) != tuple(market.symbols):
                raise CannotTrade(
                    f"trained on {own.interval} bars of {', '.join(own.symbols)} (study {study}); the market is "
                    f"{market.interval} bars of {', '.join(market.symbols)} (study {market.name})"
                )
            loaded = load_policy(candidate_id, panel, tracking_uri=self._tracking_uri, expected_study=study)
            return Player(loaded.policy, loaded.normalizer, loaded.env_config)

        return load
