"""A picture of a model's backtest: candles per pair with its trades and weights, and equity beside the baselines.

Like freqtrade's ``plot-dataframe`` and ``plot-profit`` in one PNG: for each pair, its candles
over the window with the model's entries (triangles up) and exits (triangles down, coloured by
who closed the trade: the policy, a risk rule, or still open at the end), and under them the
pair's weight in the portfolio after each step; at the bottom the model's equity against
every baseline's on the same bars. Drawn with matplotlib's Agg canvas (no ``pyplot`` state).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import date2num
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cappuccino_core.evaluation.backtest import END_EXIT, POLICY_EXIT
from cappuccino_core.views.model_backtest import ModelBacktest

_EXIT_COLOURS = {POLICY_EXIT: "tab:blue", END_EXIT: "0.45"}
_RISK_COLOUR = "tab:red"


def plot_backtest(result: ModelBacktest, path: Path) -> Path:
    """Draw ``result`` to the PNG ``path`` (folders created); return the path."""
    report, panel = result.report, result.panel
    rows = slice(report.start_row, report.start_row + len(report.timestamps))
    times = date2num(report.timestamps.astype("datetime64[ns]").astype("datetime64[ms]").astype(object))
    width = panel.interval.seconds / 86400 * 0.7
    pairs = panel.num_assets
    figure = Figure(figsize=(11, 2.9 * pairs + 3.2), dpi=90, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(3 * pairs + 3, 1)
    version = f"v{result.loaded.model_version}" if result.loaded.model_version else result.model
    figure.suptitle(f"{result.model} ({version}, study {result.loaded.study}): {panel.interval} bars "
                    f"{result.start:%Y-%m-%d %H:%M} .. {result.end:%Y-%m-%d %H:%M} UTC", fontsize=10)
    first = None
    for a, symbol in enumerate(panel.symbols):
        candles = figure.add_subplot(grid[3 * a : 3 * a + 2, 0], sharex=first)
        first = first or candles
        _candles(candles, times, panel.open[rows, a], panel.high[rows, a], panel.low[rows, a], panel.close[rows, a], width)
        _trades(candles, result, symbol, a)
        candles.set_ylabel(symbol, fontsize=9)
        candles.tick_params(labelbottom=False, labelsize=8)
        weight = figure.add_subplot(grid[3 * a + 2, 0], sharex=first)
        # weights[s] is the book after step s, held over bar s + 1: drawn as a step from that bar on.
        weight.fill_between(times[1:], report.weights[:, a], step="pre", color="tab:purple", alpha=0.35, linewidth=0)
        weight.set_ylim(0, max(0.05, float(report.weights[:, a].max()) * 1.15))
        weight.set_ylabel("weight", fontsize=8)
        weight.tick_params(labelbottom=False, labelsize=7)
    equity = figure.add_subplot(grid[3 * pairs :, 0], sharex=first)
    equity.plot(times, report.equity, color="black", linewidth=1.6, label=f"model ({version})")
    for i, baseline in enumerate(result.baselines):
        equity.plot(times, baseline.equity, color=f"C{i}", linewidth=1.0, linestyle="--", label=baseline.policy)
    equity.axhline(1.0, color="0.6", linewidth=0.6)
    equity.set_ylabel("value (start = 1)", fontsize=9)
    equity.tick_params(labelsize=8)
    equity.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    equity.xaxis_date()
    first.legend(handles=_legend(), fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def _candles(axes, times: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
             width: float) -> None:
    up = close >= open_
    colour = np.where(up, "tab:green", "tab:red")
    axes.vlines(times, low, high, colors=colour, linewidth=0.6)
    axes.bar(times, np.abs(close - open_), width=width, bottom=np.minimum(open_, close), color=colour, linewidth=0)


def _trades(axes, result: ModelBacktest, symbol: str, asset: int) -> None:
    """Entries at the fill bar's open (the starting book at the decision close); exits at the fill bar's open."""
    panel, report = result.panel, result.report
    start = report.start_row
    for trade in (t for t in report.trades if t.symbol == symbol):
        entry_row = start + trade.entry_step + 1 if trade.entry_step >= 0 else start
        entry_price = panel.open[entry_row, asset] if trade.entry_step >= 0 else panel.close[start, asset]
        exit_row = start + min(trade.exit_step + 1, len(report.returns))
        exit_price = panel.close[exit_row, asset] if trade.exit_reason == END_EXIT else panel.open[exit_row, asset]
        colour = _EXIT_COLOURS.get(trade.exit_reason, _RISK_COLOUR)
        entry_t, exit_t = (date2num(np.datetime64(ns, "ns").astype("datetime64[ms]").astype(object))
                           for ns in (trade.entry_ns, trade.exit_ns))
        axes.plot([entry_t, exit_t], [entry_price, exit_price], color=colour, linewidth=0.7, alpha=0.6)
        axes.plot(entry_t, entry_price, marker="^", color="tab:green", markersize=7, markeredgecolor="black",
                  markeredgewidth=0.5)
        axes.plot(exit_t, exit_price, marker="v", color=colour, markersize=7, markeredgecolor="black", markeredgewidth=0.5)


def _legend() -> list[Line2D]:
    def marker(shape: str, colour: str, label: str) -> Line2D:
        return Line2D([], [], marker=shape, color=colour, linestyle="", markeredgecolor="black", label=label)

    return [marker("^", "tab:green", "entry"), marker("v", _EXIT_COLOURS[POLICY_EXIT], "exit: policy"),
            marker("v", _RISK_COLOUR, "exit: risk layer"), marker("v", _EXIT_COLOURS[END_EXIT], "open at end"),
            Line2D([], [], color="tab:purple", alpha=0.5, linewidth=6, label="weight")]
