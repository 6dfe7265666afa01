"""The pipeline's report: equity of the promoted models against the baselines, the tournament's history.

``write_report`` draws two PNGs (matplotlib's Agg canvas, no pyplot), writes a self-contained
HTML page (the PNGs inlined) and the summary JSON under ``<home>/reports/<name>/``, and logs all
of it to one MLflow run in the experiment ``pipeline`` with the run's key figures as metrics.
The summary holds no setting, so no secret can reach the report.
"""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cappuccino_core.config import Settings
from cappuccino_core.pipeline.summary import fmt_number, fmt_percent
from cappuccino_core.tracking.runs import end_run, get_or_create_experiment, log_file, log_metrics
from cappuccino_core.tracking.store import client, code_version, ensure_store, experiment_artifact_location, tracking_uri

EXPERIMENT = "pipeline"
EXPERIMENT_DESCRIPTION = (
    "One run per pipeline report (cappuccino run): the key figures as metrics (train/, arena/, paper/, "
    "green_light/, seconds/) and the report files (report.html, summary.json, equity and tournament charts) "
    "under artifacts/report."
)
PIPELINE_TAG = "cappuccino.pipeline"


def write_report(settings: Settings, summary: dict[str, Any]) -> dict[str, Any]:
    """Write the report files and log them with the key figures to MLflow; return where they are."""
    folder = Path(settings.home).resolve() / "reports" / summary["name"]
    folder.mkdir(parents=True, exist_ok=True)
    equity_png = equity_chart(summary, folder / "equity.png")
    tournament_png = tournament_chart(summary["arena"].get("history", []), folder / "tournament.png")
    summary_json = folder / "summary.json"
    summary_json.write_text(json.dumps(summary, indent=2, default=str))
    page = folder / "report.html"
    page.write_text(report_html(summary, equity_png, tournament_png))
    run_id = log_report(settings, summary, [page, summary_json, equity_png, tournament_png])
    return {"folder": str(folder), "html": str(page), "mlflow_run_id": run_id, "mlflow_experiment": EXPERIMENT,
            "pngs": [str(p) for p in (equity_png, tournament_png) if p is not None]}


def log_report(settings: Settings, summary: dict[str, Any], files: list[Path | None]) -> str:
    """Log the report to a new run of experiment ``pipeline`` (ended FINISHED, or FAILED and re-raised); its id.

    Each report of one pipeline name gets its own run name: ``<name>``, then ``<name>-2``, ...
    """
    uri = tracking_uri(settings.home)
    ensure_store(uri)
    mlflow = client(uri)
    experiment = get_or_create_experiment(mlflow, EXPERIMENT, experiment_artifact_location(uri, settings.home),
                                          description=EXPERIMENT_DESCRIPTION)
    name = summary["name"]
    earlier = mlflow.search_runs([experiment], f"tags.`{PIPELINE_TAG}` = '{name}'", max_results=50000)
    run = mlflow.create_run(experiment, run_name=name if not earlier else f"{name}-{len(earlier) + 1}", tags={
        PIPELINE_TAG: name, "cappuccino.mode": summary["mode"],
        "cappuccino.train_study": summary["training"]["study"], "cappuccino.code_version": code_version(),
        "cappuccino.green_light": str(_green(summary).get("status")),
    })
    run_id = run.info.run_id
    try:
        log_metrics(mlflow, run_id, key_figures(summary))
        for path in files:
            if path is not None:
                log_file(mlflow, run_id, path, "report")
    except BaseException:
        end_run(mlflow, run_id, failed=True)
        raise
    end_run(mlflow, run_id)
    return run_id


def key_figures(summary: dict[str, Any]) -> dict[str, float | None]:
    """The run's numbers as MLflow metrics (undefined ones are recorded as such, never dropped)."""
    training = summary["training"]["summary"]
    arena = summary["arena"]
    figures: dict[str, float | None] = {
        "train/best_value": training.get("best_value"), "train/pbo": training.get("pbo"),
        "train/dsr": training.get("dsr"), "arena/streak": arena.get("streak"),
        "arena/promoted": arena.get("promoted"), "arena/matches": arena.get("matches_played"),
    }
    for state, count in (training.get("trials_by_state") or {}).items():
        figures[f"train/trials_{state.lower()}"] = count
    production = (summary["sandbox"] or {}).get("production_results")
    if production:
        for key in ("total_return", "alpha", "sharpe", "max_drawdown"):
            figures[f"paper/{key}"] = production["metrics"].get(key)
    for rule in (_green(summary).get("decision") or {}).get("rules", []):
        figures[f"green_light/{rule['name']}"] = rule.get("value")
    for stage, seconds in summary["stage_seconds"].items():
        figures[f"seconds/{stage}"] = seconds
    return figures


