"""The ``cappuccino`` command line. Orchestrated commands run the Prefect flows; views read the core.

Errors a user can fix (bad settings, stale data, rejected keys) print one clear line and exit 2.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from cappuccino_core.clock import parse_utc
from cappuccino_core.config import DataSourceKind, Settings, SettingsError, load_settings
from cappuccino_core.redaction import install_scrub_filter

# Offline hygiene before Prefect or MLflow is imported (a user's explicit setting wins); set by
# the app's callback, so importing this module changes nothing.
_OFFLINE_ENV = (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"), ("MLFLOW_DISABLE_TELEMETRY", "true"), ("DO_NOT_TRACK", "true"),
                ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"),
                # Prefect waits 20 s for its ephemeral server, too little on a busy 2-core machine.
                ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout (messages go to stderr).")]
app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  help="Cappuccino: crypto PPO research and deployment pipeline.")
data_app = typer.Typer(no_args_is_help=True, help="Market data: ingest and status.")
app.add_typer(data_app, name="data")
search_app = typer.Typer(no_args_is_help=True, help="Phase 2: the timeframe search.")
app.add_typer(search_app, name="search")
train_app = typer.Typer(invoke_without_command=True, help="Phase 3: the training study (run it, or `train status`).")
app.add_typer(train_app, name="train")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long


def _settings(**overrides: object) -> Settings:
    try:
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    # Every log line of the command (its own, the SDKs', Apprise's) is scrubbed of the secrets.
    install_scrub_filter(settings.secret_values(), [logging.getLogger("apprise")])
    return settings


def _print_json(doc: object) -> None:
    """Write ``doc`` as indented JSON on stdout (values JSON cannot hold become strings)."""
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def _cell(value: object) -> str:
    """A table cell: floats to 4 significant digits, None as '-', containers as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


def _wide_table(title: str, columns: tuple[str, ...]) -> Table:
    """A table of many short columns that fits 80 columns: no vertical rules, one space between columns."""
    table = Table(title=title, title_justify="left", box=None, padding=(0, 1, 0, 0), header_style="bold underline")
    for col in columns:
        table.add_column(col, no_wrap=True)
    return table


