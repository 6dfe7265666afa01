"""The one definition of every performance number Cappuccino reports.

Validation, the arena, the sandbox, the gates and the monitors all call these functions;
nothing else computes a Sharpe ratio or a drawdown.

Conventions (they hold for every function here):

* Inputs are **fractional per-bar returns** (``0.01`` is +1 %), never dollars, in time order.
  A return below ``-1`` (losing more than everything) is refused, as is any NaN or infinity:
  the error names the index.
* Annualisation uses ``interval.bars_per_year``: crypto trades 24/7, so an hourly series has
  8,760 bars a year.
* The risk-free rate is 0: crypto has no natural risk-free asset and the cash leg of the
  portfolio earns nothing in the backtester, so excess over cash is the return itself.
* A number that is undefined for the given input (Sharpe of a flat series, Sortino without a
  losing bar, Calmar without a drawdown, any statistic of an empty series, ...) is ``None``.
  It is never NaN and never a 0 standing in for "no value".
* All results are plain Python ``float``/``int`` (not numpy scalars), so they serialise as is.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cappuccino_core.data.intervals import Interval

logger = logging.getLogger(__name__)

# A position is flat again when it is this small relative to the largest position of its trip
# (float sums of partial fills such as 0.1 + 0.2 - 0.3 leave ~1e-17, not 0).
_FLAT_RTOL = 1e-9


# --------------------------------------------------------------------------- input checks


def as_returns(returns: Sequence[float] | np.ndarray, name: str = "returns") -> np.ndarray:
    """Return ``returns`` as a 1-D ``float64`` array, refusing what is not a return series.

    Args:
        returns: fractional per-bar returns.
        name: what to call the input in error messages.

    Raises:
        ValueError: not 1-D, a NaN/inf (naming the first index), or a return below -1.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"{name} must be 1-D per-bar returns, got shape {r.shape}")
    bad = np.flatnonzero(~np.isfinite(r))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] is {r[bad[0]]}; returns must be finite")
    below = np.flatnonzero(r < -1.0)
    if below.size:
        raise ValueError(
            f"{name}[{below[0]}] is {r[below[0]]}, below -1 (a loss of more than 100 %)"
        )
    return r


