"""The pipeline's summary as text lines (what ``cappuccino run`` prints), from its report dict."""

from __future__ import annotations

from typing import Any

from cappuccino_core.pipeline.formatting import fmt_number, fmt_percent
from cappuccino_core.pipeline.verdict import pipeline_verdict


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """Return the summary: timeframe, trials, scores, arena, sandbox against baselines, green light, times."""
    total = sum(doc["stage_seconds"].values())
    data, choice = doc["data"], doc["timeframe"]["choice"]
    training, arena = doc["training"]["summary"], doc["arena"]
    split = data["split"]
    lines = [
        f"== Cappuccino pipeline {doc['name']} ({doc['mode']}) in {total:.0f} s ==",
        f"verdict: {pipeline_verdict(doc).headline}",
        f"data: {data['source']} bars {data['window_start'][:16]} .. {data['window_end'][:16]}; "
        f"search until {split['search_end'][:10]}, arena holdout until {split['holdout_end'][:10]}, "
        f"replay until {split['replay_end'][:10]}",
        f"timeframe: {choice['interval']} x lookback {choice['lookback']} (best mean score {fmt_number(choice.get('score'))}; "
        f"{choice.get('trials')} trials in study {doc['timeframe']['study']}; margin over the runner-up "
        f"{fmt_number(choice.get('margin_in_stderr'))} standard errors)",
        "timeframe cells (mean ± sd, trials): " + ", ".join(
            f"{a['interval']}x{a['lookback']} {a['mean_score']:.1f}±{fmt_number(a.get('std_score'))} ({a['trials']})"
            for a in choice.get("alternatives", [])),
        f"training: study {doc['training']['study']}: trials " + ", ".join(
            f"{k.lower()} {v}" for k, v in training["trials_by_state"].items() if v)
        + f"; best validation score {fmt_number(training['best_value'])} (trial {training['best_trial']})",
        f"overfitting: PBO {fmt_number(training['pbo']) if training['pbo'] is not None else 'n/a (' + str(training['pbo_reason']) + ')'}; "
        f"DSR {fmt_number(training['dsr'])} over {training['dsr_tests']} trials tried",
        f"budget: at least {training.get('min_ppo_updates')} PPO updates per trial "
        f"(at least {training.get('min_completed_episodes')} finished training episodes)",
        f"candidates: {len(doc['training']['candidates'])} registered, the validated networks of trials with "
        f"evidence of an edge ({training.get('with_evidence')} of {training['trials_by_state'].get('COMPLETE')} complete trials)",
        f"selection: validation vs arena holdout Spearman {fmt_number(training.get('selection_spearman'))} over "
        f"{training.get('selection_n')} candidates (95% interval {_interval(training.get('selection_spearman_ci95'))})",
        f"arena: king {arena.get('king')} with streak {arena.get('streak')}; {arena.get('matches_played')} matches, "
        f"{arena.get('promoted')} promoted in all; promoted from this study: {', '.join(arena.get('promoted_here') or []) or 'none'}",
    ]
    if arena.get("edge_tested_king"):
        lines.append(f"edge test of {arena['edge_tested_king']}: excess Sharpe {fmt_number(arena.get('king_holdout_excess_sharpe'))} "
                     f"on {arena.get('king_holdout_bars')} confirmation bars, bootstrap lower bound of the mean excess "
                     f"{fmt_number(arena.get('king_holdout_ci_low'))}")
    sandbox = doc["sandbox"] or {}
    for label, result in [("sandbox", r) for r in sandbox.get("sandbox_results") or []] + (
            [("paper production", sandbox["production_results"])] if sandbox.get("production_results") else []):
        lines.append(f"{label}: {result['model_id']} over {result['bars']} bars from {result['start'][:16]}: "
                     + _perf(result["metrics"]))
        for base in result["baselines"]:
            lines.append(f"    baseline {base['name']}: " + _perf(base["metrics"]))
    for decision in sandbox.get("decisions") or []:
        lines.append(f"promotion at {decision['at'][:16]}: promoted {decision['promoted'] or 'none'}, "
                     f"retired {decision['retired'] or 'none'}; production {decision['production']}")
    if "production" in sandbox:
        lines.append(f"production model: {sandbox['production'] or 'none'}")
    green = doc["green_light"] or {}
    lines.append(f"green light: {green.get('status')}: {green.get('message')}")
    for rule in (green.get("decision") or {}).get("rules", []):
        mark = "pass" if rule["passed"] else "FAIL"
        lines.append(f"    {rule['name']}: {fmt_number(rule['value'])} {rule['comparison']} {fmt_number(rule['threshold'])} -> {mark}")
    report = doc.get("report") or {}
    if report:
        lines.append(f"report: {report.get('html')} (MLflow experiment {report.get('mlflow_experiment')}, "
                     f"run {report.get('mlflow_run_id')})")
    lines.append("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in doc["stage_seconds"].items()))
    return lines


def _interval(bounds: Any) -> str:
    if not bounds or bounds[0] is None:
        return "undefined"
    return f"{bounds[0]:.2f} .. {bounds[1]:.2f}"


def _perf(metrics: dict[str, Any]) -> str:
    return (f"return {fmt_percent(metrics.get('total_return'))}, alpha {fmt_percent(metrics.get('alpha'))}, "
            f"Sharpe {fmt_number(metrics.get('sharpe'))}, max drawdown {fmt_percent(metrics.get('max_drawdown'))}")
