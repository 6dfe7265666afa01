"""The verdict says where the walk stopped and why, with the king's score against each baseline."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cappuccino_core.pipeline.verdict import explanations, pipeline_verdict

KING = "models:/cappuccino-ppo/7"
REFUSED = {
    "match": 21, "king": KING, "passed": False, "bars": 672, "windows": 4, "king_score": 28.53,
    "reasons": ["score 28.53 does not beat baseline momentum (35.45)"], "mean_excess": 0.0004,
    "ci_low": 0.0001, "ci_high": 0.0007, "confidence": 0.95,
    "baselines": {"buy_and_hold": 0.0, "momentum": 35.45, "mean_reversion": -3.2, "sixty_forty": 1.5},
}


def summary(**changes: Any) -> dict[str, Any]:
    """A pipeline summary with only what the verdict reads; a refused king by default."""
    doc = {
        "name": "demo",
        "training": {"summary": {"trials_by_state": {"COMPLETE": 48, "FAIL": 0}, "with_evidence": 5, "best_value": 8.0,
                                 "pbo": 0.62, "pbo_reason": None, "dsr": 0.41, "dsr_reason": None, "dsr_tests": 60,
                                 "selection_spearman": -0.1},
                     "candidates": [{"version": "7", "trial_score": 8.0}, {"version": "8", "trial_score": 6.0}],
                     "holdout_scores": {KING: -1.5, "models:/cappuccino-ppo/8": -0.5}},
        "arena": {"rules": {"promotion_streak": 20}, "king": KING, "streak": 20, "edge_tests": [REFUSED]},
        "sandbox": {"admitted": [], "sandbox_results": [], "production": None},
        "green_light": {"status": "no_production", "message": "there is no production model"},
    }
    for path, value in changes.items():
        node = doc
        *head, last = path.split("__")
        for key in head:
            node = node[key]
        node[last] = value
    return copy.deepcopy(doc)


def test_a_king_refused_by_the_edge_test_is_named_with_the_rule_and_the_baselines_it_faced() -> None:
    verdict = pipeline_verdict(summary())
    assert not verdict.promoted
    assert verdict.headline == (f"Not promoted: {KING} won 20 matches in a row but the edge test refused it: "
                                "score 28.53 does not beat baseline momentum (35.45).")
    assert verdict.details == (f"edge test of {KING} (match 21, 672 confirmation bars): score 28.53 (annualised "
                               "excess Sharpe over buy and hold) against buy_and_hold 0, momentum 35.45, "
                               "mean_reversion -3.2, sixty_forty 1.5; bootstrap interval of the mean excess return "
                               "per bar 0.0001 .. 0.0007",)
    markdown = verdict.to_markdown("Cappuccino pipeline demo")
    assert markdown.startswith("# Cappuccino pipeline demo\n\n**Not promoted: ")
    assert "- edge test of" in markdown


def test_a_promoted_king_that_reached_production_says_so_and_gives_the_green_light() -> None:
    passed = {**REFUSED, "passed": True, "reasons": [], "king_score": 40.0}
    verdict = pipeline_verdict(summary(arena__edge_tests=[passed], sandbox__production=KING,
                                       green_light={"status": "waiting", "message": "2 days of record needed"}))
    assert verdict.promoted
    assert verdict.headline == (f"Promoted: {KING} won 20 matches in a row and passed the edge test; it is the "
                                "production model on paper.")
    assert verdict.details[-1] == "green light for live trading: waiting: 2 days of record needed"


def test_without_candidates_the_verdict_says_no_trial_showed_an_edge() -> None:
    verdict = pipeline_verdict(summary(training__candidates=[], training__summary__with_evidence=0,
                                       arena__edge_tests=[], arena__king=None))
    assert verdict.headline == ("Not promoted: no trial showed validation evidence of an edge (0 of 48 complete "
                                "trials), so no candidate entered the arena.")


def test_a_king_short_of_its_streak_is_told_how_far_it_got() -> None:
    verdict = pipeline_verdict(summary(arena__edge_tests=[], arena__streak=7))
    assert verdict.headline == f"Not promoted: the arena king {KING} has won 7 of the 20 matches in a row it needs before the edge test."


def test_the_validation_holdout_gap_pbo_and_dsr_are_each_explained_and_flagged_when_untrustworthy() -> None:
    (gap, gap_text, gap_flag), (pbo, pbo_text, pbo_flag), (dsr, dsr_text, dsr_flag) = explanations(summary())
    assert gap == "validation 7.00 vs holdout -1.00" and gap_flag
    assert gap_text.startswith("Validation overstated the holdout: the candidates' median validation score is 7.00 "
                               "(best trial 8.00) and their median arena holdout score -1.00")
    assert pbo == "PBO 0.62" and pbo_flag and "62%" in pbo_text
    assert dsr == "DSR 0.41" and dsr_flag and "trying 60 trials" in dsr_text
    trusted = summary(training__summary__pbo=0.1, training__summary__dsr=0.99,
                      training__holdout_scores={KING: 6.5, "models:/cappuccino-ppo/8": 5.5})
    assert [flag for _, _, flag in explanations(trusted)] == [False, False, False]
    assert explanations(trusted)[0][1].startswith("Validation agrees with the holdout")


@pytest.mark.parametrize("field", ["pbo", "dsr"])
def test_an_undefined_pbo_or_dsr_gives_its_reason_and_is_flagged(field: str) -> None:
    doc = summary(**{f"training__summary__{field}": None, f"training__summary__{field}_reason": "fewer than 2 trials"})
    found = {figure: (text, flag) for figure, text, flag in explanations(doc)}
    text, flag = found[f"{field.upper()} undefined"]
    assert flag and text.endswith("fewer than 2 trials.")


def test_a_promoted_king_retired_from_the_sandbox_is_reported_with_its_sandbox_alpha() -> None:
    passed = {**REFUSED, "passed": True, "reasons": []}
    traded = [{"model_id": KING, "bars": 48, "metrics": {"alpha": -0.0259}}]
    decisions = [{"at": "2026-11-28T00:00:00+00:00", "promoted": [], "retired": [KING], "production": None}]
    verdict = pipeline_verdict(summary(arena__edge_tests=[passed], sandbox__sandbox_results=traded,
                                       sandbox__decisions=decisions))
    assert verdict.promoted
    assert verdict.headline == (f"Promoted: {KING} won 20 matches in a row and passed the edge test; it traded in "
                                "the sandbox (alpha -2.59% over 48 bars) and was retired without reaching production.")
