"""Time splits of history: search | arena holdout | replay, walk-forward folds and CPCV.

Every split here is in time order and expressed as half-open row ranges ``[start, stop)`` of
a bar table or ``MarketPanel``. Training rows never overlap validation rows, and the rows
whose labels could leak across the boundary are removed from training:

* **purge**: the ``purge_rows`` rows just *before* a validation block (their rewards and
  features look into the block: a trade opened at row ``t`` is valued at ``t + 1`` ... );
* **embargo**: the ``embargo_rows`` rows just *after* a validation block (serial correlation
  carries the block's information forward; López de Prado, *Advances in Financial Machine
  Learning*, 2018, ch. 7).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import numpy as np

from cappuccino_core.data.intervals import Interval


@dataclass(frozen=True)
class RowRange:
    """Rows ``[start, stop)`` of a table."""

    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def indices(self) -> np.ndarray:
        """Return the row indices ``start, ..., stop - 1``."""
        return np.arange(self.start, self.stop, dtype=np.int64)


@dataclass(frozen=True)
class Period:
    """A contiguous period of history, as rows and as a UTC time window.

    Attributes:
        rows: rows ``[start, stop)``.
        start: open time of the first bar (UTC).
        end: open time of the last bar plus one interval (UTC), so the bars are exactly
            those with ``start <= open time < end``.
    """

    rows: RowRange
    start: datetime
    end: datetime


@dataclass(frozen=True)
class TimeSplit:
    """History cut into the search period, the arena holdout and an optional replay period.

    The search (training, validation and Optuna) sees only ``search``; the arena judges on
    ``holdout``, which no search ever saw; ``replay`` (the most recent bars) is kept back for a
    replayed sandbox run. In time order: search, holdout, replay.
    """

    search: Period
    holdout: Period
    replay: Period | None


def split_history(
    timestamps: np.ndarray,
    *,
    interval: Interval,
    holdout_bars: int,
    replay_bars: int = 0,
    min_search_bars: int = 1,
) -> TimeSplit:
    """Cut history into search | holdout | replay, keeping the most recent bars for the latter two.

    Args:
        timestamps: bar open times, strictly increasing: ``int64`` nanoseconds since the epoch
            (UTC, as in ``MarketPanel``) or ``datetime64``.
        interval: bar interval (for the end of each period's time window).
        holdout_bars: bars in the arena holdout, ``>= 1``.
        replay_bars: bars in the replay period after the holdout, ``>= 0`` (0: no replay).
        min_search_bars: the least number of bars the search period may have.

    Raises:
        ValueError: timestamps not 1-D or not strictly increasing (naming the row), bad bar
            counts, or a history too short to leave ``min_search_bars`` for the search.
    """
    ns = _as_epoch_ns(timestamps)
    if holdout_bars < 1 or replay_bars < 0 or min_search_bars < 1:
        raise ValueError(
            f"need holdout_bars >= 1, replay_bars >= 0, min_search_bars >= 1; got "
            f"{holdout_bars}, {replay_bars}, {min_search_bars}"
        )
    n = ns.size
    search_stop = n - holdout_bars - replay_bars
    if search_stop < min_search_bars:
        raise ValueError(
            f"history of {n} bars is too short: {holdout_bars} holdout + {replay_bars} replay "
            f"bars leave {max(search_stop, 0)} for the search, need at least {min_search_bars}"
        )
    holdout_stop = search_stop + holdout_bars

    def period(start: int, stop: int) -> Period:
        end = _ns_to_datetime(int(ns[stop - 1])) + timedelta(seconds=interval.seconds)
        return Period(RowRange(start, stop), _ns_to_datetime(int(ns[start])), end)

    return TimeSplit(
        search=period(0, search_stop),
        holdout=period(search_stop, holdout_stop),
        replay=period(holdout_stop, n) if replay_bars else None,
    )


def _as_epoch_ns(timestamps: np.ndarray) -> np.ndarray:
    ts = np.asarray(timestamps)
    if ts.ndim != 1:
        raise ValueError(f"timestamps must be 1-D, got shape {ts.shape}")
    if np.issubdtype(ts.dtype, np.datetime64):
        ns = ts.astype("datetime64[ns]").astype(np.int64)
    elif np.issubdtype(ts.dtype, np.integer):
        ns = ts.astype(np.int64)
    else:
        raise ValueError(f"timestamps must be int64 epoch nanoseconds or datetime64, got {ts.dtype}")
    not_rising = np.flatnonzero(np.diff(ns) <= 0)
    if not_rising.size:
        row = int(not_rising[0]) + 1
        raise ValueError(
            f"timestamps must be strictly increasing: row {row} ({_ns_to_datetime(int(ns[row]))}) "
            f"does not come after row {row - 1} ({_ns_to_datetime(int(ns[row - 1]))})"
        )
    return ns


def _ns_to_datetime(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


# --------------------------------------------------------------------------- walk-forward


class WindowMode(StrEnum):
    """How the training window moves from fold to fold."""

    EXPANDING = "expanding"  # anchored at row 0, grows with every fold
    ROLLING = "rolling"  # fixed length, slides forward with the validation block


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: train on ``train``, validate on the later ``validation``."""

    train: RowRange
    validation: RowRange


def walk_forward_folds(
    n_rows: int,
    *,
    n_folds: int,
    train_min_rows: int,
    purge_rows: int = 0,
    embargo_rows: int = 0,
    mode: WindowMode = WindowMode.EXPANDING,
) -> list[Fold]:
    """Cut ``n_rows`` into walk-forward folds: train on the past, validate on the next block.

    The validation blocks are ``n_folds`` equal, consecutive blocks that end at the last row.
    They start after the first training window plus the purge; rows that do not divide evenly
    go to the first training window (so ``train_min_rows`` is a minimum). Each fold trains on
    the rows before its validation block less the ``purge_rows`` rows just before it:

    * ``EXPANDING``: train ``[0, validation.start - purge_rows)``;
    * ``ROLLING``: the last ``train_min_rows`` of those rows.

    ``embargo_rows`` removes the rows just after each validation block from training. Walk-forward
    training only ever uses rows before its own validation block, so the embargo cannot bite
    here; it is accepted so the same settings drive ``walk_forward_folds`` and ``cpcv_folds``.

    Raises:
        ValueError: non-positive counts, or too few rows for one validation row per fold.
    """
    if n_folds < 1 or train_min_rows < 1 or purge_rows < 0 or embargo_rows < 0:
        raise ValueError(
            f"need n_folds >= 1, train_min_rows >= 1, purge_rows >= 0, embargo_rows >= 0; got "
            f"{n_folds}, {train_min_rows}, {purge_rows}, {embargo_rows}"
        )
    available = n_rows - train_min_rows - purge_rows
    block = available // n_folds
    if block < 1:
        raise ValueError(
            f"{n_rows} rows cannot hold {train_min_rows} training + {purge_rows} purge rows and "
            f"{n_folds} validation blocks of at least one row"
        )
    first_start = n_rows - n_folds * block
    folds = []
    for k in range(n_folds):
        v_start = first_start + k * block
        t_stop = v_start - purge_rows
        t_start = 0 if mode == WindowMode.EXPANDING else t_stop - train_min_rows
        folds.append(Fold(RowRange(t_start, t_stop), RowRange(v_start, v_start + block)))
    return folds


# --------------------------------------------------------------------------- CPCV


@dataclass(frozen=True)
class CPCVSplit:
    """One split of combinatorial purged cross-validation.

    Attributes:
        test_groups: indices of the groups held out for testing, ascending.
        test: the test rows, adjacent groups merged, in time order.
        train: the remaining rows less purge and embargo, in time order.
    """

    test_groups: tuple[int, ...]
    test: tuple[RowRange, ...]
    train: tuple[RowRange, ...]


def cpcv_folds(
    n_rows: int,
    *,
    n_groups: int,
    n_test_groups: int,
    purge_rows: int = 0,
    embargo_rows: int = 0,
) -> list[CPCVSplit]:
    """Build every combinatorial purged CV split (López de Prado 2018, ch. 12).

    Rows are cut into ``n_groups`` contiguous groups (sizes differ by at most one, larger ones
    first). Each of the ``C(n_groups, n_test_groups)`` splits tests on ``n_test_groups`` groups
    and trains on the rest, less ``purge_rows`` rows before and ``embargo_rows`` rows after each
    contiguous test block. The splits yield ``C(n_groups, n_test_groups) * n_test_groups /
    n_groups`` complete backtest paths.

    Raises:
        ValueError: ``n_test_groups`` not in ``[1, n_groups)``, more groups than rows, or
            negative purge/embargo.
    """
    if not 1 <= n_test_groups < n_groups or n_groups > n_rows or purge_rows < 0 or embargo_rows < 0:
        raise ValueError(
            f"need 1 <= n_test_groups < n_groups <= n_rows and purge/embargo >= 0; got "
            f"n_rows={n_rows}, n_groups={n_groups}, n_test_groups={n_test_groups}, "
            f"purge_rows={purge_rows}, embargo_rows={embargo_rows}"
        )
    bounds = [int(b[0]) for b in np.array_split(np.arange(n_rows), n_groups)] + [n_rows]
    groups = [RowRange(bounds[g], bounds[g + 1]) for g in range(n_groups)]
    splits = []
    for chosen in itertools.combinations(range(n_groups), n_test_groups):
        test = _merge([groups[g] for g in chosen])
        in_train = np.ones(n_rows, dtype=bool)
        for block in test:
            in_train[max(block.start - purge_rows, 0) : min(block.stop + embargo_rows, n_rows)] = False
        splits.append(CPCVSplit(tuple(chosen), test, _ranges_of(in_train)))
    return splits


def cpcv_path_count(n_groups: int, n_test_groups: int) -> int:
    """Return the number of backtest paths CPCV yields: ``C(N, k) * k / N``."""
    return math.comb(n_groups, n_test_groups) * n_test_groups // n_groups


def _merge(ranges: list[RowRange]) -> tuple[RowRange, ...]:
    merged: list[RowRange] = []
    for r in ranges:
        if merged and merged[-1].stop == r.start:
            merged[-1] = RowRange(merged[-1].start, r.stop)
        else:
            merged.append(r)
    return tuple(merged)


def _ranges_of(mask: np.ndarray) -> tuple[RowRange, ...]:
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return tuple(RowRange(int(a), int(b)) for a, b in zip(starts, stops))
