"""The pipeline's verdict in words: promoted or not, which rule refused whom, the king against each baseline.

``pipeline_verdict`` reads the pipeline's summary (``flows.pipeline.PipelineReport`` as a dict)
and says, in order of the walk, where it stopped: no trial with evidence of an edge, no king,
a king short of its streak, a king refused by the edge test (each failed condition named, as
the arena recorded it), or a promotion and how far the model went (sandbox, production, the
green light). The same text heads the HTML report, the printed summary and the Prefect
artifact of the run. ``explanations`` says in one sentence each what the selection
figures mean for this run (the validation–holdout gap, PBO, DSR).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from cappuccino_core.pipeline.formatting import fmt_number, fmt_percent

DSR_CONFIDENCE = 0.95
"""A deflated Sharpe ratio below this does not tell the best trial from the luck of many tries."""


@dataclass(frozen=True)
class Verdict:
    """What the run concluded.

    Attributes:
        promoted: a model of this run passed the arena (streak and edge test).
        headline: the verdict and its reason, one line.
        details: the facts behind it, one line each (the king against each baseline, ...).
    """

    promoted: bool
    headline: str
    details: tuple[str, ...]

    def to_markdown(self, title: str) -> str:
        """The verdict as a short markdown document (the Prefect artifact)."""
        lines = [f"# {title}", "", f"**{self.headline}**", ""]
        lines += [f"- {line}" for line in self.details]
        return "\n".join(lines) + "\n"


def pipeline_verdict(summary: dict[str, Any]) -> Verdict:
    """Return the verdict of one pipeline run from its summary."""
    training, arena = summary["training"], summary["arena"]
    streak_needed = (arena.get("rules") or {}).get("promotion_streak")
    complete = (training["summary"].get("trials_by_state") or {}).get("COMPLETE", 0)
    tests = arena.get("edge_tests") or []
    promoted = [t for t in tests if t.get("passed")]
    details = [_baselines_line(t) for t in tests]
    if promoted:
        king = promoted[0]["king"]
        return Verdict(True, f"Promoted: {king} won {streak_needed} matches in a row and passed the edge test"
                             f"{_after_promotion(summary, king)}.", tuple(details + _green_line(summary)))
    if tests:
        refused = tests[-1]
        reasons = "; ".join(refused.get("reasons") or ["no reason recorded"])
        return Verdict(False, f"Not promoted: {refused['king']} won {streak_needed} matches in a row but the edge "
                              f"test refused it: {reasons}.", tuple(details))
    if not training.get("candidates"):
        with_evidence = training["summary"].get("with_evidence")
        return Verdict(False, f"Not promoted: no trial showed validation evidence of an edge ({with_evidence} of "
                              f"{complete} complete trials), so no candidate entered the arena.", ())
    king, streak = arena.get("king"), arena.get("streak")
    if king is None:
        return Verdict(False, "Not promoted: the arena has no king (every match was forfeited or no match was "
                              "played).", ())
    return Verdict(False, f"Not promoted: the arena king {king} has won {streak} of the {streak_needed} matches in "
                          f"a row it needs before the edge test.", ())


def explanations(summary: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """``(figure, one-sentence explanation, flagged)`` for the validation–holdout gap, PBO and DSR.

    ``flagged`` is True when the figure says the selection should not be trusted.
    """
    training = summary["training"]["summary"]
    out = [_gap(summary)]
    pbo = training.get("pbo")
    if pbo is None:
        out.append(("PBO undefined", f"The probability of backtest overfitting could not be estimated: "
                                     f"{training.get('pbo_reason')}.", True))
    else:
        out.append((f"PBO {pbo:.2f}", f"Probability of backtest overfitting: in {pbo:.0%} of the ways of splitting "
                                      "the trials' validation bars in two halves, the trial best on one half ranked "
                                      "below the median on the other (0.5 is what picking at random gives).",
                    pbo >= 0.5))
    dsr, tests = training.get("dsr"), training.get("dsr_tests")
    if dsr is None:
        out.append(("DSR undefined", f"The deflated Sharpe ratio could not be computed: {training.get('dsr_reason')}.",
                    True))
    else:
        out.append((f"DSR {dsr:.2f}", f"Deflated Sharpe ratio: the probability that the best trial's Sharpe ratio "
                                      f"is above zero once the luck of trying {tests} trials is discounted "
                                      f"(below {DSR_CONFIDENCE} the best score is not told apart from that luck).",
                    dsr < DSR_CONFIDENCE))
    return out


def _gap(summary: dict[str, Any]) -> tuple[str, str, bool]:
    """The best validation score against what the candidates scored on the arena holdout."""
    training = summary["training"]
    best = training["summary"].get("best_value")
    holdout = [s for s in (training.get("holdout_scores") or {}).values() if s is not None]
    if best is None or not holdout:
        return ("validation–holdout gap undefined",
                f"The best validation score is {fmt_number(best)}; no candidate has an arena holdout score to "
                "compare it with.", best is not None)
    validation = [c["trial_score"] for c in training.get("candidates") or []]
    median_holdout = statistics.median(holdout)
    median_validation = statistics.median(validation) if validation else best
    flagged = median_holdout <= 0 < median_validation or median_holdout < median_validation / 2
    verb = "overstated" if flagged else "agrees with"
    rho = training["summary"].get("selection_spearman")
    return (f"validation {median_validation:.2f} vs holdout {median_holdout:.2f}",
            f"Validation {verb} the holdout: the candidates' median validation score is {median_validation:.2f} "
            f"(best trial {best:.2f}) and their median arena holdout score {median_holdout:.2f} on bars no search "
            f"saw (range {min(holdout):.2f} to {max(holdout):.2f}; rank correlation {fmt_number(rho)}).", flagged)


def _baselines_line(test: dict[str, Any]) -> str:
    baselines = ", ".join(f"{name} {fmt_number(score)}" for name, score in (test.get("baselines") or {}).items())
    return (f"edge test of {test['king']} (match {test['match']}, {test.get('bars')} confirmation bars): score "
            f"{fmt_number(test.get('king_score'))} (annualised excess Sharpe over buy and hold) against {baselines}; "
            f"bootstrap interval of the mean excess return per bar {fmt_number(test.get('ci_low'))} .. "
            f"{fmt_number(test.get('ci_high'))}")


def _after_promotion(summary: dict[str, Any], king: str) -> str:
    """How far the promoted king went after the arena, in the replay's sandbox and production."""
    sandbox = summary.get("sandbox") or {}
    if sandbox.get("production") == king:
        return "; it is the production model on paper"
    traded = [r for r in sandbox.get("sandbox_results") or [] if r["model_id"] == king]
    if not traded:
        return "; it is in the sandbox" if king in (sandbox.get("admitted") or []) else ""
    alpha = traded[0]["metrics"].get("alpha")
    text = f"; it traded in the sandbox (alpha {fmt_percent(alpha)} over {traded[0]['bars']} bars)"
    if any(king in (d.get("retired") or []) for d in sandbox.get("decisions") or []):
        text += " and was retired without reaching production"
    return text


def _green_line(summary: dict[str, Any]) -> list[str]:
    green = summary.get("green_light") or {}
    return [f"green light for live trading: {green.get('status')}: {green.get('message')}"] if green else []
