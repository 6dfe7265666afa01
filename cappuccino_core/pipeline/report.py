"""The pipeline's report: the verdict and why, equity against the baselines, the tournament's history.

``write_report`` draws two PNGs (matplotlib's Agg canvas, no pyplot), writes a self-contained
HTML page (the PNGs inlined) and the summary JSON under ``<home>/reports/<name>/``, and logs all
of it to one MLflow run in the experiment ``pipeline`` with the run's key figures as metrics and
the verdict as the run's description. The page opens on the verdict (``verdict.pipeline_verdict``),
then says what the selection figures mean, then draws the arena king (or the edge-tested king)
on the whole holdout against the baselines (the summary's ``holdout``, always present), the
sandbox and paper records on the replay, and the tournament. The summary holds no setting, so
no secret can reach the report.
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
from matplotlib.ticker import MaxNLocator

from cappuccino_core.config import Settings
from cappuccino_core.pipeline.formatting import fmt_number, fmt_percent
from cappuccino_core.pipeline.verdict import explanations, pipeline_verdict
from cappuccino_core.tracking.runs import NOTE_TAG, end_run, get_or_create_experiment, log_file, log_metrics
from cappuccino_core.tracking.store import client, code_version, ensure_store, experiment_artifact_location, tracking_uri

EXPERIMENT = "pipeline"
EXPERIMENT_DESCRIPTION = (
    "One run per pipeline report (cappuccino run): the verdict, the key figures as metrics (train/, arena/, "
    "paper/, green_light/, seconds/) and the report files (report.html, summary.json, equity and tournament "
    "charts) under artifacts/report."
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
        NOTE_TAG: pipeline_verdict(summary).headline,
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


def equity_chart(summary: dict[str, Any], path: Path) -> Path:
    """Draw ``_equity_figure`` to ``path`` (always: there is always the holdout)."""
    _equity_figure(summary).savefig(path)
    return path


def _equity_figure(summary: dict[str, Any]) -> Figure:
    """The model on the arena holdout, then each sandbox and paper-production record, against the baselines.

    When no model entered the arena the holdout panel shows the baselines alone. Legends sit
    right of the plots, never over the curves.
    """
    sandbox = summary["sandbox"] or {}
    results = [("arena holdout", summary["holdout"])]
    results += [("sandbox", r) for r in sandbox.get("sandbox_results") or []]
    if sandbox.get("production_results"):
        results.append(("paper production", sandbox["production_results"]))
    figure = Figure(figsize=(10, 3.4 * len(results)), dpi=90)
    FigureCanvasAgg(figure)
    for i, (role, result) in enumerate(results):
        axes = figure.add_subplot(len(results), 1, i + 1)
        if result.get("curve") is not None:
            axes.plot(_times(result["curve"]["bar_times"]), result["curve"]["equity"], color="black", linewidth=2.0,
                      label=f"{result['model_id']}", zorder=3)
        for j, base in enumerate(result["baselines"]):
            axes.plot(_times(base["curve"]["bar_times"]), base["curve"]["equity"], color=f"C{j}", linewidth=1.0,
                      linestyle="--", label=base["name"])
        axes.axhline(1.0, color="0.6", linewidth=0.6)
        who = result["model_id"] or "no model entered the arena: the baselines alone"
        axes.set_title(f"{role}, {result['start'][:10]} to {result['end'][:10]} ({result['bars']} bars): {who}",
                       fontsize=9, loc="left")
        axes.set_ylabel("value (start = 1)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    figure.tight_layout()
    return figure


def tournament_chart(history: list[dict[str, Any]], path: Path) -> Path | None:
    """Draw ``_tournament_figure`` to ``path`` (``None``: no match was played)."""
    if not history:
        return None
    _tournament_figure(history).savefig(path)
    return path


def _tournament_figure(history: list[dict[str, Any]]) -> Figure:
    """Every match: the king's and the challenger's scores, the king's streak, promotions and refusals."""
    figure = Figure(figsize=(10, 3.6), dpi=90)
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
        if m.get("rejected"):
            axes.axvline(m["match"], color="C3", linewidth=1.2, linestyle=":", label=f"edge test refused {m['rejected']}")
    axes.set_xlabel("match")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("excess Sharpe (holdout windows)")
    streak = axes.twinx()
    streak.step(n, [m["streak"] for m in history], where="post", color="0.5", linewidth=1.0)
    streak.set_ylabel("king's streak", color="0.4")
    streak.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title(f"Tournament: {len(history)} matches", fontsize=9, loc="left")
    handles, labels = axes.get_legend_handles_labels()
    handles.append(streak.lines[0])
    labels.append("king's streak (right axis)")
    axes.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.12, 1.0), borderaxespad=0.0,
                frameon=False)
    figure.tight_layout()
    return figure


STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}td,th{padding:3px 10px;text-align:left}"
    "table{border-collapse:collapse;margin-bottom:1em}tr:nth-child(even){background:#f4f4f4}"
    ".verdict{font-size:1.25em;font-weight:bold;padding:0.6em 0.8em;border-left:6px solid}"
    ".verdict.promoted{border-color:#2a7d2a;background:#eef8ee}.verdict.refused{border-color:#b03030;background:#fbeeee}"
    ".flag{color:#b03030;font-weight:bold}img{max-width:100%}"
)


