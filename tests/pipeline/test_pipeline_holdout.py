"""The holdout chart trades one window that never spans a gap in the bars (worked by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from cappuccino_core.pipeline.holdout import _longest_stretch


def test_without_gaps_the_window_is_the_whole_holdout_after_its_history() -> None:
    assert _longest_stretch(np.zeros(100, dtype=np.int32), 20) == (19, 80)  # decision row 19, last row 99


def test_with_gaps_the_window_is_the_longest_stretch_and_the_latest_of_equal_ones() -> None:
    segments = np.array([0] * 30 + [1] * 50 + [2] * 50, dtype=np.int32)
    assert _longest_stretch(segments, 20) == (80 + 19, 30)  # rows 80..129, the later of the two 50-bar runs
    assert _longest_stretch(np.array([0] * 60 + [1] * 40, dtype=np.int32), 10) == (9, 50)


def test_a_holdout_without_room_for_the_lookback_is_refused_with_its_length() -> None:
    with pytest.raises(ValueError, match="longest gap-free stretch has 10 bars: too few for a lookback of 20"):
        _longest_stretch(np.zeros(10, dtype=np.int32), 20)
