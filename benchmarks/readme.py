"""Regenerate README.md's generated tables: every setting, and every benchmark figure.

    python -m benchmarks.readme            # rewrite the two marked blocks in README.md
    python -m benchmarks.readme --check    # exit 1 with a diff when README.md is out of date

The settings table is read from ``cappuccino_core.config.Settings`` itself (names, environment
variables, types, declared defaults, descriptions), never from the environment, so a secret set
in the shell can never reach the README. The benchmark table is read from
``benchmarks/results.json``; what each figure means lives in ``FIGURES`` and ``FIGURE_PREFIXES``
below. Only the text between the markers changes; the rest of README.md is kept byte for byte.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import tempfile
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import AliasChoices, AliasPath, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from cappuccino_core.config import Settings

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RESULTS = Path(__file__).resolve().parent / "results.json"
BLOCKS = ("settings", "bench")
COMMAND = "python -m benchmarks.readme"
NO_DESCRIPTION = "—"


@dataclass(frozen=True)
class Figure:
    """What one benchmark figure measures, and its unit (empty for labels)."""

    unit: str
    description: str


FIGURES: dict[str, Figure] = {
    # ingest (benchmarks/sections.py: bench_ingest)
    "ingest_7x2y_1h_seconds": Figure("s", "Read 7 symbols × 2 years of 1h bars from files, write them into a fresh bar store and build the feature panel."),
    "ingest_data": Figure("", "Bars the ingest figures used: `shared` (real Binance files in ../shared/data/ohlcv) or `synthetic-files`."),
    "ingest_rows": Figure("bars", "Bar rows written to the store over the 7 symbols."),
    "ingest_panel_rows": Figure("bars", "Time steps in the built feature panel."),
    "ingest_peak_rss_mb": Figure("MB", "Peak resident memory of the ingest section's process."),
    # environment (bench_env)
    "env_raw_steps_per_s_L20": Figure("env steps/s", "Batched portfolio environment, 256 episodes × 7 assets, random actions, lookback 20 (each batch step counts 256)."),
    "env_raw_steps_per_s_L60": Figure("env steps/s", "Batched portfolio environment, 256 episodes × 7 assets, random actions, lookback 60 (each batch step counts 256)."),
    # PPO and Stable-Baselines3 (bench_ppo, bench_sb3)
    "ppo_train_steps_per_s": Figure("env steps/s", "Our PPO training throughput with the default trial budget (256 episodes, lookback 20, 7 assets, a year of 1h bars), no validation."),
    "ppo_train_steps": Figure("env steps", "Env steps of the PPO throughput run (the default trial budget)."),
    "ppo_torch_threads": Figure("threads", "torch threads PPO trained with."),
    "ppo_phase_seconds_per_100k": Figure("s", "Seconds per 100k env steps of the ppo_train_steps_per_s run spent in env steps (observation assembly included), the policy's forward passes in the rollout, and the updates (GAE included)."),
    "ppo_phase_other_seconds_per_100k": Figure("s", "The rest of that run per 100k env steps: rollout book-keeping (buffer writes, episode returns) and set-up."),
    "sb3_train_steps_per_s": Figure("env steps/s", "Stable-Baselines3 PPO (MlpPolicy 64×64, n_steps 2048, batch 64, 10 epochs) on the Gymnasium adapter, same market."),
    "sb3_train_steps": Figure("env steps", "Env steps of the Stable-Baselines3 run."),
    "sb3_n_envs": Figure("envs", "Environments in Stable-Baselines3's DummyVecEnv."),
    "ppo_vs_sb3_speedup": Figure("×", "ppo_train_steps_per_s over sb3_train_steps_per_s, both measured in the same process."),
    # time to quality (bench_quality: benchmarks/quality.py), seeds 0-2, same run, wall-clock caps
    "ppo_quality_threshold_excess_sharpe": Figure("Sharpe", "The quality threshold: half the median held-out excess Sharpe our PPO reaches at its default budget (150k steps) on the planted-edge market (1h, lookback 20, default costs and risk layers)."),
    "ppo_time_to_quality_seconds": Figure("s", "Median over 3 seeds of our PPO's training seconds until it first scores the threshold on the held-out windows (scoring time excluded)."),
    "sb3_time_to_quality_seconds": Figure("s", "The same for Stable-Baselines3 PPO at its defaults (MlpPolicy 64×64, DummyVecEnv of 8 Gymnasium adapters); n/a when not reached within the cap."),
    "sb3_time_to_quality_note": Figure("", "Why sb3_time_to_quality_seconds is n/a."),
    "ppo_time_to_quality_note": Figure("", "Why ppo_time_to_quality_seconds is n/a."),
    "time_to_quality_ratio": Figure("×", "sb3_time_to_quality_seconds over ppo_time_to_quality_seconds (a lower bound, the cap over ours, when SB3 did not reach the threshold)."),
    "time_to_quality_ratio_note": Figure("", "Whether time_to_quality_ratio is a lower bound."),
    "ppo_holdout_excess_sharpe_at_30s": Figure("Sharpe", "Median held-out excess Sharpe of the policy each learner holds after 30 s of training (ours stops at its 150k-step budget and keeps its final policy)."),
    "ppo_holdout_excess_sharpe_at_60s": Figure("Sharpe", "The same after 60 s."),
    "ppo_holdout_excess_sharpe_at_120s": Figure("Sharpe", "The same after 120 s."),
    "ppo_holdout_excess_sharpe_at_240s": Figure("Sharpe", "The same after 240 s (the default cap)."),
    "ppo_quality_final_excess_sharpe": Figure("Sharpe", "Per seed: the held-out excess Sharpe of each learner's last policy (ours at its budget, SB3 at the cap)."),
    "ppo_quality_cap_seconds": Figure("s", "Wall-clock training cap of each run in the time-to-quality benchmark."),
    "ppo_quality_seeds": Figure("seeds", "Training seeds per learner in the time-to-quality benchmark."),
    "ppo_quality_ours_finished_seconds": Figure("s", "Median training seconds our PPO took for its default budget in that run."),
    "ppo_quality_steps_per_s": Figure("env steps/s", "Median training throughput (scoring excluded) of each learner in the time-to-quality runs."),
    "ppo_quality_speedup": Figure("×", "ours over sb3 of ppo_quality_steps_per_s (same run)."),
    "ppo_quality_sb3_checkpoints": Figure("checkpoints", "Median number of SB3 updates (each scored) within the cap."),
    # one trial (bench_trial)
    "trial_seconds_default": Figure("s", "One default trial: train on 70% of a year of synthetic 1h bars, validate on the rest (one fold, no tracking; torch's one-off import in a fresh process excluded)."),
    "trial_validation_excess_sharpe": Figure("Sharpe", "Validation score of the trial_seconds_default trial: annualised Sharpe of its excess returns over the index (planted-edge market)."),
    "trials_per_day_two_workers": Figure("trials/day", "Default trials a day with two single-thread workers (2 × 86,400 s / trial_seconds_default)."),
    # training study (bench_study)
    "study_trial_seconds": Figure("s", "Wall time of one default training-study trial (3 walk-forward folds, 7 assets, 2 years of 1h bars, lookback 20) in a Prefect flow, tracked in MLflow."),
    "study_trial_training_seconds": Figure("s", "Part of study_trial_seconds spent training and in its validation backtests (`fit_agent`)."),
    "study_trial_overhead_seconds": Figure("s", "Per-trial time outside training: Optuna storage, MLflow run, metrics, checkpoints and plot, plus the flow and task overhead per trial."),
    "study_trial_folds": Figure("folds", "Trainings per trial (walk-forward folds)."),
    "study_flow_seconds_incl_server": Figure("s", "Wall time of the 3-trial study flow, including starting Prefect's temporary server."),
    "trial_overhead_fraction": Figure("fraction", "study_trial_overhead_seconds / study_trial_training_seconds."),
    "study_1000_projected_hours": Figure("h", "Projected wall time of a 1,000-trial training study on one worker."),
    # arena (benchmarks/arena_bench.py)
    "arena_1000x20_seconds": Figure("s", "Tournament of 1,000 scripted candidates on 20 one-week 1h windows, every candidate on the market's env config (king and challengers share a backtest batch)."),
    "arena_1000x20_own_env_seconds": Figure("s", "Tournament of 1,000 scripted candidates on 20 one-week 1h windows, each candidate on its own env config, so each is backtested in its own batch (checkpoint loading not included)."),
    "arena_peak_rss_mb": Figure("MB", "Peak resident memory of the arena benchmark's process over both tournaments."),
    "arena_candidates": Figure("models", "Candidates registered in the arena."),
    "arena_match_windows": Figure("windows", "Match windows of the holdout panel."),
    "arena_window_bars": Figure("bars", "1h bars per match window (one week)."),
    "arena_matches": Figure("matches", "Matches played in the shared-config tournament."),
    "arena_evaluations": Figure("backtests", "Model-window backtests actually run in the shared-config tournament (the rest came from the cache)."),
    "arena_evaluations_per_model_window": Figure("ratio", "arena_evaluations / (candidates × match windows); about 1 means each model is backtested once per window."),
    "arena_own_env_evaluations_per_model_window": Figure("ratio", "arena_evaluations_per_model_window of the own-config tournament."),
    "arena_edge_tests": Figure("tests", "Edge tests run on the confirmation windows (a king reached the promotion streak)."),
    # machine and end-to-end run
    "machine_cpus": Figure("CPUs", "CPUs of the machine the figures were measured on."),
    "make_run_seconds": Figure("s", "End-to-end `make run` on the synthetic market, excluding the virtualenv install."),
    "make_run_promoted": Figure("models", "Models of the demo's training study the arena promoted (20 consecutive wins and the edge test)."),
    "make_run_green_light": Figure("status", "The demo's green-light status for its paper-production model at the end of the replay."),
    # the command line (bench_cli)
    "cli_help_seconds": Figure("s", "`cappuccino --help` in a fresh process, median of 5 (the target is under 1 s)."),
    "cli_status_seconds": Figure("s", "`cappuccino status --json` in a fresh process, median of 5 (the target is under 3 s)."),
    "cli_status_home": Figure("", "The home `cli_status_seconds` read: `make run` (the home the demo left) or `empty` (a fresh one)."),
    # the demo over several markets (bench_demo_seeds, bench_noedge: benchmarks/demo_runs.py)
    "demo_runs": Figure("runs", "`cappuccino run --demo` runs on market seeds 1-5 (plant 2.0), each in a fresh home."),
    "demo_failed_runs": Figure("runs", "Demo runs that did not finish."),
    "demo_promotion_rate": Figure("runs", "Demo runs in which the arena promoted a model of the run's study (20 straight wins and the edge test)."),
    "demo_promoted_per_seed": Figure("models", "Per seed: models of the run's study the arena promoted."),
    "demo_king_holdout_excess_sharpe": Figure("Sharpe", "Per seed: the edge-tested king's excess Sharpe on the 4 confirmation weeks no selection saw (promoted king first; in a run without a promotion, the last king the edge test refused)."),
    "demo_king_holdout_ci_low": Figure("per bar", "Per seed: the 95% stationary-bootstrap lower bound of that king's mean per-bar excess return on the confirmation weeks."),
    "selection_spearman": Figure("rho", "Mean over the demo seeds of Spearman's rho between the candidates' validation scores and their arena holdout scores."),
    "selection_spearman_per_seed": Figure("rho", "Spearman's rho of validation vs holdout scores of each demo run's candidates."),
    "min_ppo_updates": Figure("updates", "Fewest PPO updates of any trial in the demo runs' studies (the floor is 20)."),
    "demo_timeframes": Figure("", "Interval x lookback each demo run's timeframe grid chose."),
    "demo_seconds_per_run": Figure("s", "Wall time of each demo run (measured while other work shared the 2 cores: an upper bound)."),
    "noedge_runs": Figure("runs", "The demo pipeline with the plant off (strength 0), market seeds 101-110."),
    "noedge_failed_runs": Figure("runs", "No-edge runs that did not finish."),
    "noedge_promotions": Figure("models", "Models promoted over all no-edge runs (the target: at most 1 in 20 runs)."),
    "noedge_promotion_rate": Figure("runs", "No-edge runs with a promotion, over the runs."),
    "noedge_candidates_per_run": Figure("models", "Per no-edge seed: trials with validation evidence of an edge, registered as candidates."),
    "noedge_edge_tests": Figure("tests", "Edge tests run over all no-edge runs (a king needs 20 straight wins first)."),
    # risk layers (bench_risk): per choice off | owner (1.5 % portfolio stop, +3 % profit-take) | owner_pts10_no_pt | stop_and_cap_only | default
    "risk_weekly_alpha": Figure("fraction", "Per risk choice: mean weekly alpha over buy and hold of the demo's trial budget, trained and scored under that choice on 11 weekly holdout windows of the planted market (2 seeds)."),
    "risk_edge_kept": Figure("fraction", "Per risk choice: its weekly alpha over the alpha with the layers off."),
    "risk_holdout_excess_sharpe": Figure("Sharpe", "Per risk choice: holdout excess Sharpe of the same runs."),
    "risk_portfolio_stops_per_week": Figure("stops/week", "Per risk choice: portfolio trailing stops fired per weekly window."),
}
"""Exact figure keys of ``benchmarks/results.json``; an exact key wins over a prefix rule."""

FIGURE_PREFIXES: dict[str, Figure] = {
    "stage_seconds_": Figure("s", "Wall time of the `{suffix}` stage of `make run` on the synthetic market."),
}
"""Families of figure keys; ``{suffix}`` in the description is the rest of the key."""


class ReadmeError(ValueError):
    """README.md cannot be regenerated; the message names the marker or file at fault."""


# --------------------------------------------------------------------------- settings table


def env_variables(name: str, field: FieldInfo, model: type[BaseSettings]) -> tuple[str, ...]:
    """Return the environment variables pydantic-settings reads ``field`` from, as documented.

    Without an alias the variable is ``env_prefix + name``. An alias replaces the prefixed
    name (pydantic-settings applies no prefix to aliases); each string choice is a variable, an
    ``AliasPath`` is read from its first element. The choice equal to the field's own name is
    the by-name spelling (``Settings(alpaca_api_key=...)``, TOML keys) and is not listed.
    """
    config = model.model_config
    case_sensitive = bool(config.get("case_sensitive", False))
    alias = field.validation_alias if field.validation_alias is not None else field.alias
    if alias is None:
        names = [f"{config.get('env_prefix', '')}{name}"]
    else:
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        names = [str(c.path[0]) if isinstance(c, AliasPath) else c for c in choices]
        names = [n for n in names if n != name]
    return tuple(n if case_sensitive else n.upper() for n in dict.fromkeys(names))


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(arg) for arg in get_args(annotation) if arg is not Ellipsis)


def type_name(annotation: Any) -> str:
    """Spell a field's type readably: ``int``, ``Path | None``, ``tuple[str, ...]``, enums with their values."""
    origin = get_origin(annotation)
    if annotation is type(None):
        return "None"
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in get_args(annotation))
    if origin is not None:
        args = ", ".join("..." if arg is Ellipsis else type_name(arg) for arg in get_args(annotation))
        return f"{origin.__name__}[{args}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation)