def _fields_table(title: str, doc: dict) -> Table:
    """A two-column table of ``doc``'s fields (long values wrap in the value column)."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in doc.items():
        table.add_row(key.replace("_", " "), _cell(value))
    return table


def _refuse_unservable(settings: Settings) -> None:
    """Stop with one line when the source cannot serve the settings' symbols at their interval (no fetch, no retry)."""
    from cappuccino_core.data.errors import SourceError
    from cappuccino_core.config.components import make_source
    from cappuccino_core.data.ingest import check_source

    if settings.source is DataSourceKind.ALPACA:  # Alpaca says which pairs it has when asked for bars
        return
    try:
        check_source(make_source(settings), settings.symbols, settings.base_interval)
    except (SourceError, ValueError) as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_utc(text)
    except ValueError:
        err_console.print(f"[red]error:[/red] not an ISO-8601 time: {text!r}")
        raise typer.Exit(2) from None


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            console.print(f"cappuccino {version('cappuccino')}", highlight=False)
        except PackageNotFoundError:  # a source tree that was never installed
            console.print("cappuccino (not installed: no package metadata)", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Configure logging and the offline environment for every command."""
    for name, value in _OFFLINE_ENV:
        os.environ.setdefault(name, value)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command("settings")
def show_settings(as_json: JsonFlag = False) -> None:
    """Print the effective settings (secrets shown only as set/unset)."""
    doc = _settings().redacted()
    if as_json:
        _print_json(doc)
        return
    console.print(_fields_table("Settings", doc))


@data_app.command("ingest")
def data_ingest(
    source: Annotated[Optional[DataSourceKind], typer.Option(metavar="SOURCE", help="Bar source: synthetic, alpaca or files (default: CAPPUCCINO_SOURCE).")] = None,
    path: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Directory of bar files (source=files).")] = None,
    symbols: Annotated[Optional[str], typer.Option(metavar="PAIRS", help="Comma-separated pairs, e.g. BTC/USD,ETH/USD.")] = None,
    interval: Annotated[Optional[str], typer.Option(metavar="INTERVAL", help="Bar interval to fetch and store (1m, 5m, 15m, 30m, 1h, 4h, 1d).")] = None,
    start: Annotated[Optional[str], typer.Option(metavar="TIME", help="First bar open time (ISO-8601, UTC).")] = None,
    end: Annotated[Optional[str], typer.Option(metavar="TIME", help="End of the range, exclusive (ISO-8601, UTC; default now).")] = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", metavar="TIME", help="Judge freshness as of this time (research on history).")] = None,
    allow_stale: Annotated[bool, typer.Option("--allow-stale", help="Let stale (never broken) data pass the gate.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Fetch, validate and store bars, then run the quality checks and the freshness gate."""
    settings = _settings(source=source, files_path=path, symbols=symbols, base_interval=interval)  # fail early, naming the field
    _refuse_unservable(settings)
    from flows.ingest import IngestParams

    params = IngestParams(
        source=source, files_path=None if path is None else str(path),
        symbols=None if symbols is None else [s for s in symbols.split(",") if s.strip()], interval=interval,
        start=_time(start), end=_time(end), as_of=_time(as_of), allow_stale=allow_stale,
    )
    _run_ingest(params, as_json=as_json)


@data_app.command("status")
def data_status_cmd(
    as_json: JsonFlag = False,
    as_of: Annotated[Optional[str], typer.Option("--as-of", metavar="TIME", help="Judge freshness as of this time.")] = None,
    allow_stale: Annotated[bool, typer.Option("--allow-stale", help="Let stale (never broken) data pass.")] = False,
) -> None:
    """Show each stored series: coverage, gaps, duplicates, zero-volume bars, stale or fresh.

    Exits non-zero when any series is stale or broken.
    """
    from cappuccino_core.clock import SystemClock
    from cappuccino_core.config.components import freshness_policy
    from cappuccino_core.data.ingest import data_status
    from cappuccino_core.data.store import BarStore

    settings = _settings()
    try:
        status = data_status(
            BarStore(settings.bars_dir), freshness_policy(settings, as_of=_time(as_of), allow_stale=allow_stale), SystemClock().now()
        )
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(json.dumps(status.to_dict(), indent=2) + "\n")
    else:
        _print_status(status)
    if not status.ok:
        raise typer.Exit(1)


@search_app.command("timeframe")
def search_timeframe(
    trials: Annotated[Optional[int], typer.Option(min=1, max=100, metavar="N", help="Trials (default CAPPUCCINO_TIMEFRAME_TRIALS, at most 100).")] = None,
    workers: Annotated[int, typer.Option(min=1, metavar="N", help="Worker processes.")] = 1,
    study: Annotated[Optional[str], typer.Option(metavar="NAME", help="Study name (default timeframe-YYYYMMDD); an existing one resumes.")] = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", metavar="TIME", help="Judge data freshness as of this time.")] = None,
    allow_stale: Annotated[bool, typer.Option("--allow-stale", help="Let stale (never broken) data pass.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Search bar interval x lookback with a reduced budget; record the choice for training."""
    from cappuccino_core.clock import SystemClock
    from flows.timeframe_search import TimeframeParams, timeframe_search

    settings = _settings()
    name = study or f"timeframe-{SystemClock().now():%Y%m%d}"
    params = TimeframeParams(trials=trials, workers=workers, study=name, as_of=_time(as_of), allow_stale=allow_stale)
    report = _with_progress(settings, name, trials or settings.timeframe_trials, lambda: timeframe_search(params=params))
    if as_json:
        _print_json(report.model_dump(mode="json"))
        return
    choice = report.choice
    console.print(f"[green]timeframe:[/green] {choice['interval']} x lookback {choice['lookback']} "
                  f"(mean score {choice['score']:.3f} over its trials; {choice['trials']} trials in the study)")
    table = Table(title="Alternatives (best first)")
    for col in ("interval", "lookback", "mean score", "best score", "trials"):
        table.add_column(col)
    for alt in choice["alternatives"]:
        table.add_row(alt["interval"], str(alt["lookback"]), f"{alt['mean_score']:.3f}", f"{alt['best_score']:.3f}", str(alt["trials"]))
    console.print(table)
    _print_summary(report.summary)


@train_app.callback()
def train_cmd(
    ctx: typer.Context,
    trials: Annotated[Optional[int], typer.Option(min=1, max=1000, metavar="N", help="Hard cap on trials (default CAPPUCCINO_TRAIN_TRIALS, at most 1000).")] = None,
    workers: Annotated[int, typer.Option(min=1, metavar="N", help="Worker processes on this machine.")] = 1,
    study: Annotated[Optional[str], typer.Option(metavar="NAME", help="Study name (default train-YYYYMMDD); an existing one resumes.")] = None,
    timeframe_study: Annotated[Optional[str], typer.Option(metavar="NAME", help="Phase 2 study to use (default: the latest).")] = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", metavar="TIME", help="Judge data freshness as of this time.")] = None,
    allow_stale: Annotated[bool, typer.Option("--allow-stale", help="Let stale (never broken) data pass.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run the training study on Phase 2's timeframe, then register the best trials as candidates."""
    if ctx.invoked_subcommand is not None:
        return
    from cappuccino_core.clock import SystemClock
    from flows.train import TrainParams, train

    settings = _settings()
    name = study or f"train-{SystemClock().now():%Y%m%d}"
    params = TrainParams(trials=trials, workers=workers, study=name, timeframe_study=timeframe_study,
                         as_of=_time(as_of), allow_stale=allow_stale)
    report = _with_progress(settings, name, trials or settings.train_trials, lambda: train(params=params))
    if as_json:
        _print_json(report.model_dump(mode="json"))
        return
    _print_summary(report.summary)
    for c in report.candidates:
        console.print(f"candidate: {settings.model_name} v{c['version']} from trial {c['trial']} (trial score {c['trial_score']:.3f})")


@train_app.command("status")
def train_status(
    study: Annotated[Optional[str], typer.Option(metavar="NAME", help="Study name (default: the most recent training study).")] = None,
    top: Annotated[int, typer.Option(min=0, max=100, metavar="N", help="How many of the best trials to list.")] = 5,
    as_json: JsonFlag = False,
) -> None:
    """Where the study stands (running, finished, stopped early or idle), its trials by state and its best trials."""
    from cappuccino_core.search.location import StudyError, StudyLocation, latest_study, require_spec, study_state, top_trials
    from cappuccino_core.study.status import study_status
    from cappuccino_core.study.storage import StudyNotFound

    loc = StudyLocation.from_settings(_settings())
    try:
        name = study or latest_study(loc, "training")
        spec = require_spec(loc, name)
        status = study_status(loc.storage_url, name, heartbeat_interval=spec.heartbeat_seconds)
        best = top_trials(loc, name, top)
    except (StudyNotFound, LookupError, StudyError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    state = study_state(loc, name, running=status.trials_by_state.get("RUNNING", 0), stopped_early=status.stopped_early)
    doc = {"state": state, **status.to_dict(), "top_trials": best}
    if as_json:
        _print_json(doc)
        return
    by_state = ", ".join(f"{v} {k.lower()}" for k, v in status.trials_by_state.items() if v) or "none"
    console.print(_fields_table(f"Study {name}", {
        "state": state + (f": {status.stop_reason}" if status.stopped_early and status.stop_reason else ""),
        "trials": f"{status.total} of cap {status.cap} ({by_state})",
        "best": "-" if status.best_value is None else f"{status.best_value:.3f} (trial {status.best_trial})",
        "stale running": ", ".join(map(str, status.running_stale)) or "none",
    }))
    if best:
        console.print(_trials_table(f"Best {len(best)} trials", best))


@train_app.command("show")
def train_show(
    study: Annotated[Optional[str], typer.Option(metavar="NAME", help="Study name (default: the most recent training study).")] = None,
    top: Annotated[int, typer.Option(min=1, max=1000, metavar="N", help="How many of the best trials to list.")] = 10,
    trial: Annotated[Optional[int], typer.Option(min=0, metavar="N", help="Show this trial in full instead.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The best trials of a study (like `hyperopt-list`), or one trial in full (like `hyperopt-show`)."""
    from cappuccino_core.search.location import StudyError, StudyLocation, latest_study, top_trials, trial_detail
    from cappuccino_core.study.storage import StudyNotFound

    loc = StudyLocation.from_settings(_settings())
    try:
        name = study or latest_study(loc, "training")
        doc = trial_detail(loc, name, trial) if trial is not None else {"study": name, "top_trials": top_trials(loc, name, top)}
    except (StudyNotFound, LookupError, StudyError, KeyError) as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        _print_json(doc)
    elif trial is None:
        console.print(_trials_table(f"Study {name}: best {len(doc['top_trials'])} trials", doc["top_trials"])
                      if doc["top_trials"] else f"study {name}: no complete trial yet")
    else:
        fields = {"state": doc["state"], "value": doc["value"], "started": _short_time(doc["started"]),
                  "minutes": None if doc["seconds"] is None else round(doc["seconds"] / 60, 1),
                  **doc["params"], **{f"attr {k}": _short_attr(v) for k, v in doc["attrs"].items()}}
        console.print(_fields_table(f"Study {name}, trial {doc['trial']}", fields))


def _short_attr(value: object) -> object:
    """A recorded trial attribute for the table: long encoded blobs are only counted."""
    return f"({len(value)} characters; --json shows it)" if isinstance(value, str) and len(value) > 60 else value


models_app = typer.Typer(no_args_is_help=True, help="Registered models: versions, stages, arena records.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(
    arena: Annotated[str, typer.Option(metavar="ID", help="Arena whose record is shown.")] = "main",
    as_json: JsonFlag = False,
) -> None:
    """Every registered version: its study and trial, stage, aliases and arena record."""
    from cappuccino_core.operations.model_list import list_models

    models = list_models(_settings(), arena_id=arena)
    if as_json:
        _print_json(models)
        return
    if not models:
        console.print(f"no registered versions of {_settings().model_name} yet (`cappuccino train` registers them)")
        return
    table = _wide_table(f"{_settings().model_name} (vN: version N)", ("model", "study", "trial", "stage", "aliases", "arena"))
    for m in models:
        record = m["arena"]
        arena_text = "-" if record is None else record["status"] + (
            f" in match {record['decided_in_match']}" if record["decided_in_match"] is not None else "")
        table.add_row(f"v{m['version']}", _cell(m["study"]), _cell(m["trial"]), _cell(m["stage"]),
                      ",".join(m["aliases"]) or "-", arena_text)
    console.print(table)


ModelOption = Annotated[str, typer.Option("--model", metavar="URI",
                                          help="models:/NAME/VERSION, models:/NAME@ALIAS, or king (the arena's king).")]
StartOption = Annotated[str, typer.Option("--start", metavar="TIME", help="First bar of the window (ISO-8601, UTC).")]
EndOption = Annotated[str, typer.Option("--end", metavar="TIME", help="End of the window, exclusive (ISO-8601, UTC).")]


def _model_backtest(model: str, start: str, end: str):
    """Backtest ``model`` on ``[start, end)``, or stop with one line saying why it cannot be."""
    from cappuccino_core.views.model_backtest import BacktestRefused, backtest_model

    settings = _settings()
    first, stop = _time(start), _time(end)
    try:
        return backtest_model(settings, model, first, stop)
    except BacktestRefused as exc:
        from rich.markup import escape

        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)  # e.g. a list of symbols in brackets
        raise typer.Exit(2) from None


@app.command("backtest")
def backtest_cmd(
    model: ModelOption,
    start: StartOption,
    end: EndOption,
    export: Annotated[Optional[Path], typer.Option("--export", metavar="FILE.csv", help="Write every trade to this CSV file.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Backtest a registered model on stored bars with the arena's backtester, costs and risk layers, beside the baselines."""
    result = _model_backtest(model, start, end)
    doc = result.to_dict()
    if export is not None:
        from cappuccino_core.views.model_backtest import write_trades_csv

        rows = write_trades_csv(result, export)
        (err_console if as_json else console).print(f"wrote {rows} trade(s) to {export}", highlight=False, soft_wrap=True)
    if as_json:
        _print_json(doc)
        return
    _print_backtest(doc)


@app.command("plot")
def plot_cmd(
    model: ModelOption,
    start: StartOption,
    end: EndOption,
    out: Annotated[Optional[Path], typer.Option("--out", metavar="FILE.png",
                                                help="Where to write the PNG (default: <home>/plots/).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Draw a backtest: candles per pair with the model's trades and weights, and its equity beside the baselines."""
    result = _model_backtest(model, start, end)
    from cappuccino_core.views.model_plot import plot_backtest

    if out is None:
        name = (result.loaded.model_version and f"v{result.loaded.model_version}") or "model"
        out = Path(_settings().home) / "plots" / f"backtest-{name}-{result.start:%Y%m%d%H%M}-{result.end:%Y%m%d%H%M}.png"
    path = plot_backtest(result, out)
    if as_json:
        _print_json({"png": str(path), "model": result.model, "version": result.loaded.model_version,
                     "start": result.start.isoformat(), "end": result.end.isoformat(),
                     "symbols": list(result.panel.symbols), "trades": len(result.report.trades),
                     "baselines": [b.policy for b in result.baselines]})
        return
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)  # a path stays copyable


def _print_backtest(doc: dict) -> None:
    pct = lambda v: "-" if v is None else f"{v:+.2%}"  # noqa: E731
    num = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    env, risk = doc["conditions"], doc["conditions"]["risk"]
    version = f"v{doc['version']}" if doc["version"] else doc["model"]
    console.print(f"[bold]Backtest of {doc['model']}[/bold] ({version}, study {doc['study']})", highlight=False)
    console.print(f"{doc['interval']} bars, lookback {doc['lookback']}, {_short_time(doc['start'])} .. "
                  f"{_short_time(doc['end'])} UTC, {doc['steps']} steps", highlight=False)
    names = {"stop_loss": "stop-loss", "trailing_stop": "trailing stop", "max_position_fraction": "position cap",
             "portfolio_trailing_stop": "portfolio stop", "profit_take_threshold": "take profit at +",
             "move_to_cash_threshold": "move to cash"}
    rules = ", ".join(f"{label}{'' if label.endswith('+') else ' '}{risk[key]:.0%}" for key, label in names.items()
                      if risk.get(key) is not None) or "off"
    console.print(f"fee {env['fee_rate']:.2%}, slippage {env['slippage_bps']:g} bps; risk layers: {rules}", highlight=False)
    table = _wide_table("Beside the baselines (same bars and costs)",
                        ("policy", "return", "Sharpe", "max DD", "alpha", "trades", "win rate"))
    for name, m in [("model", doc["metrics"]), *((b["name"], b["metrics"]) for b in doc["baselines"])]:
        table.add_row(name, pct(m["total_return"]), num(m["sharpe"]), "-" if m["max_drawdown"] is None else f"{m['max_drawdown']:.2%}",
                      pct(m["alpha"]), _cell(m["trade_count"]), "-" if m["win_rate_trades"] is None else f"{m['win_rate_trades']:.0%}")
    console.print(table)
    pairs = _wide_table("Profit per pair",
                        ("pair", "trades", "closed", "wins", "win rate", "P&L", "P&L % of cash"))
    for p in doc["pairs"]:
        pairs.add_row(p["symbol"], str(p["trades"]), str(p["closed"]), str(p["wins"]),
                      "-" if p["win_rate"] is None else f"{p['win_rate']:.0%}", f"{p['pnl']:,.2f}", pct(p["pnl_fraction"]))
    console.print(pairs)
    exits = _wide_table("Exit reasons", ("reason", "by", "trades", "wins", "P&L"))
    for e in doc["exit_reasons"]:
        by = "risk layer" if e["risk_layer"] else "still open" if e["reason"] == "end" else "policy"
        exits.add_row(e["reason"], by, str(e["trades"]), str(e["wins"]), f"{e['pnl']:,.2f}")
    console.print(exits if doc["exit_reasons"] else "no trades")
    shown = doc["trades"][-10:]
    if shown:
        trades = _wide_table(f"Last {len(shown)} of {len(doc['trades'])} trades (--export writes all)",
                             ("pair", "entry", "exit", "bars", "P&L", "%", "exit reason"))
        for t in shown:
            trades.add_row(t["symbol"], _short_time(t["entry_time"])[5:], _short_time(t["exit_time"])[5:], str(t["bars_held"]),
                           f"{t['pnl']:,.2f}", pct(t["pnl_fraction"]), t["exit_reason"])
        console.print(trades)


def _trials_table(title: str, trials: list[dict]) -> Table:
    """Trials best first: number, value, minutes, the hyperparameters (cut to the terminal's width)."""
    table = Table(title=title, title_justify="left")
    table.add_column("trial", justify="right", no_wrap=True, min_width=5)
    table.add_column("value", justify="right", no_wrap=True, min_width=7)
    table.add_column("min", justify="right", no_wrap=True, min_width=5)
    table.add_column("parameters (--json shows all)", no_wrap=True)
    room = max(20, console.width - 33)  # what the other columns and the borders leave
    for t in trials:
        params = " ".join(f"{k}={_cell(v)}" for k, v in t["params"].items())
        params = params if len(params) <= room else params[: room - 1] + "…"
        minutes = "-" if t["seconds"] is None else f"{t['seconds'] / 60:.1f}"
        table.add_row(str(t["trial"]), f"{t['value']:.3f}", minutes, params)
    return table


def _with_progress(settings: Settings, name: str, cap: int, run_flow):
    """Run ``run_flow`` with a progress bar fed by the study storage (trials done / cap, best, ETA)."""
    import threading

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from cappuccino_core.search.location import StudyLocation
    from cappuccino_core.study.status import study_status
    from cappuccino_core.study.storage import StudyNotFound

    loc = StudyLocation.from_settings(settings)
    done = threading.Event()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("best {task.fields[best]}"), TimeRemainingColumn(), console=err_console) as bar:
        task = bar.add_task(name, total=cap, best="-")

        def poll() -> None:
            while not done.wait(1.0):
                try:
                    s = study_status(loc.storage_url, name)
                except StudyNotFound:  # the flow has not created it yet: say so on the bar
                    bar.update(task, description=f"{name} (preparing)")
                    continue
                bar.update(task, description=name)
                finished = sum(v for k, v in s.trials_by_state.items() if k in ("COMPLETE", "PRUNED", "FAIL"))
                best = "-" if s.best_value is None else f"{s.best_value:.3f}"
                bar.update(task, completed=finished, total=s.cap or cap, best=best)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            return _run_flow_or_exit(run_flow)
        finally:
            done.set()
            thread.join()


def _run_flow_or_exit(run_flow):
    from cappuccino_core.data.errors import StaleDataError
    from cappuccino_core.search.location import StudyError

    try:
        return run_flow()
    except (StaleDataError, StudyError, ValueError, LookupError) as exc:
        err_console.print(f"[red]error:[/red] {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None


def _print_summary(summary: dict) -> None:
    states = ", ".join(f"{k.lower()} {v}" for k, v in summary["trials_by_state"].items() if v)
    console.print(f"study {summary['name']}: {summary['total_trials']} trials of cap {summary['cap']} ({states})")
    best = summary["best_value"]
    console.print(f"best value {best if best is None else f'{best:.4f}'} (trial {summary['best_trial']})")
    pbo = summary["pbo"]
    console.print(f"PBO {'n/a: ' + str(summary['pbo_reason']) if pbo is None else f'{pbo:.3f}'}; "
                  f"DSR {summary['dsr'] if summary['dsr'] is None else format(summary['dsr'], '.3f')} "
                  f"over {summary['dsr_tests']} trials tried")
    if summary["stopped_early"]:
        console.print(f"stopped early: {summary['stop_reason']}")


arena_app = typer.Typer(no_args_is_help=True, help="Phase 4: the tournament arena (king of the hill).")
app.add_typer(arena_app, name="arena")


@arena_app.command("run")
def arena_run(
    arena: Annotated[str, typer.Option(metavar="ID", help="Arena id.")] = "main",
    max_matches: Annotated[Optional[int], typer.Option("--max-matches", min=1, metavar="N", help="Stop after this many matches.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Admit new candidates from the registry, play every pending match, mirror into MLflow."""
    from flows.tournament import TournamentParams, tournament

    _settings()  # fail early, naming the bad setting
    report = _run_flow_or_exit(lambda: tournament(params=TournamentParams(arena=arena, max_matches=max_matches)))
    if as_json:
        _print_json(report.model_dump(mode="json"))
        return
    repaired = f"; redid the MLflow mirror of {report.repaired_mirror} match(es)" if report.repaired_mirror else ""
    console.print(f"admitted {len(report.admitted)} candidate(s), played {len(report.played)} match(es){repaired}")
    _print_arena(report.status)


@arena_app.command("status")
def arena_status_cmd(
    arena: Annotated[str, typer.Option(metavar="ID", help="Arena id.")] = "main",
    last: Annotated[int, typer.Option(min=1, max=1000, metavar="N", help="How many recent matches to show.")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """The king and its streak, entrants waiting, eliminated and promoted counts, the last matches."""
    from cappuccino_core.arena.standing import arena_status

    try:
        doc = arena_status(_settings(), arena_id=arena, last=last)
    except LookupError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
        return
    _print_arena(doc)


def _print_arena(doc: dict) -> None:
    king = f"{doc['king']} (study {doc['king_study']})" if doc["king"] else "none"
    console.print(f"arena {doc['arena']}: king {king}, streak {doc['streak']} of {doc['rules']['promotion_streak']}")
    console.print(f"{doc['waiting']} waiting, {doc['eliminated']} eliminated, {doc['promoted']} promoted, "
                  f"{doc['matches_played']} matches played")
    if doc["unmirrored_matches"]:
        console.print(f"[yellow]{doc['unmirrored_matches']} match(es) not in MLflow yet (the next run mirrors them)[/yellow]")
    score = lambda value: "-" if value is None else f"{value:.3f}"  # noqa: E731
    short = lambda uri: "v" + uri.rsplit("/", 1)[1] if uri.startswith("models:/") else uri  # noqa: E731
    table = Table(title="Last matches (vN: model version N)")
    for col in ("#", "king", "score", "challenger", "score", "outcome", "streak", "note"):
        table.add_column(col)
    for m in doc["last_matches"]:
        note = (f"promoted {m['promoted']}" if m["promoted"] else f"no edge: {m['rejected']}" if m["rejected"]
                else f"forfeit: {m['forfeit']}" if m["forfeit"] else "")
        table.add_row(str(m["match"]), short(m["king"]), score(m["king_score"]), short(m["challenger"]),
                      score(m["challenger_score"]), m["outcome"], str(m["streak"]), note)
    console.print(table)


sandbox_app = typer.Typer(no_args_is_help=True, help="Phase 5: sandbox paper trading.")
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("status")
def sandbox_status_cmd(as_json: JsonFlag = False) -> None:
    """Show each sandbox model: start, elapsed time, equity, return, alpha, Sharpe, drawdown, trades, errors."""
    from cappuccino_core.db import default_database_url, make_engine
    from cappuccino_core.sandbox.report import sandbox_status

    status = sandbox_status(make_engine(default_database_url(_settings().home)))
    if as_json:
        sys.stdout.write(json.dumps(status, indent=2) + "\n")
        return
    if not status["runs"]:
        console.print("no sandbox runs")
        return

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:+.2%}"

    table = _wide_table("Sandbox (vN: model version N)",
                        ("model", "state", "elapsed", "equity", "return", "alpha", "Sharpe", "max DD", "trades", "errors"))
    for r in status["runs"]:
        table.add_row(
            _short_model(r["model"]), r["state"], f"{r['elapsed_seconds'] / 3600:.1f} h",
            "-" if r["equity"] is None else f"{r['equity']:,.2f}", pct(r["return"]), pct(r["alpha"]),
            "-" if r["sharpe"] is None else f"{r['sharpe']:.2f}",
            "-" if r["max_drawdown"] is None else f"{r['max_drawdown']:.2%}", str(r["trades"]),
            str(r["errors"]),
        )
    console.print(table)


@app.command("portfolio")
def portfolio_cmd(
    stage: Annotated[Optional[str], typer.Option("--stage", metavar="STAGE",
                                                 help="sandbox, production or live (default: all).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Each trader's portfolio at its last step: positions, cash, equity, P&L since entry, open orders."""
    from cappuccino_core.views.portfolio import PortfolioStage, portfolios

    try:
        wanted = None if stage is None else PortfolioStage(stage)
    except ValueError:
        err_console.print(f"[red]error:[/red] --stage must be one of {', '.join(s.value for s in PortfolioStage)}, "
                          f"not {stage!r}", highlight=False)
        raise typer.Exit(2) from None
    docs = portfolios(_settings(), wanted)
    if as_json:
        _print_json({"portfolios": docs})
        return
    if not docs:
        console.print(f"no {wanted or 'sandbox, production or live'} trader yet", highlight=False)
        return
    money = lambda v: "-" if v is None else f"{v:,.2f}"  # noqa: E731
    table = _wide_table("Portfolios at each trader's last decided bar (vN: version N)",
                        ("stage", "model", "state", "as of (UTC)", "equity", "cash", "P&L", "P&L %", "orders"))
    for d in docs:
        table.add_row(d["stage"], _short_model(d["model"]), d["state"], _short_time(d["as_of"])[5:] or "-",
                      money(d["equity"]), money(d["cash"]), money(d["pnl"]),
                      "-" if d["pnl_fraction"] is None else f"{d['pnl_fraction']:+.2%}", str(len(d["open_orders"])))
    console.print(table)
    for d in docs:
        last = d["last_step"]
        step = "no step yet" if last is None else (f"last step {_short_time(last['bar'])} {last['status']}, "
                                                   f"recorded {_short_time(last['recorded_at'])}")
        console.print(f"\n[bold]{d['stage']} {_short_model(d['model'])}[/bold] ({d['trader_id']}): {step}", highlight=False)
        if d["positions"]:
            held = _wide_table("", ("pair", "units", "price", "value", "weight"))
            for pos in d["positions"]:
                held.add_row(pos["symbol"], f"{pos['units']:.6g}", money(pos["price"]), money(pos["value"]),
                             "-" if pos["weight"] is None else f"{pos['weight']:.1%}")
            console.print(held)
        elif d["as_of"] is not None:
            console.print("no positions: all cash")
        for o in d["open_orders"]:
            size = f"{o['qty']:.6g} units" if o["qty"] is not None else f"{money(o['notional'])} notional"
            console.print(f"open order: {o['side']} {o['symbol']} {size} ({o['status']})", highlight=False)


home_app = typer.Typer(no_args_is_help=True, help="The runtime home: relocate a copied home.")
app.add_typer(home_app, name="home")


@home_app.command("relocate")
def home_relocate(
    old: Annotated[Optional[Path], typer.Option("--from", metavar="DIR",
                                                help="The home this one was copied from (default: what MLflow recorded).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Point a copied or moved home's stores at itself (MLflow records artifact paths as absolute)."""
    from cappuccino_core.tracking.relocation import RelocationError, relocate_home

    settings = _settings()
    # Named, never shown: a database URL may hold a password.
    skipped = tuple(name for name, value in (("the MLflow store of MLFLOW_TRACKING_URI", os.environ.get("MLFLOW_TRACKING_URI")),
                                             ("the study storage of CAPPUCCINO_STUDY_STORAGE", settings.study_storage))
                    if value)
    try:
        done = relocate_home(Path(settings.home), old, skipped=skipped)
    except RelocationError as exc:
        from rich.markup import escape

        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        _print_json(done.to_dict())
        return
    counts = ", ".join(f"{store}: {n}" for store, n in done.rewritten.items())
    console.print(f"home {done.new_home}: rewrote {sum(done.rewritten.values())} recorded path(s) under "
                  f"{done.old_home} ({counts})", highlight=False, soft_wrap=True)
    for store in done.skipped:
        console.print(f"[yellow]not rewritten (outside the home): {store}[/yellow]", highlight=False)
    if done.remaining:
        err_console.print(f"[red]error:[/red] {done.remaining} value(s) still name {done.old_home}")
        raise typer.Exit(1)


def _who() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


@app.command("status")
def status_cmd(as_json: JsonFlag = False) -> None:
    """One board of the whole pipeline: data, study, arena, sandbox, production, live and its capital, transitions, alerts."""
    from cappuccino_core.operations.status_board import status_board

    board = status_board(_settings())
    if as_json:
        sys.stdout.write(json.dumps(board, indent=2, default=str) + "\n")
        return
    _print_board(board)


def _print_board(board: dict) -> None:
    console.print(f"[bold]Cappuccino status[/bold] at {board['generated_at']}")
    halt = board["halt"]
    if halt["halted"]:
        console.print(f"[red bold]TRADING HALTED[/red bold] since {halt['since']} by {halt['who']}: {halt['reason']} "
                      "(`cappuccino resume` lifts it)")
    for title, doc in (("data", board["data"]), ("training study", board["study"]["training"]),
                       ("timeframe search", board["study"]["timeframe"]), ("arena", board["arena"]),
                       ("production (paper)", board["production"]), ("live", board["live"])):
        console.print(_fields_table(title, _readable_section(doc)))
    runs = Table(title="sandbox", title_justify="left")
    for col in ("model", "stage", "state", "bars", "return", "alpha", "sharpe", "errors"):
        runs.add_column(col)
    for r in board["sandbox"]:
        runs.add_row(_short_model(r["model"]), str(r["stage"]), r["state"], str(r["traded_bars"]),
                     _num(r["return"]), _num(r["alpha"]), _num(r["sharpe"]), str(r["errors"]))
    console.print(runs if board["sandbox"] else "sandbox: no runs")
    moves = Table(title="recent transitions", title_justify="left")
    for col in ("at", "model", "move", "why (who)"):
        moves.add_column(col, no_wrap=col != "why (who)")
    for t in board["transitions"]:
        moves.add_row(_short_time(t["at"]), _short_model(t["model_id"]), f"{t['from'] or '(new)'} → {t['to']}",
                      f"{t['why']} ({t['who']})")
    console.print(moves if board["transitions"] else "no transitions yet")
    alerts = Table(title="recent alerts", title_justify="left")
    for col in ("at", "level", "source", "message"):
        alerts.add_column(col, no_wrap=col != "message")
    for a in board["alerts"]:
        alerts.add_row(_short_time(a["at"]), a["level"], a["source"], a["message"])
    console.print(alerts if board["alerts"] else "no alerts")


def _readable_section(doc: dict) -> dict:
    """A board section for people: the green-light decision in words, times to the minute."""
    out = dict(doc)
    light = out.get("green_light")
    if isinstance(light, dict):
        verdict = "allowed" if light["allowed"] else "refused: " + "; ".join(light["failed"])
        out["green_light"] = f"{verdict} ({_short_time(light['decided_at'])})"
    for key in ("last_bar", "since"):
        if isinstance(out.get(key), str):
            out[key] = _short_time(out[key]) + " UTC"
    return out


def _short_model(ref: str) -> str:
    """``models:/name/12`` as ``v12`` (the tables' titles say which registered model)."""
    return "v" + ref.rsplit("/", 1)[1] if ref.startswith("models:/") else ref


def _short_time(iso: str | None) -> str:
    """An ISO time to the minute, without the zone (every time shown is UTC)."""
    return "" if not iso else str(iso)[:16].replace("T", " ")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@app.command("kill")
def kill_cmd(
    flatten: Annotated[bool, typer.Option("--flatten/--no-flatten", help="Close every position (default), or only cancel open orders.")] = True,
    reason: Annotated[str, typer.Option(metavar="TEXT", help="Why (recorded with the halt).")] = "cappuccino kill",
    as_json: JsonFlag = False,
) -> None:
    """Halt every trader now, cancel open orders and close positions; stays halted until `cappuccino resume`."""
    from cappuccino_core.operations.control import kill_trading
    from cappuccino_core.lifecycle.kill_switch import KillIncomplete
    from cappuccino_core.operations.site import LifecycleSite

    site = LifecycleSite.from_settings(_settings())
    try:
        report = kill_trading(site, who=_who(), reason=reason, flatten=flatten)
    except KillIncomplete as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        err_console.print(f"done: {exc.report.summary()}")
        raise typer.Exit(1) from None
    if as_json:
        _print_json(report.to_dict())
        return
    console.print(f"[red bold]trading halted[/red bold]; {report.summary()}; `cappuccino resume` lifts the halt")
    for broker in report.brokers:
        console.print(f"{broker.broker}: {len(broker.canceled)} order(s) canceled, "
                      f"{len(broker.closing_orders)} closing order(s) placed")


@app.command("resume")
def resume_cmd(
    reason: Annotated[str, typer.Option(metavar="TEXT", help="Why (recorded with the resume).")] = "cappuccino resume",
    as_json: JsonFlag = False,
) -> None:
    """Lift the halt set by `cappuccino kill` (or by the monitor's emergency): traders step again from the next bar."""
    from cappuccino_core.operations.control import resume_trading
    from cappuccino_core.operations.site import LifecycleSite

    state = resume_trading(LifecycleSite.from_settings(_settings()), who=_who(), reason=reason)
    if as_json:
        _print_json({"halted": state.halted, "reason": state.reason, "who": state.who,
                     "since": None if state.since is None else state.since.isoformat()})
        return
    console.print("trading resumed" if not state.halted else "[red]still halted[/red]")


@app.command("run")
def run(
    source: Annotated[Optional[DataSourceKind], typer.Option(metavar="SOURCE", help="Bar source: synthetic, alpaca or files (default: CAPPUCCINO_SOURCE).")] = None,
    path: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Directory of bar files (source=files).")] = None,
    trials: Annotated[Optional[int], typer.Option(min=1, metavar="N", help="Hard cap on training trials (default CAPPUCCINO_TRAIN_TRIALS).")] = None,
    timeframe_trials: Annotated[Optional[int], typer.Option(min=1, metavar="N", help="Timeframe-search trials (default CAPPUCCINO_TIMEFRAME_TRIALS).")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, metavar="N", help="Worker processes per study (default 1; 2 with --demo).")] = None,
    name: Annotated[Optional[str], typer.Option(metavar="NAME", help="Run name (default pipeline-YYYYMMDD); the same name resumes.")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="The small demo budget on the synthetic market (make run).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run the whole pipeline: ingest, gate, timeframe search, training, tournament, sandbox, promotion, green light."""
    from flows.pipeline import PipelineParams, PipelineStageError, pipeline

    from cappuccino_core.config import RunOverrides
    from cappuccino_core.pipeline.demo import DEMO_OVERRIDES, DEMO_WORKERS

    overrides = RunOverrides(**DEMO_OVERRIDES) if demo else RunOverrides()
    try:
        params = PipelineParams(name=name, source=source, files_path=None if path is None else str(path), trials=trials,
                                timeframe_trials=timeframe_trials, workers=workers or (DEMO_WORKERS if demo else 1),
                                overrides=overrides)
        settings = load_settings(**params.run_overrides().values())
    except (SettingsError, ValueError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    install_scrub_filter(settings.secret_values(), [logging.getLogger("apprise")])
    _refuse_unservable(settings)
    (err_console if as_json else console).print(f"pipeline on the {settings.source} market, home {Path(settings.home).resolve()}"
                  + (" (demo budget)" if demo else ""))
    try:
        with _stage_progress(err_console if as_json else console):
            report = pipeline(params=params)
    except PipelineStageError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        err_console.print("earlier stages' results are kept; run the same command again to resume.")
        raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(json.dumps(report.model_dump(mode="json"), indent=2, default=str) + "\n")
    else:
        _print_pipeline(report.model_dump(mode="json"))


@contextmanager
def _stage_progress(out: Console) -> Iterator[None]:
    """Print the pipeline's stage lines as they happen; without -v, Prefect's console chatter is hidden."""
    verbose = logging.getLogger().getEffectiveLevel() <= logging.INFO
    printer = _StagePrinter(out)
    stages = logging.getLogger("cappuccino.pipeline")
    stages.addHandler(printer)
    stages.setLevel(logging.INFO)
    quieted = [] if verbose else _prefect_console_handlers()
    for handler, _level in quieted:
        handler.setLevel(logging.WARNING)
    try:
        yield
    finally:
        stages.removeHandler(printer)
        for handler, level in quieted:
            handler.setLevel(level)


class _StagePrinter(logging.Handler):
    def __init__(self, out: Console) -> None:
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out.print(record.getMessage(), highlight=False)


def _prefect_console_handlers() -> list[tuple[logging.Handler, int]]:
    """Prefect's console handlers (its API handler is left alone, so the UI keeps every log)."""
    found = []
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and handler not in (h for h, _ in found):
                found.append((handler, handler.level))
    return found


def _print_pipeline(doc: dict) -> None:
    from cappuccino_core.pipeline.summary import summary_lines

    for line in summary_lines(doc):
        console.print(line, highlight=False)


class _NoTracebackForExpected(logging.Filter):
    """Drop the traceback Prefect logs with a flow run's exception when it is an expected ingest failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        from flows.ingest import IngestError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, IngestError) and error.expected:
            record.exc_info, record.exc_text = None, None
        return True


def _run_ingest(params: "IngestParams", *, as_json: bool = False) -> None:
    from flows.ingest import IngestError, ingest

    show = (lambda r: _print_json(r.model_dump(mode="json"))) if as_json else _print_ingest
    quiet = _NoTracebackForExpected()
    flow_log = logging.getLogger("prefect.flow_runs")
    flow_log.addFilter(quiet)
    try:
        report = ingest(params=params)
    except IngestError as exc:
        show(exc.report)
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        flow_log.removeFilter(quiet)
    show(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_ingest(report) -> None:
    table = Table(title=f"Ingest ({report.source}, {report.window_start} → {report.window_end})")
    for col in ("symbol", "interval", "fetched", "added", "stored", "error"):
        table.add_column(col)
    for item in report.symbols:
        table.add_row(item.symbol, item.interval, str(item.fetched), str(item.added), str(item.rows_after), item.error or "")
    console.print(table)
    if report.status is not None:
        _print_status_dict(report.status)


def _print_status(status) -> None:
    _print_status_dict(status.to_dict())


def _print_status_dict(doc: dict) -> None:
    table = _wide_table("Data status (miss: missing bars, max: longest gap)",
                        ("symbol", "int", "first", "last bar (UTC)", "rows", "miss", "gaps", "max", "dup", "0 vol", "state"))
    stale = {(s["symbol"], s["interval"]) for s in doc["verdict"]["stale"]}
    broken = {(s["symbol"], s["interval"]) for s in doc["verdict"]["broken"]}
    short = lambda iso: "" if not iso else str(iso)[:16].replace("T", " ")  # noqa: E731
    for row in doc["series"]:
        key = (row["symbol"], row["interval"])
        state = "[red]broken[/red]" if key in broken else "[yellow]stale[/yellow]" if key in stale else "[green]fresh[/green]"
        longest = row.get("longest_gap") or {}
        table.add_row(
            row["symbol"], row["interval"], short(row.get("first_bar"))[:10], short(row.get("last_bar")), str(row.get("rows")),
            str(row.get("missing_bars")), str(row.get("gap_runs")), str(longest.get("bars", 0) if longest else 0),
            str(row.get("duplicates")), str(row.get("zero_volume_bars")), state,
        )
    console.print(table)
    colour = "green" if doc["ok"] else "red"
    console.print(f"[{colour}]{doc['verdict']['message']}[/{colour}]")


@app.command("backup")
def backup_cmd(
    keep: Annotated[Optional[int], typer.Option(min=1, metavar="N", help="Backups to keep (default CAPPUCCINO_BACKUP_KEEP).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Snapshot the home (databases through SQLite's online backup, MLflow store and artifacts, bars, journals); keep the last N."""
    from cappuccino_core.backup import BackupError, back_up_home
    from cappuccino_core.clock import SystemClock

    try:
        backup = back_up_home(_settings(), at=SystemClock().now(), keep=keep)
    except (BackupError, OSError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        _print_json(backup.to_dict())
        return
    console.print(f"backup {backup.path}: {len(backup.files)} file(s), {backup.databases} database(s)"
                  + (f"; deleted {len(backup.pruned)} older backup(s)" if backup.pruned else ""))
    for line in backup.skipped:
        console.print(f"[yellow]not in the backup:[/yellow] {line}")


@app.command("restore")
def restore_cmd(
    backup: Annotated[str, typer.Argument(metavar="BACKUP", help="A backup folder, its name in the backups folder, or 'latest'.")],
    force: Annotated[bool, typer.Option("--force", help="Restore even while trader steps or study workers run in the home.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Bring a backup back into its home, or into an empty home elsewhere (then relocated); what the home held is moved aside."""
    from cappuccino_core.backup import BackupError, backups_folder, resolve_backup, restore
    from cappuccino_core.clock import SystemClock

    settings = _settings()
    try:
        folder = backups_folder(settings)
        report = restore(resolve_backup(backup, folder), settings.home, at=SystemClock().now(), force=force,
                         backups_dir=folder)
    except (BackupError, OSError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        _print_json(report.to_dict())
        return
    console.print(f"restored {report.backup} into {report.home}: {report.files} file(s)"
                  + (f"; the previous content is in {report.moved_aside}" if report.moved_aside else ""))


if __name__ == "__main__":  # pragma: no cover
    app()