def equity_chart(summary: dict[str, Any], path: Path) -> Path | None:
    """Each sandbox and paper-production record against the baselines on the same bars (``None``: none traded)."""
    sandbox = summary["sandbox"] or {}
    results = [("sandbox", r) for r in sandbox.get("sandbox_results") or []]
    if sandbox.get("production_results"):
        results.append(("paper production", sandbox["production_results"]))
    if not results:
        return None
    figure = Figure(figsize=(8, 3.2 * len(results)), dpi=90)
    FigureCanvasAgg(figure)
    for i, (role, result) in enumerate(results):
        axes = figure.add_subplot(len(results), 1, i + 1)
        axes.plot(_times(result["curve"]["bar_times"]), result["curve"]["equity"], color="C3", linewidth=1.8,
                  label=f"{result['model_id']} ({role})")
        for j, base in enumerate(result["baselines"]):
            axes.plot(_times(base["curve"]["bar_times"]), base["curve"]["equity"], color=f"C{j}", linewidth=0.9,
                      linestyle="--", label=base["name"])
        axes.axhline(1.0, color="0.6", linewidth=0.6)
        axes.set_title(f"{role}: {result['start'][:16]} to {result['end'][:16]} UTC ({result['bars']} bars)", fontsize=9)
        axes.set_ylabel("value (start = 1)")
        axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    return path


def tournament_chart(history: list[dict[str, Any]], path: Path) -> Path | None:
    """Every match: the king's and the challenger's scores, the king's streak, promotions (``None``: no match)."""
    if not history:
        return None
    figure = Figure(figsize=(8, 3.6), dpi=90)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    n = np.array([m["match"] for m in history])
    king = np.array([np.nan if m["king_score"] is None else m["king_score"] for m in history], dtype=float)
    challenger = np.array([np.nan if m["challenger_score"] is None else m["challenger_score"] for m in history], dtype=float)
    axes.plot(n, king, color="C0", marker="o", markersize=3, linewidth=1.2, label="king's score")
    axes.scatter(n, challenger, color="C1", s=12, label="challenger's score", zorder=3)
    for m in history:
        if m.get("promoted"):
            axes.axvline(m["match"], color="C2", linewidth=1.5, label=f"promoted {m['promoted']}")
    axes.set_xlabel("match")
    axes.set_ylabel("excess Sharpe (holdout windows)")
    streak = axes.twinx()
    streak.step(n, [m["streak"] for m in history], where="post", color="0.5", linewidth=1.0)
    streak.set_ylabel("king's streak", color="0.4")
    axes.set_title(f"Tournament: {len(history)} matches", fontsize=9)
    axes.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    figure.savefig(path)
    return path


def report_html(summary: dict[str, Any], equity_png: Path | None, tournament_png: Path | None) -> str:
    """A self-contained page: the summary's tables and both charts inlined."""
    e = html.escape
    training, arena, choice = summary["training"]["summary"], summary["arena"], summary["timeframe"]["choice"]
    green = _green(summary)
    rows = [
        ("mode", summary["mode"]), ("chosen timeframe", f"{choice['interval']} × lookback {choice['lookback']}"),
        ("training study", summary["training"]["study"]),
        ("trials by state", ", ".join(f"{k.lower()} {v}" for k, v in (training.get("trials_by_state") or {}).items())),
        ("best validation score", fmt_number(training.get("best_value"))), ("PBO", fmt_number(training.get("pbo"))),
        ("DSR", fmt_number(training.get("dsr"))), ("arena king", f"{arena.get('king')} (streak {arena.get('streak')})"),
        ("promoted here", ", ".join(arena.get("promoted_here") or []) or "none"),
        ("green light", f"{green.get('status')}: {green.get('message')}"),
    ]
    parts = [f"<html><head><meta charset='utf-8'><title>Cappuccino {e(summary['name'])}</title>",
             "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}"
             "table{border-collapse:collapse}tr:nth-child(even){background:#f4f4f4}</style></head><body>",
             f"<h1>Cappuccino pipeline {e(summary['name'])}</h1>", _table(["", ""], rows)]
    decision = green.get("decision") or {}
    if decision.get("rules"):
        parts += ["<h2>Green light</h2>", _table(["rule", "value", "", "threshold", "passed"], [
            (r["name"], fmt_number(r.get("value")), r["comparison"], fmt_number(r["threshold"]), r["passed"]) for r in decision["rules"]])]
    for label, result in _results(summary):
        parts += [f"<h2>{e(label)}: {e(result['model_id'])}</h2>",
                  _table(["who", "return", "alpha", "Sharpe", "max drawdown"],
                         [(result["model_id"], *_perf(result["metrics"]))]
                         + [(b["name"], *_perf(b["metrics"])) for b in result["baselines"]])]
    for title, png in (("Equity against the baselines", equity_png), ("Tournament history", tournament_png)):
        if png is not None:
            data = base64.b64encode(png.read_bytes()).decode()
            parts.append(f"<h2>{title}</h2><img src='data:image/png;base64,{data}'>")
    parts.append(f"<h2>Stage times (s)</h2>{_table(['stage', 'seconds'], list(summary['stage_seconds'].items()))}")
    parts.append("</body></html>")
    return "\n".join(parts)


def _results(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    sandbox = summary["sandbox"] or {}
    out = [("Sandbox", r) for r in sandbox.get("sandbox_results") or []]
    if sandbox.get("production_results"):
        out.append(("Paper production", sandbox["production_results"]))
    return out


def _green(summary: dict[str, Any]) -> dict[str, Any]:
    return summary.get("green_light") or {}


def _perf(metrics: dict[str, Any]) -> tuple[str, str, str, str]:
    return (fmt_percent(metrics.get("total_return")), fmt_percent(metrics.get("alpha")), fmt_number(metrics.get("sharpe")),
            fmt_percent(metrics.get("max_drawdown")))


def _table(header: list[str], rows: list[tuple[Any, ...]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _times(texts: list[str]) -> list[datetime]:
    return [datetime.fromisoformat(t) for t in texts]