def _as_weights(weights: np.ndarray, name: str) -> np.ndarray:
    """Return weights as ``float64`` ``[T, A]`` (a 1-D input is one asset), refusing NaN/inf."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = w[:, None]
    if w.ndim != 2:
        raise ValueError(f"{name} must be [T, A] weights, got shape {w.shape}")
    bad = np.argwhere(~np.isfinite(w))
    if bad.size:
        t, a = bad[0]
        raise ValueError(f"{name}[{t}, {a}] is {w[t, a]}; weights must be finite")
    return w


# --------------------------------------------------------------------------- return metrics


def total_return(returns: Sequence[float] | np.ndarray) -> float | None:
    """Compound the returns: ``prod(1 + r) - 1``. ``None`` for an empty series."""
    r = as_returns(returns)
    if r.size == 0:
        return None
    return float(np.expm1(np.sum(np.log1p(r)))) if np.all(r > -1.0) else -1.0


def annualised_return(returns: Sequence[float] | np.ndarray, interval: Interval) -> float | None:
    """Annualise geometrically: ``(1 + total) ** (bars_per_year / n) - 1``.

    ``None`` for an empty series, and when the result overflows a float (a very short,
    very profitable series: annualising it says nothing anyway).
    """
    r = as_returns(returns)
    total = total_return(r)
    if total is None:
        return None
    if total == -1.0:
        return -1.0
    exponent = math.log1p(total) * interval.bars_per_year / r.size
    try:
        return math.expm1(exponent)
    except OverflowError:
        logger.debug("annualised return overflows for %d bars of total %.3g", r.size, total)
        return None


def annualised_volatility(returns: Sequence[float] | np.ndarray, interval: Interval) -> float | None:
    """Annualise the sample standard deviation: ``std(r, ddof=1) * sqrt(bars_per_year)``.

    ``None`` with fewer than 2 bars; ``0.0`` for a constant series (a real, zero volatility).
    """
    r = as_returns(returns)
    if r.size < 2:
        return None
    if np.ptp(r) == 0.0:
        return 0.0
    return float(np.std(r, ddof=1) * math.sqrt(interval.bars_per_year))


def per_bar_sharpe(returns: Sequence[float] | np.ndarray) -> float | None:
    """Sharpe ratio per bar, not annualised: ``mean(r) / std(r, ddof=1)``.

    This is the Sharpe the overfitting statistics (PSR, DSR, PBO) use. Arithmetic per-bar
    returns, risk-free rate 0 (see the module docstring). ``None`` with fewer than 2 bars or
    zero volatility (all returns equal, e.g. never trading).
    """
    r = as_returns(returns)
    if r.size < 2 or np.ptp(r) == 0.0:
        return None
    return float(np.mean(r) / np.std(r, ddof=1))


def sharpe(returns: Sequence[float] | np.ndarray, interval: Interval) -> float | None:
    """Annualised Sharpe ratio: ``mean(r) / std(r, ddof=1) * sqrt(bars_per_year)``.

    The per-bar Sharpe (``per_bar_sharpe``) scaled by the square root of time; ``None`` where
    that is undefined (fewer than 2 bars, zero volatility).
    """
    per_bar = per_bar_sharpe(returns)
    return None if per_bar is None else per_bar * math.sqrt(interval.bars_per_year)


def sortino(returns: Sequence[float] | np.ndarray, interval: Interval) -> float | None:
    """Annualised Sortino ratio: ``mean(r) / DD * sqrt(bars_per_year)``.

    The downside deviation ``DD = sqrt(mean(min(r, 0) ** 2))`` is taken over **all** bars
    (target 0; Sortino & Price 1994), not only the losing ones. ``None`` for an empty series
    or one without a losing bar (``DD = 0``).
    """
    r = as_returns(returns)
    if r.size == 0:
        return None
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    if downside == 0.0:
        return None
    return float(np.mean(r) / downside * math.sqrt(interval.bars_per_year))


def drawdown_curve(returns: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return the drawdown after each bar: ``1 - equity / running_peak``, equity starting at 1.

    The starting equity of 1 counts as a peak, so a first losing bar is a drawdown.
    """
    r = as_returns(returns)
    equity = np.cumprod(1.0 + r)
    peak = np.maximum.accumulate(np.concatenate(([1.0], equity)))[1:]
    return 1.0 - equity / peak


def max_drawdown(returns: Sequence[float] | np.ndarray) -> float | None:
    """Largest fall from a peak of the equity curve ``cumprod(1 + r)``, as a positive fraction.

    ``0.0`` if equity never fell below a previous peak, ``1.0`` if it was wiped out, ``None``
    for an empty series.
    """
    dd = drawdown_curve(returns)
    if dd.size == 0:
        return None
    return float(max(np.max(dd), 0.0))


def calmar(returns: Sequence[float] | np.ndarray, interval: Interval) -> float | None:
    """Calmar ratio: ``annualised_return / max_drawdown`` over the whole series.

    ``None`` if either is undefined or the maximum drawdown is 0 (never down).
    """
    ann = annualised_return(returns, interval)
    mdd = max_drawdown(returns)
    if ann is None or mdd is None or mdd == 0.0:
        return None
    return ann / mdd


def win_rate_bars(returns: Sequence[float] | np.ndarray) -> float | None:
    """Fraction of bars with ``r > 0`` among bars with ``r != 0``.

    Bars with exactly zero return (flat, in cash) are neither wins nor losses: counting them as
    losses would punish a strategy for waiting. ``None`` if no bar moved.
    """
    r = as_returns(returns)
    moved = r[r != 0.0]
    if moved.size == 0:
        return None
    return float(np.mean(moved > 0.0))


# --------------------------------------------------------------------------- vs a benchmark


