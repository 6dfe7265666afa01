"""The arena mirrored into MLflow: a run per match, ``arena_status`` tags and the ``king`` alias.

The project database is the source of truth; MLflow shows it. For each recorded match, in
order: its run in the ``arena`` experiment (king, challenger, scores, winner, streak, window
seed), then the tags of the versions it moved (``arena_status``: ``king``, ``eliminated``,
``promoted``) and the alias ``king`` (moved to the king after the match, removed when the
king left), then the match row is marked ``mirrored`` in the database. Finally the current
king (also one crowned on an empty throne, without a match) gets its tag and the alias.

Crash safety: every step is idempotent and a match is marked only after all of its steps, so
a mirror that failed part-way (MLflow down, process killed after the database commit) is
redone by the next ``mirror_pending``: the run is found again by its match-id tag (never a
second run), values already logged are not logged again, and tags and alias converge on the
database state. Run one mirror per arena at a time (the flow's deployment has a concurrency
limit of 1): two mirrors racing could both create the run of one match.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cappuccino_core.arena.admission import STATUS_TAG, parse_version_uri
from cappuccino_core.arena.results import MatchResult
from cappuccino_core.arena.state import ArenaStatus
from cappuccino_core.arena.store import ArenaStore
from cappuccino_core.registry.models import delete_alias, model_aliases, set_alias, set_version_tag
from cappuccino_core.tracking.runs import NOTE_TAG, end_run, get_or_create_experiment, log_metrics, log_params_and_tags

if TYPE_CHECKING:
    from cappuccino_core.tracking.store import TrackingClient

logger = logging.getLogger(__name__)

ARENA_EXPERIMENT = "arena"
KING_ALIAS = "king"
ARENA_TAG = "cappuccino.arena"
MATCH_ID_TAG = "cappuccino.arena.match_id"
LOGGED_TAG = "cappuccino.arena.logged"
ARENA_DESCRIPTION = (
    "The tournament arena: one run per match of king against challenger on the same held-out weekly windows "
    "(scores are excess Sharpe over buy and hold). A king is promoted after its streak of wins and the edge "
    "test on the confirmation windows; the tag edge_test says why one was refused. The registered model's "
    "alias 'king' follows the crown."
)


class ArenaMirror:
    """Writes an arena's matches and standings into one MLflow store."""

    def __init__(self, client: TrackingClient, *, model_name: str, artifact_location: str | None) -> None:
        """Use ``client``; create the ``arena`` experiment if needed (at ``artifact_location``).

        Args:
            client: tracking and registry client of the store the candidates are registered in.
            model_name: registered model whose alias ``king`` the mirror moves.
            artifact_location: artifact root of a new ``arena`` experiment (None on a tracking server).
        """
        self.client = client
        self.model_name = model_name
        self.experiment_id = get_or_create_experiment(client, ARENA_EXPERIMENT, artifact_location,
                                                      description=ARENA_DESCRIPTION)

    def record(self, result: MatchResult) -> str:
        """Mirror one match (run, tags, alias) idempotently; return its run id."""
        run_id = self._run_of(result)
        self._set_status(result.loser_id, "eliminated")
        if result.promoted_id is not None:
            self._set_status(result.promoted_id, "promoted")
        if result.rejected_id is not None:
            self._set_status(result.rejected_id, "eliminated")
        if result.king_after is not None:
            self._crown(result.king_after)
        else:
            self._drop_alias()
        return run_id

    def sync_king(self, status: ArenaStatus) -> None:
        """Make the tag and alias of the current king match ``status`` (a king crowned without a match)."""
        if status.king is None:
            self._drop_alias()
        else:
            self._crown(status.king)

    def runs(self, arena_id: str) -> list:
        """Return the match runs of ``arena_id`` (for reports and checks), by match number."""
        found, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], f"tags.`{ARENA_TAG}` = {_quote(arena_id)}",
                                           max_results=1000, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
        return sorted(found, key=lambda r: int(r.data.params["match_number"]))

    def _run_of(self, result: MatchResult) -> str:
        """Find or create the match's run and make sure everything is logged on it."""
        found = self.client.search_runs(
            [self.experiment_id], f"tags.`{MATCH_ID_TAG}` = {_quote(result.match_id)}", max_results=2
        )
        if len(found) > 1:
            raise LookupError(f"match {result.match_id} has several runs ({', '.join(r.info.run_id for r in found)}); "
                              "delete the extra ones")
        if found and found[0].data.tags.get(LOGGED_TAG) == "true":
            return found[0].info.run_id
        played_ms = int(result.played_at.timestamp() * 1000)
        if found:
            run_id, started_ms = found[0].info.run_id, found[0].info.start_time
        else:
            # The run stands for the match, which took place at played_at: it starts and ends there.
            run_id = self.client.create_run(
                self.experiment_id, run_name=f"{result.arena_id}-match-{result.match_number:05d}",
                start_time=played_ms, tags={ARENA_TAG: result.arena_id, MATCH_ID_TAG: result.match_id},
            ).info.run_id
            started_ms = played_ms
        try:
            log_params_and_tags(self.client, run_id, _params(result), _tags(result))
            log_metrics(self.client, run_id, _metrics(result), reasons=_undefined_reasons(result))
            self.client.set_tag(run_id, LOGGED_TAG, "true")
        except BaseException:
            end_run(self.client, run_id, failed=True)  # the next mirror_pending completes it
            raise
        # A run created before played_at was its start (older mirrors) still never ends before it starts.
        self.client.set_terminated(run_id, status="FINISHED", end_time=max(played_ms, started_ms))
        return run_id

    def _set_status(self, candidate_id: str, value: str) -> None:
        name, version = parse_version_uri(candidate_id)
        set_version_tag(self.client, name, version, STATUS_TAG, value)

    def _crown(self, candidate_id: str) -> None:
        name, version = parse_version_uri(candidate_id)
        self._check_model(name, candidate_id)
        set_version_tag(self.client, name, version, STATUS_TAG, "king")
        if model_aliases(self.client, name).get(KING_ALIAS) != version:
            set_alias(self.client, name, KING_ALIAS, version)

    def _drop_alias(self) -> None:
        if KING_ALIAS in model_aliases(self.client, self.model_name):  # none before a model is registered
            delete_alias(self.client, self.model_name, KING_ALIAS)

    def _check_model(self, name: str, candidate_id: str) -> None:
        if name != self.model_name:
            raise ValueError(f"entrant {candidate_id!r} is a version of {name!r}, but this mirror moves the "
                             f"{KING_ALIAS!r} alias of {self.model_name!r}")


