"""Did selection work? Validation against the holdout for a study's candidates, and the promoted kings' evidence.

* **Selection rank correlation**: Spearman's rho between each candidate's validation score (its
  trial's score) and its arena holdout score (its match score on the arena's match windows,
  which every candidate trades in full when a match uses every match window), with its sample
  size and interval. Near zero means validation picked noise.
* **King evidence**: for each king that took the edge test, its score and the bootstrap interval
  of its mean excess return on the confirmation windows: bars no selection ever saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cappuccino_core.evaluation.ranking import spearman
from cappuccino_core.registry.models import version_uri


def holdout_scores(matches: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Each player's first recorded match score (``service.match_summary`` dicts, oldest first)."""
    scores: dict[str, float | None] = {}
    for match in matches:
        scores.setdefault(match["king"], match["king_score"])
        scores.setdefault(match["challenger"], match["challenger_score"])
    return scores


def selection_statistics(candidates: Sequence[dict[str, Any]], matches: Sequence[dict[str, Any]],
                         model_name: str) -> dict[str, Any]:
    """Spearman's rho of validation vs holdout scores over the candidates that have both."""
    holdout = holdout_scores(matches)
    pairs = [(float(c["trial_score"]), holdout[uri]) for c in candidates
             if (uri := version_uri(model_name, c["version"])) in holdout and holdout[uri] is not None]
    result = spearman([p[0] for p in pairs], [p[1] for p in pairs])
    return {"selection_spearman": result.rho, "selection_n": result.n,
            "selection_spearman_ci95": [result.low, result.high],
            "holdout_scores": {version_uri(model_name, c["version"]): holdout.get(version_uri(model_name, c["version"]))
                               for c in candidates}}


def king_evidence(matches: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every edge test in ``matches``: the king, whether it was promoted, and its confirmation-window evidence."""
    out = []
    for match in matches:
        edge = match.get("edge_test")
        if edge is not None:
            out.append({"match": match["match"], "king": match["promoted"] or match["rejected"], **edge})
    return out