def excess_returns(
    returns: Sequence[float] | np.ndarray, benchmark_returns: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Return the per-bar excess ``r - b`` over a benchmark on the same bars."""
    r = as_returns(returns)
    b = as_returns(benchmark_returns, "benchmark_returns")
    _check_same_bars(r, b)
    return r - b


def alpha(
    returns: Sequence[float] | np.ndarray, benchmark_returns: Sequence[float] | np.ndarray
) -> float | None:
    """Alpha as outperformance: ``total_return(r) - total_return(b)`` over the same bars.

    This is the simple "did we beat holding the benchmark" number the arena ranks on, not a
    regression (CAPM) alpha. ``None`` for an empty series.
    """
    r = as_returns(returns)
    b = as_returns(benchmark_returns, "benchmark_returns")
    _check_same_bars(r, b)
    tr, tb = total_return(r), total_return(b)
    if tr is None or tb is None:
        return None
    return tr - tb


def annualised_alpha(
    returns: Sequence[float] | np.ndarray,
    benchmark_returns: Sequence[float] | np.ndarray,
    interval: Interval,
) -> float | None:
    """Annualised outperformance: ``annualised_return(r) - annualised_return(b)``.

    ``None`` if either annualised return is undefined (empty or overflowing).
    """
    r = as_returns(returns)
    b = as_returns(benchmark_returns, "benchmark_returns")
    _check_same_bars(r, b)
    ar, ab = annualised_return(r, interval), annualised_return(b, interval)
    if ar is None or ab is None:
        return None
    return ar - ab


def _check_same_bars(r: np.ndarray, b: np.ndarray) -> None:
    if r.shape != b.shape:
        raise ValueError(
            f"returns has {r.size} bars but benchmark_returns has {b.size}; they must cover the same bars"
        )


# --------------------------------------------------------------------------- portfolio weights


def turnover_per_bar(weights_before_trade: np.ndarray, weights_after_trade: np.ndarray) -> np.ndarray:
    """Return the one-way turnover of each bar: ``sum_i |w_after - w_before| / 2``.

    Weights are fractions of equity per asset, ``[T, A]`` (or ``[T]`` for one asset);
    ``weights_before_trade`` are the drifted weights just before the bar's rebalance and
    ``weights_after_trade`` the weights just after. The cash weight ``1 - sum(w)`` is included
    in the sum, so moving 50 % of equity from cash into BTC and moving 50 % from BTC into ETH
    both count as 0.5: the fraction of equity that changed hands.
    """
    before = _as_weights(weights_before_trade, "weights_before_trade")
    after = _as_weights(weights_after_trade, "weights_after_trade")
    if before.shape != after.shape:
        raise ValueError(
            f"weights_before_trade has shape {before.shape} but weights_after_trade has {after.shape}"
        )
    delta = after - before
    cash_delta = -delta.sum(axis=1)
    return (np.abs(delta).sum(axis=1) + np.abs(cash_delta)) / 2.0


def turnover(weights_before_trade: np.ndarray, weights_after_trade: np.ndarray) -> float | None:
    """Return the mean one-way turnover per bar (see ``turnover_per_bar``). ``None`` if no bars."""
    per_bar = turnover_per_bar(weights_before_trade, weights_after_trade)
    if per_bar.size == 0:
        return None
    return float(np.mean(per_bar))


def annualised_turnover(
    weights_before_trade: np.ndarray, weights_after_trade: np.ndarray, interval: Interval
) -> float | None:
    """Return the mean per-bar turnover times ``bars_per_year``: equity traded per year.

    A value of 12 means the portfolio was turned over about once a month. ``None`` if no bars.
    """
    mean = turnover(weights_before_trade, weights_after_trade)
    return None if mean is None else mean * interval.bars_per_year


def exposure(weights: np.ndarray) -> float | None:
    """Return the mean gross exposure: ``mean_t sum_i |w[t, i]|``, the fraction of equity invested.

    For a long-only portfolio this is ``1 - mean cash weight``. ``None`` if no bars.
    """
    w = _as_weights(weights, "weights")
    if w.shape[0] == 0:
        return None
    return float(np.mean(np.abs(w).sum(axis=1)))


# --------------------------------------------------------------------------- round trips


@dataclass(frozen=True)
class RoundTrip:
    """One closed round trip in one asset: from flat, through a position, back to flat.

    Attributes:
        asset: the asset label given with the fills (``0`` if none was given).
        side: ``+1`` for a long trip, ``-1`` for a short one.
        open_fill: index (in the input order) of the fill that opened the trip.
        close_fill: index of the fill that closed it.
        entry_notional: ``sum |qty| * price`` over the fills that grew the position.
        pnl: profit in quote currency, fees included: ``sum(-qty * price - fee)`` over the
            trip's fills (the position is flat at both ends, so the cash flows are the P&L).
        fees: fees paid in the trip.
    """

    asset: str | int
    side: int
    open_fill: int
    close_fill: int
    entry_notional: float
    pnl: float
    fees: float

    @property
    def pnl_fraction(self) -> float:
        """P&L as a fraction of the capital put in: ``pnl / entry_notional``."""
        return self.pnl / self.entry_notional


@dataclass
class _OpenTrip:
    side: int
    open_fill: int
    position: float = 0.0
    peak: float = 0.0
    entry_notional: float = 0.0
    cash: float = 0.0
    fees: float = 0.0

    def add(self, qty: float, price: float, fee: float) -> None:
        if np.sign(qty) == self.side:
            self.entry_notional += abs(qty) * price
        self.cash += -qty * price - fee
        self.fees += fee
        self.position += qty
        self.peak = max(self.peak, abs(self.position))

    def is_flat(self) -> bool:
        return abs(self.position) <= _FLAT_RTOL * self.peak

    def close(self, asset: str | int, close_fill: int) -> RoundTrip:
        return RoundTrip(asset, self.side, self.open_fill, close_fill,
                         self.entry_notional, self.cash, self.fees)


def round_trips_from_fills(
    qty: Sequence[float] | np.ndarray,
    price: Sequence[float] | np.ndarray,
    fee: Sequence[float] | np.ndarray,
    *,
    asset: Sequence[str | int] | np.ndarray | None = None,
) -> list[RoundTrip]:
    """Pair fills into closed round trips, per asset, in the order given.

    A trip opens when an asset's position leaves zero and closes when it returns to zero. A fill
    that flips the position through zero (long 1, sell 3) closes the trip with the part that
    reaches zero and opens the opposite trip with the rest; its fee is split pro rata. A
    position still open after the last fill is not a closed trip and is left out.

    Args:
        qty: signed fill quantities in base units (``+`` buy, ``-`` sell), time-ordered.
        price: fill prices in quote currency, ``> 0``.
        fee: fees paid per fill in quote currency (a rebate is negative).
        asset: asset label of each fill; ``None`` means all fills are one asset (label ``0``).

    Returns:
        Closed round trips, ordered by the fill that closed them.

    Raises:
        ValueError: arrays of different lengths, a zero or non-finite quantity, a price that
            is not positive, or a non-finite fee (naming the fill index).
    """
    q, p, f = (np.asarray(x, dtype=np.float64) for x in (qty, price, fee))
    labels = [0] * q.size if asset is None else list(asset)
    if not (q.shape == p.shape == f.shape == (len(labels),)):
        raise ValueError(
            f"qty, price, fee and asset must be 1-D of one length, got {q.shape}, {p.shape}, "
            f"{f.shape} and {len(labels)}"
        )
    _check_fills(q, p, f)
    open_trips: dict[str | int, _OpenTrip] = {}
    closed: list[RoundTrip] = []
    for i, (label, qi, pi, fi) in enumerate(zip(labels, q.tolist(), p.tolist(), f.tolist())):
        trip = open_trips.get(label)
        if trip is None:
            trip = open_trips[label] = _OpenTrip(side=int(np.sign(qi)), open_fill=i)
        if np.sign(qi) != trip.side and abs(qi) > abs(trip.position) * (1.0 + _FLAT_RTOL):
            closing = -trip.position
            share = abs(closing) / abs(qi)
            trip.add(closing, pi, fi * share)
            closed.append(trip.close(label, i))
            trip = open_trips[label] = _OpenTrip(side=int(np.sign(qi)), open_fill=i)
            qi, fi = qi - closing, fi * (1.0 - share)
        trip.add(qi, pi, fi)
        if trip.is_flat():
            closed.append(trip.close(label, i))
            del open_trips[label]
    return closed


def _check_fills(q: np.ndarray, p: np.ndarray, f: np.ndarray) -> None:
    for name, values, bad in (
        ("qty", q, ~np.isfinite(q) | (q == 0.0)),
        ("price", p, ~np.isfinite(p) | ~(p > 0.0)),
        ("fee", f, ~np.isfinite(f)),
    ):
        idx = np.flatnonzero(bad)
        if idx.size:
            raise ValueError(f"fill {idx[0]}: {name} is {values[idx[0]]}, which is not a valid {name}")


def trade_count(round_trips: Sequence[RoundTrip]) -> int:
    """Return the number of closed round trips."""
    return len(round_trips)


def win_rate_trades(round_trips: Sequence[RoundTrip]) -> float | None:
    """Fraction of closed round trips with a positive P&L (fees included). ``None`` if none."""
    if not round_trips:
        return None
    return sum(1 for t in round_trips if t.pnl > 0.0) / len(round_trips)


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class PerformanceReport:
    """Every performance number of one return series, as defined in this module.

    A field is ``None`` when the number is undefined for the series, or when the input it needs
    (benchmark, weights, round trips) was not given to ``compute_performance``.
    """

    bars: int
    interval: Interval
    total_return: float | None
    annualised_return: float | None
    annualised_volatility: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float | None
    calmar: float | None
    win_rate_bars: float | None
    benchmark_total_return: float | None
    alpha: float | None
    annualised_alpha: float | None
    trade_count: int | None
    win_rate_trades: float | None
    turnover: float | None
    annualised_turnover: float | None
    exposure: float | None

    def to_dict(self) -> dict[str, float | int | str | None]:
        """Return the report as a flat dict with stable keys (``"sharpe"``, ...); ``None`` kept.

        Callers add their own namespace (``val/``, ``arena/``, ``live/``) when logging.
        """
        out: dict[str, float | int | str | None] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.value if isinstance(value, Interval) else value
        return out


def compute_performance(
    returns: Sequence[float] | np.ndarray,
    benchmark_returns: Sequence[float] | np.ndarray | None,
    interval: Interval,
    *,
    weights: np.ndarray | None = None,
    weights_before_trade: np.ndarray | None = None,
    round_trips: Sequence[RoundTrip] | None = None,
) -> PerformanceReport:
    """Compute every metric of a return series into one ``PerformanceReport``.

    Args:
        returns: fractional per-bar portfolio returns, net of fees.
        benchmark_returns: per-bar returns of the benchmark over the same bars (e.g. equal-weight
            buy and hold), or ``None`` (alpha fields are then ``None``).
        interval: bar interval, for annualisation.
        weights: post-trade weights ``[T, A]`` held over each bar (exposure; turnover with
            ``weights_before_trade``).
        weights_before_trade: drifted pre-trade weights ``[T, A]`` of each bar (turnover).
        round_trips: closed round trips (``round_trips_from_fills``) for the trade statistics.

    Raises:
        ValueError: inputs that are not returns/weights, or that cover different bars.
    """
    r = as_returns(returns)
    b = None if benchmark_returns is None else as_returns(benchmark_returns, "benchmark_returns")
    if b is not None:
        _check_same_bars(r, b)
    for name, w in (("weights", weights), ("weights_before_trade", weights_before_trade)):
        if w is not None and np.shape(w)[0] != r.size:
            raise ValueError(f"{name} has {np.shape(w)[0]} rows but returns has {r.size} bars")
    if weights_before_trade is not None and weights is None:
        raise ValueError("weights_before_trade needs weights (the post-trade weights) too")
    has_turnover = weights is not None and weights_before_trade is not None
    return PerformanceReport(
        bars=int(r.size),
        interval=interval,
        total_return=total_return(r),
        annualised_return=annualised_return(r, interval),
        annualised_volatility=annualised_volatility(r, interval),
        sharpe=sharpe(r, interval),
        sortino=sortino(r, interval),
        max_drawdown=max_drawdown(r),
        calmar=calmar(r, interval),
        win_rate_bars=win_rate_bars(r),
        benchmark_total_return=None if b is None else total_return(b),
        alpha=None if b is None else alpha(r, b),
        annualised_alpha=None if b is None else annualised_alpha(r, b, interval),
        trade_count=None if round_trips is None else trade_count(round_trips),
        win_rate_trades=None if round_trips is None else win_rate_trades(round_trips),
        turnover=turnover(weights_before_trade, weights) if has_turnover else None,
        annualised_turnover=(
            annualised_turnover(weights_before_trade, weights, interval) if has_turnover else None
        ),
        exposure=None if weights is None else exposure(weights),
    )