def mirror_match(store: ArenaStore, mirror: ArenaMirror, result: MatchResult) -> None:
    """Mirror one match, then mark it mirrored in the database (use as ``Arena.play``'s ``on_match``)."""
    mirror.record(result)
    store.mark_mirrored(result.match_id)


def mirror_pending(store: ArenaStore, arena_id: str, mirror: ArenaMirror) -> int:
    """Mirror every match not mirrored yet, in order, then sync the king; return how many were mirrored."""
    pending = store.unmirrored(arena_id)
    for result in pending:
        mirror_match(store, mirror, result)
    mirror.sync_king(store.status(arena_id))
    if pending:
        logger.info("arena %s: mirrored %d match(es) into MLflow", arena_id, len(pending))
    return len(pending)


def _description(result: MatchResult) -> str:
    return (f"Match {result.match_number} of arena {result.arena_id}: king {result.king_id} against challenger "
            f"{result.challenger_id} on {len(result.window_starts)} window(s) of {result.window_bars} bars.")


def _params(result: MatchResult) -> dict[str, str]:
    return {
        "match_number": str(result.match_number), "king": result.king_id, "challenger": result.challenger_id,
        "window_seed": str(result.seed), "windows": str(len(result.window_starts)),
        "window_bars": str(result.window_bars), "market": result.market, "context_hash": result.context_hash,
    }


def _tags(result: MatchResult) -> dict[str, str]:
    tags = {
        "outcome": str(result.outcome), "winner": result.winner_id, "loser": result.loser_id,
        "king_after": result.king_after or "", "promoted": result.promoted_id or "",
        "rejected": result.rejected_id or "", NOTE_TAG: _description(result),
    }
    if result.king_forfeit:
        tags["king_forfeit"] = result.king_forfeit[:5000]
    if result.challenger_forfeit:
        tags["challenger_forfeit"] = result.challenger_forfeit[:5000]
    if result.edge_test is not None:
        tags["edge_test"] = "passed" if result.edge_test.passed else "; ".join(result.edge_test.reasons)[:5000]
    return tags


def _metrics(result: MatchResult) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {
        "king_score": result.king_score, "challenger_score": result.challenger_score,
        "king_alpha": result.king_alpha, "challenger_alpha": result.challenger_alpha,
        "streak_before": float(result.king_streak_before), "streak": float(result.streak_after),
    }
    if result.edge_test is not None:
        metrics |= {"edge_mean_excess": result.edge_test.mean_excess, "edge_ci_low": result.edge_test.ci_low,
                    "edge_king_score": result.edge_test.king_score}
    return metrics


def _undefined_reasons(result: MatchResult) -> dict[str, str]:
    reasons = {}
    if result.king_forfeit:
        reasons |= {"king_score": "forfeit", "king_alpha": "forfeit"}
    if result.challenger_forfeit:
        reasons |= {"challenger_score": "forfeit", "challenger_alpha": "forfeit"}
    return reasons


def _quote(value: str) -> str:
    if "'" in value:
        raise ValueError(f"{value!r} contains a single quote, which MLflow filter strings cannot express")
    return f"'{value}'"
