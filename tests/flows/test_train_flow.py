"""The timeframe-search and train flows under Prefect's harness, and their command line."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from cli.app import app
from cappuccino_core.data.errors import StaleDataError
from cappuccino_core.data.intervals import Interval
from flows.timeframe_search import TimeframeParams, timeframe_search
from flows.train import TrainParams, train
from tests.search.conftest import SYMBOLS, fill_store

cli = CliRunner()


@pytest.fixture
def study_env(cappuccino_env, monkeypatch):
    """A home holding 70 days of a 3-asset market and a tiny search budget; returns the data end."""
    store = fill_store(cappuccino_env / "store", days=70)
    small = {
        "SYMBOLS": ",".join(SYMBOLS), "HOLDOUT_WEEKS": "2", "SEARCH_INTERVALS": "1h,4h", "SEARCH_LOOKBACKS": "8,12",
        "TIMEFRAME_TRIALS": "2", "TIMEFRAME_STEPS": "5120", "TRAIN_TRIALS": "2", "TRAIN_STEPS": "5120",
        "TRAIN_ENVS": "16", "TRAIN_FOLDS": "1", "CANDIDATES": "1",
    }
    for key, value in small.items():
        monkeypatch.setenv(f"CAPPUCCINO_{key}", value)
    last = store.coverage("BTC/USD", Interval.H1).last_bar
    return last + timedelta(hours=1)


def test_training_refuses_stale_data_before_any_trial(prefect_harness, study_env) -> None:
    with pytest.raises(StaleDataError, match="stale"):
        timeframe_search(params=TimeframeParams(study="never"))


def test_timeframe_search_then_training_registers_a_candidate(prefect_harness, study_env) -> None:
    found = timeframe_search(params=TimeframeParams(study="tf", as_of=study_env))
    assert found.choice["interval"] in {"1h", "4h"} and found.choice["lookback"] in {8, 12}
    assert found.summary["total_trials"] == 2

    trained = train(params=TrainParams(study="tr", as_of=study_env))
    assert trained.summary["total_trials"] == 2
    assert trained.summary["dsr_tests"] == 4  # both phases' trials count
    # Only a trial with validation evidence of an edge is registered (the tiny budget may show none).
    shown = trained.summary["with_evidence"]
    assert len(trained.candidates) == min(shown, 1) and trained.selection["refused_without_evidence"] == 2 - shown
    assert all(c["version"] == "1" for c in trained.candidates)

    status = cli.invoke(app, ["train", "status", "--study", "tr", "--json"])
    assert status.exit_code == 0, status.output
    doc = json.loads(status.output)
    assert doc["name"] == "tr" and doc["cap"] == 2 and doc["total"] == 2
    assert doc["trials_by_state"]["RUNNING"] == 0
    assert doc["state"] == "finished"
    values = [t["value"] for t in doc["top_trials"]]
    assert len(values) == doc["trials_by_state"]["COMPLETE"] and values == sorted(values, reverse=True)
    shown_top = json.loads(cli.invoke(app, ["train", "show", "--study", "tr", "--top", "1", "--json"]).stdout)
    assert [t["trial"] for t in shown_top["top_trials"]] == [doc["top_trials"][0]["trial"]]
    one = json.loads(cli.invoke(app, ["train", "show", "--study", "tr", "--trial", "1", "--json"]).stdout)
    assert one["trial"] == 1 and one["state"] in {"complete", "pruned", "fail"} and one["params"]
    missing = cli.invoke(app, ["train", "show", "--study", "tr", "--trial", "7"])
    assert missing.exit_code == 1 and "has no trial 7" in missing.output
    models = json.loads(cli.invoke(app, ["models", "list", "--json"]).stdout)
    assert [(m["version"], m["study"], m["stage"]) for m in models] == [(1, "tr", "candidate")] * len(trained.candidates)
    table = cli.invoke(app, ["train", "status", "--study", "tr"], terminal_width=80)
    assert table.exit_code == 0 and "finished" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80

    # The command line resumes the same study: the cap is reached, nothing more runs.
    again = cli.invoke(app, ["search", "timeframe", "--study", "tf", "--as-of", study_env.isoformat()])
    assert again.exit_code == 0, again.output
    assert "2 trials of cap 2" in again.output
