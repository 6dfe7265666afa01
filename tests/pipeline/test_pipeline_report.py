"""The HTML report opens on the verdict, explains the figures, and always draws the king against the baselines."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.image import imread

from cappuccino_core.pipeline.report import equity_chart, report_html, tournament_chart
from tests.pipeline.test_pipeline_verdict import KING, summary as verdict_summary

BASELINES = ("buy_and_hold", "momentum", "mean_reversion", "sixty_forty")


def curve(drift: float, bars: int = 50) -> dict[str, list]:
    t0 = datetime(2025, 10, 1, tzinfo=UTC)
    return {"bar_times": [(t0 + timedelta(hours=i)).isoformat() for i in range(bars)],
            "equity": list(np.cumprod(np.full(bars, 1.0 + drift)) / (1.0 + drift))}


def metrics(total: float) -> dict[str, Any]:
    return {"bars": 49, "total_return": total, "alpha": total - 0.01, "sharpe": 1.2, "max_drawdown": -0.05}


def holdout(model_id: str | None) -> dict[str, Any]:
    return {"model_id": model_id, "study": "demo-train", "market": "holdout of study demo-train, 1h bars",
            "start": "2025-10-01T00:00:00+00:00", "end": "2025-10-03T02:00:00+00:00", "bars": 50,
            "metrics": None if model_id is None else metrics(0.04),
            "curve": None if model_id is None else curve(0.001),
            "baselines": [{"name": n, "metrics": metrics(0.01 * i), "curve": curve(0.0002 * i)} for i, n in enumerate(BASELINES)]}


def full_summary(model_id: str | None = KING) -> dict[str, Any]:
    doc = verdict_summary()
    doc.update(mode="offline replay", stage_seconds={"ingest": 1.0, "report": 2.0}, holdout=holdout(model_id),
               timeframe={"choice": {"interval": "1h", "lookback": 20}})
    doc["training"]["study"] = "demo-train"
    doc["arena"]["history"] = [{"match": i, "king_score": 1.0, "challenger_score": 0.5, "streak": i,
                                "promoted": None, "rejected": KING if i == 3 else None} for i in (1, 2, 3)]
    return doc


def test_the_first_line_of_the_page_is_the_verdict_and_its_reason(tmp_path: Path) -> None:
    doc = full_summary()
    page = report_html(doc, equity_chart(doc, tmp_path / "equity.png"), None)
    body = page[page.index("<body>") + len("<body>"):]
    first = re.sub(r"<[^>]+>", "", body.strip().split("\n")[0])
    assert first == (f"Not promoted: {KING} won 20 matches in a row but the edge test refused it: "
                     "score 28.53 does not beat baseline momentum (35.45).")
    assert "momentum 35.45" in page  # the king against each baseline
    assert page.count("class=flag") == 3  # validation overstated the holdout, PBO 0.62, DSR 0.41
    assert "Probability of backtest overfitting" in page and "Deflated Sharpe ratio" in page


def test_the_equity_chart_is_drawn_even_when_no_model_entered_the_arena(tmp_path: Path) -> None:
    doc = full_summary(model_id=None)
    png = equity_chart(doc, tmp_path / "equity.png")
    assert imread(png).shape[:2] == (3.4 * 90, 10 * 90)
    page = report_html(doc, png, None)
    assert "No model entered the arena, so the baselines alone are drawn" in page
    assert "data:image/png;base64," in page


def test_legends_sit_outside_the_plotted_data(tmp_path: Path) -> None:
    doc = full_summary()
    doc["sandbox"]["sandbox_results"] = [{**holdout(KING), "model_id": KING}]
    png = equity_chart(doc, tmp_path / "equity.png")
    pixels = imread(png)
    assert pixels.shape[:2] == (2 * 3.4 * 90, 10 * 90)  # holdout and sandbox panels
    # matplotlib's figure for the saved chart: every legend lies right of its axes.
    from cappuccino_core.pipeline import report

    for build in (lambda: report._equity_figure(doc), lambda: report._tournament_figure(doc["arena"]["history"])):
        figure = build()
        renderer = figure.canvas.get_renderer()
        for axes in figure.axes:
            legend = axes.get_legend()
            if legend is None:
                continue
            assert legend.get_window_extent(renderer).x0 >= axes.get_window_extent(renderer).x1
    assert tournament_chart(doc["arena"]["history"], tmp_path / "t.png").exists()
