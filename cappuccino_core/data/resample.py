"""Resampling: aggregate bars of one interval into bars of a longer interval.

Buckets are aligned to the Unix epoch in UTC: a bucket of ``target`` seconds starts at
every multiple of ``target.seconds`` since 1970-01-01T00:00Z, so ``1d`` buckets start at
00:00 UTC and ``4h`` buckets at 00:00, 04:00, ..., 20:00 UTC. A bucket's timestamp is its
open time, like every bar.

Aggregation per bucket: ``open`` of the first bar, ``high`` max, ``low`` min, ``close`` of
the last bar, ``volume`` and ``trade_count`` summed, ``vwap`` volume-weighted
(``sum(vwap * volume) / sum(volume)``). ``trade_count`` of a bucket is null when any
constituent's is null, and ``vwap`` is null when any constituent's is null or the bucket
traded no volume (it is undefined then, not zero).

Completeness: a bucket is kept only when every one of its ``target / source`` constituent
bars is present. The trailing bucket that is still forming is therefore dropped, and so is
any **interior** bucket that contains a gap: no bar is ever made from partial data.
"""

from __future__ import annotations

import logging

import polars as pl

from cappuccino_core.data.bars import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, TIMESTAMP_DTYPE
from cappuccino_core.data.errors import BarDataError
from cappuccino_core.data.intervals import Interval

logger = logging.getLogger(__name__)


def resample_bars(bars: pl.DataFrame, *, source: Interval, target: Interval) -> pl.DataFrame:
    """Aggregate ``bars`` of interval ``source`` into complete epoch-aligned ``target`` bars.

    Args:
        bars: a bar table (see ``cappuccino_core.data.bars``) at interval ``source``.
        source: the interval of ``bars``.
        target: the interval to build; a whole multiple of ``source``.

    Returns:
        A bar table with the columns of ``bars`` (optional columns only if present),
        one row per complete bucket, sorted by timestamp.

    Raises:
        ValueError: ``target`` is not a whole multiple of ``source``.
        BarDataError: ``bars`` lacks a required column, has unsorted or duplicate
            timestamps, or a timestamp off the ``source`` grid.
    """
    if target.seconds % source.seconds != 0:
        raise ValueError(
            f"cannot resample {source.value} bars to {target.value}: "
            f"{target.value} is not a whole multiple of {source.value}"
        )
    where = f"resample {source.value}->{target.value}"
    _check_input(bars, source, where)
    if target == source:
        return bars.clone()
    per_bucket = target.seconds // source.seconds
    bucket_us = target.seconds * 1_000_000
    optional = [c for c in OPTIONAL_COLUMNS if c in bars.columns]

    aggregations = [
        pl.len().alias("_n"),
        pl.col("open").first(),
        pl.col("high").max(),
        pl.col("low").min(),
        pl.col("close").last(),
        pl.col("volume").sum(),
    ]
    if "trade_count" in optional:
        aggregations.append(
            pl.when(pl.col("trade_count").null_count() > 0)
            .then(None)
            .otherwise(pl.col("trade_count").sum())
            .alias("trade_count")
        )
    if "vwap" in optional:
        weighted = (pl.col("vwap") * pl.col("volume")).sum() / pl.col("volume").sum()
        aggregations.append(
            pl.when((pl.col("vwap").null_count() > 0) | (pl.col("volume").sum() <= 0))
            .then(None)
            .otherwise(weighted)
            .alias("vwap")
        )

    bucket = (pl.col("timestamp").dt.epoch("us") // bucket_us) * bucket_us
    out = (
        bars.with_columns(bucket.alias("_bucket"))
        .group_by("_bucket", maintain_order=True)
        .agg(aggregations)
    )
    incomplete = out.filter(pl.col("_n") != per_bucket)
    if incomplete.height:
        logger.debug("%s: dropped %d incomplete bucket(s)", where, incomplete.height)
    timestamp = pl.from_epoch(pl.col("_bucket"), time_unit="us").dt.replace_time_zone("UTC")
    return (
        out.filter(pl.col("_n") == per_bucket)
        .with_columns(timestamp.cast(TIMESTAMP_DTYPE).alias("timestamp"))
        .select(["timestamp", *REQUIRED_COLUMNS[1:], *optional])
    )


def _check_input(bars: pl.DataFrame, source: Interval, where: str) -> None:
    """Raise ``BarDataError`` unless ``bars`` is a sorted, unique bar table on the ``source`` grid."""
    missing = [c for c in REQUIRED_COLUMNS if c not in bars.columns]
    if missing:
        raise BarDataError(where, f"missing column(s) {missing}")
    dtype = bars.schema["timestamp"]
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone != "UTC":
        raise BarDataError(where, f"timestamp must be a UTC datetime, got {dtype}")
    if bars.height == 0:
        return
    ts = bars.get_column("timestamp").cast(TIMESTAMP_DTYPE).dt.epoch("us")
    steps = ts.diff().drop_nulls()
    if (steps <= 0).any():
        row = int((steps <= 0).arg_true()[0]) + 1
        raise BarDataError(where, f"timestamps not strictly increasing at row {row} ({bars['timestamp'][row]})")
    off_grid = (ts % (source.seconds * 1_000_000)) != 0
    if off_grid.any():
        row = int(off_grid.arg_true()[0])
        raise BarDataError(
            where, f"row {row} timestamp {bars['timestamp'][row]} is not on the {source.value} grid"
        )
