"""Spearman's rank correlation, checked against cases worked by hand."""

from __future__ import annotations

import pytest

from cappuccino_core.evaluation.ranking import spearman


def test_identical_orderings_correlate_one_and_reversed_minus_one() -> None:
    assert spearman([1, 2, 3, 4, 5], [10, 20, 30, 40, 50]).rho == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]).rho == pytest.approx(-1.0)


def test_a_hand_worked_case_with_a_tie_and_its_interval() -> None:
    # ranks x: 1 2 3 4 5 6; y = [1, 3, 2, 4, 4, 6] -> ranks 1 3 2 4.5 4.5 6
    result = spearman([1, 2, 3, 4, 5, 6], [1, 3, 2, 4, 4, 6])
    assert result.rho == pytest.approx(16 / (17.5 * 17) ** 0.5, rel=1e-12)  # Pearson of the ranks: 16 / sqrt(17.5 x 17)
    assert result.n == 6 and result.low < result.rho < result.high < 1.0


def test_undefined_when_one_side_is_constant_or_too_short() -> None:
    assert spearman([1, 2, 3], [7, 7, 7]).rho is None
    assert spearman([1.0], [2.0]).rho is None
    with pytest.raises(ValueError, match="finite"):
        spearman([1.0, float("nan")], [1.0, 2.0])
