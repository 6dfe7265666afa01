"""The synthetic market: a seeded, deterministic multi-asset crypto-like bar source.

This is the product's embedded default data source (no network, no keys) and the
ground truth for planted-signal tests. The path is a pure function of
``(config, bar index since config.origin)``: every random draw comes from a stream keyed
by ``(seed, component, block of 4096 bars)``, so generating more bars never changes the
earlier ones, and overlapping ``fetch`` windows agree bar for bar.

The model, per bar ``t`` of the base interval and asset ``i`` (per-bar vol
``s_i = annual_vol_i / sqrt(bars_per_year)``):

* **Market regimes** ``R_t`` in (bull, sideways, bear): a Markov chain that leaves its
  state with probability ``1 / regime_mean_bars`` per bar, to one of the other two states
  uniformly. Each regime scales the market factor's volatility (``regime_vol``, rescaled so
  the average variance over the three equally likely regimes is 1).
* **Common factor and idiosyncratic shocks**: ``m_t = g(R_t) sqrt(hm_t) zm_t`` and
  ``e_it = sqrt(hi_t) zi_t`` with ``z`` Student-t(``student_dof``) scaled to unit variance
  and clipped at ``innovation_clip``, and ``h`` GARCH(1,1) variances
  ``h_t = (1 - a - b) + a h_{t-1} z_{t-1}^2 + b h_{t-1}`` (unit long-run variance).
  The shock is ``eps_it = s_i (sqrt(market_share) m_t + sqrt(1 - market_share) e_it)``,
  so pairwise correlations are about ``market_share``. ``sigma_it`` is its conditional sd.
* **Log return** ``r_it = mu_it + eps_it - sigma_it^2 / 2``: the ``-sigma^2/2`` term makes
  the price a martingale when ``mu = 0`` (no free drift for buy-and-hold).
* **The plant** (``mu``), proportional to ``plant_strength``:

  - per-asset hidden **trend states** ``T_it`` in (up, flat, down) = (+1, 0, -1), each an
    independent Markov chain like the regimes with mean stay ``plant_mean_bars`` bars,
    adding ``plant_strength * plant_drift * T_it * sigma_it`` to the log return;
  - the market regime adds ``plant_strength * regime_drift * D(R_t) * s_i * sqrt(market_share)``
    with ``D`` = +1 (bull), 0 (sideways), -1 (bear).

  Both are zero-mean over their stationary distributions, so the unconditional drift is
  zero; but they persist, so trailing returns (and MACD, RSI, ...) reveal them. With the
  defaults, ``plant_strength = 1.0`` gives a per-bar Sharpe of 0.25 inside a trend that
  lasts 48 bars on average: a 20-bar trend rule (hold an asset while its trailing 20-bar
  return is positive) beats equal-weight buy-and-hold after 0.25 % fees per side by about
  3.4 in log wealth over two years of 1h bars (mean of 5 seeds; see
  ``tests/data/test_synthetic_market.py``). At 0.5 the trend is still detectable fee-free
  but that naive rule loses to its fees; at 0.25 it is hard to detect at all.
  With ``plant_strength = 0`` the log-price is a martingale-corrected random walk with
  stochastic volatility: regimes then change volatility and volume only, and expected
  returns cannot be predicted from the past.
* **Bars**: ``open_t = close_{t-1} * exp(open_jitter * sigma_it * N(0, 1))`` (the first
  trade prints near the previous close); ``high``/``low`` are drawn as the maximum and
  minimum of a Brownian bridge from open to close with the bar's conditional variance (then
  bounded by open and close, so ``high >= max(open, close)`` and ``low <= min(open, close)``);
  ``volume`` (base-asset units) is a per-asset dollar volume times
  ``(sigma_it / s_i) ** volume_vol_elasticity * exp(volume_shock_weight * |eps_it| / sigma_it
  + volume_noise * N(0, 1))``, divided by the close; ``trade_count`` is dollar volume over
  a fixed $2,000 average trade; ``vwap`` is the typical price ``(high + low + close) / 3``.

* **Levels**: each asset's prices are scaled by one constant so that the close of the bar at
  ``level_anchor`` (default 2026-06-01) is the asset's level (BTC 60,000, ETH 3,000, ... USD);
  returns do not depend on it. Only the assets of the built-in table exist: any other symbol
  is refused, never invented.

``fetch`` serves the base interval and any longer ``Interval`` that is a whole multiple of
it, by resampling the base bars (``data.resample``: epoch-aligned buckets, incomplete ones
dropped). The market starts at ``origin``: a window before it returns only the bars from
``origin`` on (possibly none).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import numpy as np
import polars as pl

from cappuccino_core.data.bars import BAR_SCHEMA, TIMESTAMP_DTYPE
from cappuccino_core.data.errors import SourceRefused
from cappuccino_core.data.intervals import Interval
from cappuccino_core.data.resample import resample_bars
from cappuccino_core.data.symbols import base_asset, parse_symbol

logger = logging.getLogger(__name__)

DEFAULT_SYMBOLS: tuple[str, ...] = (
    "BTC/USD", "ETH/USD", "LTC/USD", "BCH/USD", "LINK/USD", "UNI/USD", "AAVE/USD",
)

# Per base asset: price at the level anchor (USD), annualised volatility, dollar volume per hour.
_ASSET_TABLE: dict[str, tuple[float, float, float]] = {
    "BTC": (60_000.0, 0.65, 40e6),
    "ETH": (3_000.0, 0.80, 20e6),
    "LTC": (80.0, 0.90, 1.5e6),
    "BCH": (350.0, 0.90, 1.0e6),
    "LINK": (15.0, 1.00, 1.7e6),
    "UNI": (8.0, 1.05, 0.8e6),
    "AAVE": (150.0, 1.10, 0.8e6),
}
SYNTHETIC_ASSETS: tuple[str, ...] = tuple(_ASSET_TABLE)
"""Base assets the synthetic market models; any other is refused (it would be invented)."""
_AVERAGE_TRADE_USD = 2_000.0
_BLOCK_BARS = 4096  # random streams are keyed per block of this many bars
MAX_BARS = 20_000_000  # refuse to generate more (a window far in the future is a mistake)


class MarketRegime(StrEnum):
    """The hidden market regime; its position in ``MARKET_REGIMES`` is the state index."""

    BULL = "bull"
    SIDEWAYS = "sideways"
    BEAR = "bear"


MARKET_REGIMES: tuple[MarketRegime, ...] = (MarketRegime.BULL, MarketRegime.SIDEWAYS, MarketRegime.BEAR)
_REGIME_DIRECTION = np.array([1.0, 0.0, -1.0])  # drift sign of bull, sideways, bear
_TREND_DIRECTION = np.array([1.0, 0.0, -1.0])  # drift sign of trend states up, flat, down


@dataclass(frozen=True)
class SyntheticMarketConfig:
    """Everything that determines a synthetic market path (same config, same bars).

    Attributes:
        seed: seed of every random stream.
        symbols: canonical ``BASE/QUOTE`` symbols, in column order.
        interval: base bar interval the path is simulated at.
        origin: UTC open time of bar 0; must lie on the ``interval`` grid since the epoch.
        plant_strength: scale of the predictable drift; 0.0 = no exploitable edge, 1.0 = clear edge.
        market_share: fraction of each asset's variance due to the common market factor.
        garch_alpha: GARCH(1,1) reaction to the last squared shock.
        garch_beta: GARCH(1,1) persistence of the last variance; alpha + beta < 1.
        student_dof: degrees of freedom of the Student-t innovations (> 2; lower = fatter tails).
        innovation_clip: standardised innovations are clipped to +-this many sds.
        regime_mean_bars: mean number of bars the market stays in one regime.
        regime_vol: relative market-factor volatility in bull, sideways, bear.
        regime_drift: bull/bear market drift per bar, in market per-bar sds, at plant_strength 1.
        plant_mean_bars: mean number of bars an asset's hidden trend state lasts.
        plant_drift: trend drift per bar, in the asset's conditional sds, at plant_strength 1.
        volume_vol_elasticity: exponent of volume on the asset's relative conditional volatility.
        volume_shock_weight: weight of the bar's absolute standardised shock in log volume.
        volume_noise: sd of the independent noise in log volume.
        open_jitter: sd of log(open / previous close), in the bar's conditional sds.
        annual_vols: per-symbol annualised volatility; None = built-in table by base asset.
        price_levels: per-symbol close at ``level_anchor``; None = built-in table by base asset.
        level_anchor: the bar whose close is ``price_levels`` (the first bar opening at or after
            it); None or a time before ``origin``: ``price_levels`` is the price before bar 0.
            Only a constant factor per asset: returns do not depend on it.
    """

    seed: int = 0
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    interval: Interval = Interval.H1
    origin: datetime = datetime(2022, 1, 1, tzinfo=UTC)
    plant_strength: float = 0.0
    market_share: float = 0.65
    garch_alpha: float = 0.06
    garch_beta: float = 0.92
    student_dof: float = 4.0
    innovation_clip: float = 12.0
    regime_mean_bars: float = 720.0
    regime_vol: tuple[float, float, float] = (0.8, 0.7, 1.4)
    regime_drift: float = 0.02
    plant_mean_bars: float = 48.0
    plant_drift: float = 0.25
    volume_vol_elasticity: float = 1.0
    volume_shock_weight: float = 0.5
    volume_noise: float = 0.6
    open_jitter: float = 0.05
    annual_vols: tuple[float, ...] | None = None
    price_levels: tuple[float, ...] | None = None
    level_anchor: datetime | None = datetime(2026, 6, 1, tzinfo=UTC)

    def __post_init__(self) -> None:
        problems = _config_problems(self)
        if problems:
            raise ValueError("invalid SyntheticMarketConfig: " + "; ".join(problems))

    def asset_vols(self) -> np.ndarray:
        """Return the annualised volatility of each symbol, ``[A]``."""
        if self.annual_vols is not None:
            return np.asarray(self.annual_vols, dtype=np.float64)
        return np.array([_ASSET_TABLE[base_asset(s)][1] for s in self.symbols])

    def asset_levels(self) -> np.ndarray:
        """Return each symbol's close at the level anchor, ``[A]``."""
        if self.price_levels is not None:
            return np.asarray(self.price_levels, dtype=np.float64)
        return np.array([_ASSET_TABLE[base_asset(s)][0] for s in self.symbols])

    def anchor_bar(self) -> int | None:
        """Return the index of the bar whose close is the price level (``None``: levels are the price before bar 0)."""
        if self.level_anchor is None or self.level_anchor <= self.origin:
            return None
        step_us = self.interval.seconds * 1_000_000
        return -(-(_epoch_us(self.level_anchor) - _epoch_us(self.origin)) // step_us)


def _config_problems(c: SyntheticMarketConfig) -> list[str]:
    """Return what is wrong with ``c`` (empty when nothing is)."""
    problems = []
    if not c.symbols:
        problems.append("symbols is empty")
    for s in c.symbols:
        try:
            canonical = parse_symbol(s)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if canonical != s:
            problems.append(f"symbol {s!r} is not canonical (use {canonical!r})")
        elif base_asset(s) not in _ASSET_TABLE:
            problems.append(f"the synthetic market has no {base_asset(s)} ({s}); it models {', '.join(SYNTHETIC_ASSETS)}")
    if len(set(c.symbols)) != len(c.symbols):
        problems.append(f"duplicate symbols in {c.symbols}")
    if not isinstance(c.interval, Interval):
        problems.append(f"interval {c.interval!r} is not an Interval")
    elif c.origin.tzinfo is None or c.origin.utcoffset() != timedelta(0):
        problems.append(f"origin {c.origin} is not UTC-aware")
    elif _epoch_us(c.origin) % (c.interval.seconds * 1_000_000) != 0:
        problems.append(f"origin {c.origin} is not on the {c.interval.value} grid")
    elif c.level_anchor is not None and (c.level_anchor.tzinfo is None or c.level_anchor.utcoffset() != timedelta(0)):
        problems.append(f"level_anchor {c.level_anchor} is not UTC-aware")
    elif (c.anchor_bar() or 0) >= MAX_BARS:
        problems.append(f"level_anchor {c.level_anchor} is more than {MAX_BARS} bars after origin")
    if not c.plant_strength >= 0.0:
        problems.append(f"plant_strength {c.plant_strength} < 0")
    if not 0.0 <= c.market_share <= 1.0:
        problems.append(f"market_share {c.market_share} outside [0, 1]")
    if not (c.garch_alpha >= 0 and c.garch_beta >= 0 and c.garch_alpha + c.garch_beta < 1):
        problems.append(f"GARCH alpha {c.garch_alpha}, beta {c.garch_beta}: need >= 0 and sum < 1")
    if not c.student_dof > 2:
        problems.append(f"student_dof {c.student_dof} <= 2 (variance undefined)")
    if not c.open_jitter >= 0:
        problems.append(f"open_jitter {c.open_jitter} < 0")
    if not c.innovation_clip > 0:
        problems.append(f"innovation_clip {c.innovation_clip} <= 0")
    if not (c.regime_mean_bars >= 1 and c.plant_mean_bars >= 1):
        problems.append("regime_mean_bars and plant_mean_bars must be >= 1")
    if len(c.regime_vol) != 3 or min(c.regime_vol) <= 0:
        problems.append(f"regime_vol {c.regime_vol} must be 3 positive numbers")
    for name in ("annual_vols", "price_levels"):
        values = getattr(c, name)
        if values is not None and (len(values) != len(c.symbols) or min(values) <= 0):
            problems.append(f"{name} must hold one positive number per symbol")
    return problems


@dataclass(frozen=True, eq=False)
class SyntheticPath:
    """The first ``num_bars`` base bars of a synthetic market, with its hidden states.

    Attributes:
        open, high, low, close, volume, trade_count, vwap: ``float64`` ``[T, A]``.
        sigma: conditional per-bar sd of each asset's log return, ``[T, A]``.
        market_regime: index into ``MARKET_REGIMES`` per bar, ``int8`` ``[T]``.
        trend_state: hidden trend of each asset: +1 up, 0 flat, -1 down, ``int8`` ``[T, A]``.
    """

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trade_count: np.ndarray
    vwap: np.ndarray
    sigma: np.ndarray
    market_regime: np.ndarray
    trend_state: np.ndarray

    @property
    def num_bars(self) -> int:
        """Number of bars ``T``."""
        return int(self.close.shape[0])


def simulate_market(config: SyntheticMarketConfig, num_bars: int) -> SyntheticPath:
    """Simulate bars ``0 .. num_bars - 1`` of the market ``config`` describes.

    Bars are a pure function of ``(config, bar index)``: the first ``n`` bars of a longer
    simulation equal a simulation of ``n`` bars.
    """
    if not 1 <= num_bars <= MAX_BARS:
        raise ValueError(f"num_bars {num_bars} outside [1, {MAX_BARS}]")
    anchor = config.anchor_bar()
    # Simulated through the anchor bar whatever is asked, so the level factor is the same for every length.
    n, a = max(num_bars, 1 + (anchor or 0)), len(config.symbols)
    share = config.market_share
    bar_vol = config.asset_vols() / math.sqrt(config.interval.bars_per_year)  # s_i

    regime = _markov_states(config.seed, 0, n, 1, config.regime_mean_bars)[:, 0]
    regime_scale = np.asarray(config.regime_vol) / math.sqrt(np.mean(np.square(config.regime_vol)))
    z = _student_t(config, 2, n, a + 1)  # column 0: market factor, 1..a: idiosyncratic
    h = _garch_variance(z, config.garch_alpha, config.garch_beta)
    market_sd = regime_scale[regime] * np.sqrt(h[:, 0])  # sd of m_t
    sys_sd = math.sqrt(share) * bar_vol[None, :] * market_sd[:, None]
    idio_sd = math.sqrt(1.0 - share) * bar_vol[None, :] * np.sqrt(h[:, 1:])
    sigma = np.sqrt(sys_sd**2 + idio_sd**2)
    eps = sys_sd * z[:, :1] + idio_sd * z[:, 1:]

    trend = _TREND_DIRECTION[_markov_states(config.seed, 1, n, a, config.plant_mean_bars)]
    drift = config.plant_strength * (
        config.plant_drift * trend * sigma
        + config.regime_drift * _REGIME_DIRECTION[regime][:, None] * math.sqrt(share) * bar_vol[None, :]
    )
    log_ret = drift + eps - 0.5 * sigma**2

    # The level anchor: one constant factor per asset puts the anchor bar's close at the asset's
    # level (returns are untouched; without an anchor the level is the price before bar 0).
    growth = np.exp(np.cumsum(log_ret, axis=0))
    levels = config.asset_levels() / (1.0 if anchor is None else growth[anchor])
    close = levels[None, :] * growth
    # The first trade of a bar prints near, not exactly at, the previous close.
    gap = config.open_jitter * sigma * _normal(config.seed, 6, n, a)
    open_ = np.vstack([levels[None, :], close[:-1]]) * np.exp(gap)
    high, low = _bridge_extremes(config.seed, open_, close, log_ret - gap, sigma)

    hours = config.interval.seconds / 3600.0
    dollar_per_bar = np.array([_ASSET_TABLE[base_asset(s)][2] for s in config.symbols]) * hours
    noise = _normal(config.seed, 5, n, a)
    log_activity = (
        config.volume_vol_elasticity * np.log(sigma / bar_vol[None, :])
        + config.volume_shock_weight * np.abs(eps) / sigma
        + config.volume_noise * noise
    )
    dollar_volume = dollar_per_bar[None, :] * np.exp(log_activity)
    k = slice(0, num_bars)
    return SyntheticPath(
        open=open_[k],
        high=high[k],
        low=low[k],
        close=close[k],
        volume=(dollar_volume / close)[k],
        trade_count=np.maximum(1.0, np.round(dollar_volume / _AVERAGE_TRADE_USD))[k],
        vwap=((high + low + close) / 3.0)[k],
        sigma=sigma[k],
        market_regime=regime.astype(np.int8)[k],
        trend_state=trend.astype(np.int8)[k],
    )


def _stream(seed: int, component: int, block: int) -> np.random.Generator:
    """Return the random stream of one component and one block of bars."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(component, block))))


def _blocks(
    seed: int, component: int, n: int, width: int, draw: Callable[[np.random.Generator, int, int], np.ndarray]
) -> np.ndarray:
    """Concatenate per-block draws ``draw(rng, rows, width)`` into an ``[n, width]`` array."""
    parts = []
    for block in range((n + _BLOCK_BARS - 1) // _BLOCK_BARS):
        rows = min(_BLOCK_BARS, n - block * _BLOCK_BARS)
        # Always draw a full block, then cut: a block's numbers never depend on n.
        parts.append(draw(_stream(seed, component, block), _BLOCK_BARS, width)[:rows])
    return np.concatenate(parts, axis=0)


def _uniform(seed: int, component: int, n: int, width: int) -> np.ndarray:
    """Return ``U[0, 1)`` draws ``[n, width]``."""
    return _blocks(seed, component, n, width, lambda rng, r, w: rng.random((r, w)))


def _normal(seed: int, component: int, n: int, width: int) -> np.ndarray:
    """Return standard normal draws ``[n, width]``."""
    return _blocks(seed, component, n, width, lambda rng, r, w: rng.standard_normal((r, w)))


def _student_t(config: SyntheticMarketConfig, component: int, n: int, width: int) -> np.ndarray:
    """Return unit-variance Student-t draws ``[n, width]``, clipped at ``innovation_clip``."""
    dof = config.student_dof
    raw = _blocks(config.seed, component, n, width, lambda rng, r, w: rng.standard_t(dof, (r, w)))
    return np.clip(raw * math.sqrt((dof - 2.0) / dof), -config.innovation_clip, config.innovation_clip)


def _markov_states(seed: int, chain: int, n: int, width: int, mean_stay: float) -> np.ndarray:
    """Return ``width`` independent 3-state Markov chains ``[n, width]`` (states 0, 1, 2).

    Each bar a chain leaves its state with probability ``1 / mean_stay``, to one of the two
    other states with equal probability, so the stationary distribution is uniform. The
    state at bar 0 is drawn from it.
    """
    u = _uniform(seed, 10 + chain, n, 3 * width)
    leave = u[:, :width] < 1.0 / mean_stay
    step = np.where(leave, 1 + (u[:, width : 2 * width] < 0.5), 0)  # +1 or +2 (mod 3)
    first = np.floor(u[0, 2 * width :] * 3).astype(np.int64)
    step[0] = first
    return (np.cumsum(step, axis=0) % 3).astype(np.int64)


def _garch_variance(z: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """Return GARCH(1,1) variances ``h`` ``[n, k]`` for unit innovations ``z``, with ``h_0 = 1``.

    ``h_t = omega + (alpha z_{t-1}^2 + beta) h_{t-1}`` with ``omega = 1 - alpha - beta``,
    so the long-run variance is 1.
    """
    omega = 1.0 - alpha - beta
    coef = alpha * np.square(z) + beta
    h = np.empty_like(z)
    h[0] = 1.0
    for t in range(1, z.shape[0]):  # sequential by nature; ~1 us per bar for all assets
        np.multiply(coef[t - 1], h[t - 1], out=h[t])
        h[t] += omega
    return h


def _bridge_extremes(
    seed: int, open_: np.ndarray, close: np.ndarray, move: np.ndarray, sigma: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(high, low)``: extremes of a Brownian bridge from open to close per bar.

    ``move`` is ``log(close / open)`` of each bar and ``sigma`` its conditional sd.

    For a bridge ending at ``x`` with variance ``s^2``, ``P(max > m) = exp(-2 m (m - x) / s^2)``;
    inverting gives ``max = (x + sqrt(x^2 - 2 s^2 ln U)) / 2`` (and the mirror for the minimum).
    """
    n, a = close.shape
    u = 1.0 - _uniform(seed, 4, n, 2 * a)  # in (0, 1]
    spread_up = np.sqrt(move**2 - 2.0 * sigma**2 * np.log(u[:, :a]))
    spread_down = np.sqrt(move**2 - 2.0 * sigma**2 * np.log(u[:, a:]))
    high = open_ * np.exp(0.5 * (move + spread_up))
    low = open_ * np.exp(0.5 * (move - spread_down))
    # close came from a cumulative sum: bound by open and close exactly, not to rounding.
    return np.maximum(high, np.maximum(open_, close)), np.minimum(low, np.minimum(open_, close))


def _epoch_us(moment: datetime) -> int:
    """Return microseconds since the Unix epoch of a UTC-aware datetime."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class SyntheticBarSource:
    """A ``BarSource`` serving the synthetic market of one config.

    Delivers the base interval and every longer ``Interval`` that is a whole multiple of
    it (by resampling). The simulated path is cached and grown as later windows are asked
    for; growing never changes earlier bars. Not thread-safe (the cache is unguarded).
    """

    name = "synthetic"

    def __init__(self, config: SyntheticMarketConfig | None = None) -> None:
        self.config = config if config is not None else SyntheticMarketConfig()
        self._path: SyntheticPath | None = None

    def intervals(self, symbol: str) -> tuple[Interval, ...]:
        """Return the base interval and every longer interval that is a whole multiple of it."""
        self._column(symbol)
        base = self.config.interval
        return tuple(i for i in Interval if i.seconds >= base.seconds and i.seconds % base.seconds == 0)

    def fetch(self, symbol: str, interval: Interval, start: datetime, end: datetime) -> pl.DataFrame:
        """Return the complete bars of ``symbol`` at ``interval`` with open time in ``[start, end)``.

        Raises:
            SourceRefused: ``symbol`` is not in this market or ``interval`` cannot be served.
            ValueError: ``start`` or ``end`` is not UTC-aware.
        """
        column = self._column(symbol)
        for label, moment in (("start", start), ("end", end)):
            if moment.tzinfo is None or moment.utcoffset() != timedelta(0):
                raise ValueError(f"synthetic fetch {symbol}: {label} {moment} is not UTC-aware")
        base = self.config.interval
        if interval.seconds < base.seconds or interval.seconds % base.seconds != 0:
            raise SourceRefused(
                f"synthetic market ({base.value} base): cannot serve {symbol} at {interval.value}, "
                f"not a whole multiple of {base.value}"
            )
        if interval == base:
            return self._base_bars(column, start, end)
        # Base bars from the start of the first target bucket, so it can be complete.
        bucket_us = interval.seconds * 1_000_000
        aligned = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=_epoch_us(start) // bucket_us * bucket_us)
        bars = resample_bars(self._base_bars(column, aligned, end), source=base, target=interval)
        return bars.filter(
            (pl.col("timestamp") >= start) & (pl.col("timestamp") + interval.timedelta <= end)
        )

    def path(self, num_bars: int) -> SyntheticPath:
        """Return a path of at least ``num_bars`` base bars (cached; grown by doubling)."""
        if self._path is None or self._path.num_bars < num_bars:
            have = 0 if self._path is None else self._path.num_bars
            grow = max(num_bars, 2 * have, _BLOCK_BARS)
            grow = min(MAX_BARS, -(-grow // _BLOCK_BARS) * _BLOCK_BARS)
            logger.debug("simulating %d bars of the synthetic market (seed %d)", grow, self.config.seed)
            self._path = simulate_market(self.config, grow)
        return self._path

    def _column(self, symbol: str) -> int:
        """Return the column of ``symbol``, or raise ``SourceRefused`` naming it."""
        try:
            return self.config.symbols.index(parse_symbol(symbol))
        except ValueError:
            raise SourceRefused(
                f"synthetic market has no symbol {symbol!r}; it has {', '.join(self.config.symbols)}"
            ) from None

    def _base_bars(self, column: int, start: datetime, end: datetime) -> pl.DataFrame:
        """Return base-interval bars of one column with open time in ``[start, end)``, complete by ``end``."""
        step_us = self.config.interval.seconds * 1_000_000
        origin_us = _epoch_us(self.config.origin)
        first = max(0, -(-(_epoch_us(start) - origin_us) // step_us))  # first open >= start
        stop = (_epoch_us(end) - origin_us) // step_us  # bars with open + step <= end
        if stop <= first:
            return pl.DataFrame(schema=BAR_SCHEMA)
        path = self.path(stop)
        rows = slice(first, stop)
        timestamps = origin_us + np.arange(first, stop, dtype=np.int64) * step_us
        return pl.DataFrame(
            {
                "timestamp": pl.Series(timestamps).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
                "open": path.open[rows, column],
                "high": path.high[rows, column],
                "low": path.low[rows, column],
                "close": path.close[rows, column],
                "volume": path.volume[rows, column],
                "trade_count": path.trade_count[rows, column],
                "vwap": path.vwap[rows, column],
            },
            schema=BAR_SCHEMA,
        ).with_columns(pl.col("timestamp").cast(TIMESTAMP_DTYPE))


def generate_bars(config: SyntheticMarketConfig, start: datetime, end: datetime) -> dict[str, pl.DataFrame]:
    """Return the base-interval bars of every symbol of ``config`` in ``[start, end)``, keyed by symbol."""
    source = SyntheticBarSource(config)
    return {symbol: source.fetch(symbol, config.interval, start, end) for symbol in config.symbols}