def report_html(summary: dict[str, Any], equity_png: Path, tournament_png: Path | None) -> str:
    """A self-contained page: the verdict first, what the figures mean, the charts inlined, then the tables."""
    e = html.escape
    verdict = pipeline_verdict(summary)
    training, arena, choice = summary["training"]["summary"], summary["arena"], summary["timeframe"]["choice"]
    green = _green(summary)
    parts = [f"<html><head><meta charset='utf-8'><title>Cappuccino {e(summary['name'])}</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<p class='verdict {'promoted' if verdict.promoted else 'refused'}'>{e(verdict.headline)}</p>"]
    if verdict.details:
        parts.append("<ul>" + "".join(f"<li>{e(d)}</li>" for d in verdict.details) + "</ul>")
    parts.append(f"<h1>Cappuccino pipeline {e(summary['name'])}</h1>")
    parts.append("<h2>Can the selection be trusted?</h2><ul>" + "".join(
        f"<li>{'<span class=flag>&#9888; ' if flagged else '<span>'}{e(figure)}</span>: {e(text)}</li>"
        for figure, text, flagged in explanations(summary)) + "</ul>")
    holdout = summary["holdout"]
    parts.append(f"<h2>Equity against the baselines</h2><p>{e(_holdout_caption(holdout))}</p>{_img(equity_png)}")
    parts += [f"<h3>Arena holdout, {e(holdout['start'][:10])} to {e(holdout['end'][:10])}</h3>",
              _table(PERF_HEADER, _perf_rows(holdout))]
    for label, result in _results(summary):
        parts += [f"<h3>{e(label)}: {e(result['model_id'])}, {e(result['start'][:10])} to {e(result['end'][:10])}</h3>",
                  _table(PERF_HEADER, _perf_rows(result))]
    rows = [
        ("mode", summary["mode"]), ("chosen timeframe", f"{choice['interval']} × lookback {choice['lookback']}"),
        ("training study", summary["training"]["study"]),
        ("trials by state", ", ".join(f"{k.lower()} {v}" for k, v in (training.get("trials_by_state") or {}).items())),
        ("trials with evidence of an edge", f"{training.get('with_evidence')}"),
        ("best validation score", fmt_number(training.get("best_value"))), ("PBO", fmt_number(training.get("pbo"))),
        ("DSR", fmt_number(training.get("dsr"))), ("arena king", f"{arena.get('king')} (streak {arena.get('streak')})"),
        ("promoted here", ", ".join(arena.get("promoted_here") or []) or "none"),
        ("green light", f"{green.get('status')}: {green.get('message')}"),
    ]
    parts += ["<h2>Figures</h2>", _table(["", ""], rows)]
    decision = green.get("decision") or {}
    if decision.get("rules"):
        parts += ["<h2>Green light</h2>", _table(["rule", "value", "", "threshold", "passed"], [
            (r["name"], fmt_number(r.get("value")), r["comparison"], fmt_number(r["threshold"]), r["passed"]) for r in decision["rules"]])]
    if tournament_png is not None:
        parts.append(f"<h2>Tournament history</h2>{_img(tournament_png)}")
    parts.append(f"<h2>Stage times (s)</h2>{_table(['stage', 'seconds'], list(summary['stage_seconds'].items()))}")
    parts.append("</body></html>")
    return "\n".join(parts)


PERF_HEADER = ["who", "return", "alpha", "Sharpe", "max drawdown"]


def _holdout_caption(holdout: dict[str, Any]) -> str:
    who = holdout["model_id"] or "No model entered the arena, so the baselines alone are drawn"
    span = "the whole arena holdout" if not holdout.get("gaps") else "the longest gap-free stretch of the arena holdout"
    return (f"{who} over {span} ({holdout['market']}): bars no search or validation saw, with the "
            "arena's costs and risk layers; the baselines trade the same bars. Below it, any sandbox and paper "
            "production records on the replay bars after the holdout.")


def _perf_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    own = [] if result.get("metrics") is None else [(result["model_id"], *_perf(result["metrics"]))]
    return own + [(b["name"], *_perf(b["metrics"])) for b in result["baselines"]]


def _img(png: Path) -> str:
    return f"<img src='data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}'>"


def _results(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    sandbox = summary["sandbox"] or {}
    out = [("Sandbox", r) for r in sandbox.get("sandbox_results") or []]
    if sandbox.get("production_results"):
        out.append(("Paper production", sandbox["production_results"]))
    return out


def _green(summary: dict[str, Any]) -> dict[str, Any]:
    return summary.get("green_light") or {}


def _perf(metrics: dict[str, Any]) -> tuple[str, str, str, str]:
    drawdown = metrics.get("max_drawdown")  # a loss from the peak, as a positive fraction
    return (fmt_percent(metrics.get("total_return")), fmt_percent(metrics.get("alpha")), fmt_number(metrics.get("sharpe")),
            "undefined" if drawdown is None else f"{100 * drawdown:.2f}%")


def _table(header: list[str], rows: list[tuple[Any, ...]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _times(texts: list[str]) -> list[datetime]:
    return [datetime.fromisoformat(t) for t in texts]