def _enum_values(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " (" + ", ".join(str(member.value) for member in annotation) + ")"
    return ""


def _value_text(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ", ".join(_value_text(v) for v in value)
    return str(value)


def default_text(field: FieldInfo) -> str:
    """Show a field's declared default: ``unset`` for secrets and ``None``, tuples joined, Paths as given."""
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        return "required"
    if _is_secret(field.annotation):
        return "unset" if not value else "set (hidden)"
    if value is None:
        return "unset"
    if isinstance(value, (tuple, list)) and not value:
        return "empty"
    return f"`{_value_text(value)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_table(model: type[BaseSettings] = Settings) -> str:
    """Return the markdown table of every field of ``model``, in the model's order."""
    rows = ["| setting | environment variable | type | default | description |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        variables = " or ".join(f"`{v}`" for v in env_variables(name, field, model))
        kind = type_name(field.annotation) + _enum_values(field.annotation)
        cells = (f"`{name}`", variables, f"`{kind}`", default_text(field), field.description or NO_DESCRIPTION)
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- benchmark table


def describe_figure(key: str) -> Figure | None:
    """Return what ``key`` measures: its exact entry, else the first matching prefix rule, else None."""
    if key in FIGURES:
        return FIGURES[key]
    for prefix, figure in FIGURE_PREFIXES.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            return Figure(figure.unit, figure.description.format(suffix=key[len(prefix):]))
    return None


def undescribed_figures(results: Mapping[str, Any]) -> list[str]:
    """Return the keys of ``results`` that neither ``FIGURES`` nor ``FIGURE_PREFIXES`` describe."""
    return sorted(key for key in results if describe_figure(key) is None)


def figure_text(value: Any) -> str:
    """Round a figure for reading: thousands separators on integers, four significant digits on floats."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{float(f'{value:.4g}'):,.10g}" if abs(value) >= 1 else f"{value:.4g}"
    if isinstance(value, Mapping):  # per-seed figures: "seed: value" pairs
        return ", ".join(f"{k}: {figure_text(v)}" for k, v in value.items())
    return str(value)


def bench_table(results: Mapping[str, Any]) -> str:
    """Return the markdown table of every figure in ``results``, by key."""
    rows = ["| figure | value | unit | what it measures |", "|---|---:|---|---|"]
    for key in sorted(results):
        figure = describe_figure(key) or Figure("", NO_DESCRIPTION)
        cells = (f"`{key}`", figure_text(results[key]), figure.unit, figure.description)
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- README blocks


def _markers(block: str) -> tuple[str, str]:
    return f"<!-- {block}:begin -->", f"<!-- {block}:end -->"


def replace_block(text: str, block: str, body: str) -> str:
    """Return ``text`` with the lines between ``block``'s begin and end markers replaced by ``body``.

    Raises:
        ReadmeError: a marker is missing, repeated, or the end comes before the begin.
    """
    begin, end = _markers(block)
    for marker in (begin, end):
        count = text.count(marker)
        if count != 1:
            problem = "has no" if count == 0 else f"has {count} copies of the"
            raise ReadmeError(f"README {problem} marker {marker!r}; add one line with it ({COMMAND} fills the block)")
    start, stop = text.index(begin) + len(begin), text.index(end)
    if stop < start:
        raise ReadmeError(f"README marker {end!r} comes before {begin!r}")
    return text[:start] + "\n" + body + "\n" + text[stop:]


def generated_blocks(results: Mapping[str, Any], model: type[BaseSettings] = Settings) -> dict[str, str]:
    """Return the body of each generated block: the settings table and the benchmark table."""
    note = f"<!-- generated by `{COMMAND}` from {{source}}; do not edit by hand -->\n"
    return {
        "settings": note.format(source="the Settings model in cappuccino_core/config/settings.py") + settings_table(model),
        "bench": note.format(source="benchmarks/results.json and the FIGURES of benchmarks/readme.py") + bench_table(results),
    }


def render_readme(text: str, results: Mapping[str, Any], model: type[BaseSettings] = Settings) -> str:
    """Return README ``text`` with both generated blocks brought up to date."""
    for block, body in generated_blocks(results, model).items():
        text = replace_block(text, block, body)
    return text


def read_results(path: Path = RESULTS) -> dict[str, Any]:
    """Read the benchmark figures; raise ``ReadmeError`` naming the file when it is missing or not an object."""
    if not path.exists():
        raise ReadmeError(f"no benchmark results at {path}; run `make bench` first")
    results = json.loads(path.read_text())
    if not isinstance(results, dict):
        raise ReadmeError(f"{path} holds a {type(results).__name__}, not one JSON object of figures")
    return results


def _write_atomically(path: Path, text: str) -> None:
    data = text.encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def update_readme(readme: Path = README, results_path: Path = RESULTS) -> bool:
    """Rewrite README's generated blocks in place (atomically); return True when anything changed."""
    text = readme.read_text(encoding="utf-8")
    fresh = render_readme(text, read_results(results_path))
    if fresh == text:
        return False
    _write_atomically(readme, fresh)
    return True


def readme_diff(readme: Path = README, results_path: Path = RESULTS) -> str:
    """Return the unified diff from README as it is to README as generated (empty when in sync)."""
    text = readme.read_text(encoding="utf-8")
    fresh = render_readme(text, read_results(results_path))
    lines = difflib.unified_diff(text.splitlines(keepends=True), fresh.splitlines(keepends=True),
                                 fromfile=f"{readme.name} (current)", tofile=f"{readme.name} (generated)")
    return "".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate README.md's blocks, or with ``--check`` report (exit 1) when they are out of date."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 with a diff when README.md is stale")
    parser.add_argument("--readme", type=Path, default=README, help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        for key in undescribed_figures(read_results(args.results)):
            print(f"warning: figure {key!r} of {args.results.name} has no description in "
                  f"benchmarks/readme.py (FIGURES or FIGURE_PREFIXES)", file=sys.stderr)
        if args.check:
            diff = readme_diff(args.readme, args.results)
            if diff:
                sys.stdout.write(diff)
                print(f"{args.readme.name} is out of date: run `{COMMAND}`", file=sys.stderr)
                return 1
            return 0
        changed = update_readme(args.readme, args.results)
    except ReadmeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'updated' if changed else 'unchanged'}: {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
