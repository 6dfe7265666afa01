"""Time splits: search | holdout | replay, walk-forward folds and CPCV, on small explicit cases."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from cappuccino_core.data.intervals import Interval
from cappuccino_core.evaluation.splits import (
    Fold,
    RowRange,
    WindowMode,
    cpcv_folds,
    cpcv_path_count,
    split_history,
    walk_forward_folds,
)

HOUR_NS = 3_600 * 10**9
START_NS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 10**9


def _hourly(n: int) -> np.ndarray:
    return START_NS + HOUR_NS * np.arange(n, dtype=np.int64)


def _at(hour: int) -> datetime:
    return datetime(2024, 1, 1, hour, tzinfo=UTC)


# ----------------------------------------------------------------------------- split_history


def test_history_splits_into_search_then_holdout_then_replay() -> None:
    split = split_history(_hourly(10), interval=Interval.H1, holdout_bars=3, replay_bars=2)
    assert split.search.rows == RowRange(0, 5)
    assert split.holdout.rows == RowRange(5, 8)
    assert split.replay is not None and split.replay.rows == RowRange(8, 10)
    assert (split.search.start, split.search.end) == (_at(0), _at(5))
    assert (split.holdout.start, split.holdout.end) == (_at(5), _at(8))
    assert (split.replay.start, split.replay.end) == (_at(8), _at(10))
    assert split.search.start.tzinfo is UTC


def test_history_without_replay_gives_the_last_bars_to_the_holdout() -> None:
    split = split_history(_hourly(10), interval=Interval.H1, holdout_bars=4)
    assert split.replay is None
    assert split.search.rows == RowRange(0, 6) and split.holdout.rows == RowRange(6, 10)


def test_history_period_end_follows_the_last_bar_even_across_a_gap() -> None:
    ts = np.concatenate([_hourly(4), _hourly(2) + 10 * HOUR_NS])  # rows 4, 5 at 10:00, 11:00
    split = split_history(ts, interval=Interval.H1, holdout_bars=2)
    assert split.search.end == _at(4)
    assert (split.holdout.start, split.holdout.end) == (_at(10), _at(12))


def test_history_accepts_datetime64_timestamps() -> None:
    ts = np.array(["2024-01-01T00", "2024-01-01T01", "2024-01-01T02"], dtype="datetime64[h]")
    split = split_history(ts, interval=Interval.H1, holdout_bars=1)
    assert split.holdout.start == _at(2) and split.holdout.end == _at(3)


def test_history_too_short_for_holdout_and_replay_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        split_history(_hourly(5), interval=Interval.H1, holdout_bars=3, replay_bars=2)
    with pytest.raises(ValueError, match="need at least 4"):
        split_history(_hourly(6), interval=Interval.H1, holdout_bars=3, min_search_bars=4)


def test_history_with_timestamps_out_of_order_is_refused_naming_the_row() -> None:
    ts = _hourly(5)
    ts[3] = ts[2]
    with pytest.raises(ValueError, match="row 3"):
        split_history(ts, interval=Interval.H1, holdout_bars=1)


def test_history_refuses_an_empty_holdout() -> None:
    with pytest.raises(ValueError, match="holdout_bars >= 1"):
        split_history(_hourly(5), interval=Interval.H1, holdout_bars=0)


# ----------------------------------------------------------------------------- walk-forward


def test_expanding_walk_forward_trains_from_row_zero_up_to_the_purge() -> None:
    folds = walk_forward_folds(20, n_folds=3, train_min_rows=8, purge_rows=2)
    # 10 rows after train + purge: 3 blocks of 3, the spare row goes to the first training window
    assert folds == [
        Fold(RowRange(0, 9), RowRange(11, 14)),
        Fold(RowRange(0, 12), RowRange(14, 17)),
        Fold(RowRange(0, 15), RowRange(17, 20)),
    ]


def test_rolling_walk_forward_keeps_the_training_window_length() -> None:
    folds = walk_forward_folds(20, n_folds=3, train_min_rows=8, purge_rows=2, mode=WindowMode.ROLLING)
    assert [f.train for f in folds] == [RowRange(1, 9), RowRange(4, 12), RowRange(7, 15)]
    assert [f.validation for f in folds] == [RowRange(11, 14), RowRange(14, 17), RowRange(17, 20)]


def test_walk_forward_training_always_ends_a_purge_before_its_validation() -> None:
    for mode in WindowMode:
        for fold in walk_forward_folds(1000, n_folds=7, train_min_rows=100, purge_rows=5, embargo_rows=3, mode=mode):
            assert fold.train.stop + 5 == fold.validation.start
            assert len(fold.train) >= 100
            assert not set(fold.train.indices()) & set(fold.validation.indices())


def test_walk_forward_validation_blocks_are_in_time_order_and_cover_the_tail() -> None:
    folds = walk_forward_folds(103, n_folds=4, train_min_rows=50, purge_rows=1)
    blocks = [f.validation for f in folds]
    assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:]))
    assert blocks[-1].stop == 103 and len({len(b) for b in blocks}) == 1


def test_walk_forward_without_room_for_a_validation_row_per_fold_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        walk_forward_folds(10, n_folds=3, train_min_rows=6, purge_rows=2)


# ----------------------------------------------------------------------------- CPCV


def test_cpcv_purges_before_and_embargoes_after_each_test_block() -> None:
    splits = cpcv_folds(12, n_groups=4, n_test_groups=2, purge_rows=1, embargo_rows=1)
    by_groups = {s.test_groups: s for s in splits}
    assert len(splits) == 6
    assert by_groups[(0, 1)].test == (RowRange(0, 6),)
    assert by_groups[(0, 1)].train == (RowRange(7, 12),)
    assert by_groups[(0, 2)].test == (RowRange(0, 3), RowRange(6, 9))
    assert by_groups[(0, 2)].train == (RowRange(4, 5), RowRange(10, 12))
    assert by_groups[(1, 3)].train == (RowRange(0, 2), RowRange(7, 8))
    assert by_groups[(2, 3)].train == (RowRange(0, 5),)


def test_cpcv_train_and_test_never_overlap_and_test_groups_cover_every_row_equally() -> None:
    splits = cpcv_folds(50, n_groups=6, n_test_groups=2, purge_rows=2, embargo_rows=2)
    times_tested = np.zeros(50, dtype=int)
    for s in splits:
        test = np.concatenate([r.indices() for r in s.test])
        train = np.concatenate([r.indices() for r in s.train])
        assert not set(test) & set(train)
        times_tested[test] += 1
    assert set(times_tested) == {cpcv_path_count(6, 2)} == {5}


def test_cpcv_groups_differ_in_size_by_at_most_one_row() -> None:
    splits = cpcv_folds(10, n_groups=4, n_test_groups=1)
    assert [s.test for s in splits] == [
        (RowRange(0, 3),), (RowRange(3, 6),), (RowRange(6, 8),), (RowRange(8, 10),)
    ]


def test_cpcv_refuses_testing_on_every_group() -> None:
    with pytest.raises(ValueError, match="n_test_groups < n_groups"):
        cpcv_folds(10, n_groups=3, n_test_groups=3)
