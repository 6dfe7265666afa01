"""Status reports a study truthfully; preparing and loading studies is safe and reproducible."""

from __future__ import annotations

import optuna
import pytest

from cappuccino_core.study import (
    DiminishingReturns,
    StudyNotFound,
    default_storage_url,
    load_study,
    prepare_study,
    run_worker,
    study_status,
)
from cappuccino_core.study.storage import redact_url


def test_status_counts_trials_by_state_and_reports_the_best(sqlite_place):
    url, name = sqlite_place.url, sqlite_place.name
    prepare_study(url, name, sampler_seed=0, cap=10, attrs={"interval": "1h"})
    outcomes = {0: 0.5, 1: "fail", 2: 0.9, 3: "prune", 4: 0.7}

    def objective(trial: optuna.Trial) -> float:
        outcome = outcomes[trial.number]
        if outcome == "fail":
            raise RuntimeError("boom")
        if outcome == "prune":
            raise optuna.TrialPruned()
        return outcome

    run_worker(load_study(url, name, sampler_seed=0), objective, max_trials=5)
    status = study_status(url, name)
    assert status.trials_by_state == {"COMPLETE": 3, "PRUNED": 1, "FAIL": 1, "RUNNING": 0, "WAITING": 0}
    assert (status.total, status.cap, status.remaining) == (5, 10, 5)
    assert (status.best_value, status.best_trial) == (0.9, 2)
    assert (status.stopped_early, status.stop_reason) == (False, None)
    assert status.to_dict()["trials_by_state"]["FAIL"] == 1


def test_status_of_a_minimising_study_picks_the_lowest_value(sqlite_place):
    url, name = sqlite_place.url, sqlite_place.name
    prepare_study(url, name, direction="minimize", sampler_seed=0, cap=3, attrs={})
    run_worker(load_study(url, name, sampler_seed=0), lambda trial: [3.0, 1.0, 2.0][trial.number])
    status = study_status(url, name)
    assert (status.best_value, status.best_trial) == (1.0, 1)


def test_status_shows_an_early_stop_and_its_reason(sqlite_place):
    url, name = sqlite_place.url, sqlite_place.name
    prepare_study(url, name, sampler_seed=0, cap=20, attrs={})
    rule = DiminishingReturns(patience=2, min_delta=0.1, min_trials=3)
    run_worker(load_study(url, name, sampler_seed=0), lambda trial: 1.0, early_stop=rule)
    status = study_status(url, name)
    assert status.stopped_early is True
    assert status.stop_reason.startswith("diminishing returns")
    assert status.total == 3


def test_status_of_an_empty_study_has_no_best(sqlite_place):
    prepare_study(sqlite_place.url, sqlite_place.name, sampler_seed=0, cap=3, attrs={})
    status = study_status(sqlite_place.url, sqlite_place.name)
    assert (status.total, status.best_value, status.best_trial) == (0, None, None)


def test_a_missing_study_is_named_with_its_storage(tmp_path):
    url = default_storage_url(tmp_path)
    with pytest.raises(StudyNotFound, match=r"'nope' not found in storage sqlite:///"):
        study_status(url, "nope")
    assert not (tmp_path / "optuna" / "studies.db").exists()  # status never creates a database
    prepare_study(url, "other", sampler_seed=0, cap=3, attrs={})
    with pytest.raises(StudyNotFound, match="'nope'"):
        study_status(url, "nope")
    with pytest.raises(StudyNotFound, match="'nope'"):
        load_study(url, "nope", sampler_seed=0)


def test_storage_urls_in_messages_hide_passwords():
    assert "hunter2" not in redact_url("postgresql+psycopg2://me:hunter2@db.local:5432/optuna")
    assert str(StudyNotFound("s", "postgresql://me:hunter2@db/x")).count("hunter2") == 0


def test_the_default_storage_url_is_absolute_under_the_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = default_storage_url(tmp_path.relative_to(tmp_path))  # "." as the home
    assert url == f"sqlite:///{tmp_path.resolve()}/optuna/studies.db"
    assert (tmp_path / "optuna").is_dir()


def test_preparing_a_study_twice_is_harmless_but_its_cap_never_changes(sqlite_place):
    url, name = sqlite_place.url, sqlite_place.name
    prepare_study(url, name, sampler_seed=3, cap=12, attrs={"window": [1, 2]})
    prepare_study(url, name, sampler_seed=3, cap=12, attrs={"window": (1, 2), "extra": "added"})
    with pytest.raises(ValueError, match=r"cap=12.*cap=13"):
        prepare_study(url, name, sampler_seed=3, cap=13, attrs={})
    with pytest.raises(ValueError, match="window"):
        prepare_study(url, name, sampler_seed=3, cap=12, attrs={"window": [1, 3]})
    with pytest.raises(ValueError, match="direction"):
        prepare_study(url, name, direction="minimize", sampler_seed=3, cap=12, attrs={})
    with pytest.raises(ValueError, match="reserved"):
        prepare_study(url, name, sampler_seed=3, cap=12, attrs={"stopped_early": False})
    attrs = optuna.load_study(study_name=name, storage=url).user_attrs
    assert attrs == {"cap": 12, "sampler_seed": 3, "window": [1, 2], "extra": "added"}


def first_params(url: str, name: str, **load_kwargs) -> list[float]:
    study = load_study(url, name, sampler_seed=11, **load_kwargs)
    run_worker(study, lambda trial: trial.suggest_float("x", 0.0, 1.0), max_trials=3)
    return [t.params["x"] for t in study.trials[-3:]]


def test_a_single_worker_is_reproducible_and_concurrent_workers_get_distinct_seeds(tmp_path):
    runs = []
    for run in ("a", "b"):
        url = default_storage_url(tmp_path / run)
        prepare_study(url, "s", sampler_seed=11, cap=10, attrs={})
        runs.append((url, first_params(url, "s")))
    assert runs[0][1] == runs[1][1]  # same seed, fresh study, one worker: same proposals

    url = runs[0][0]
    second_worker = first_params(url, "s")  # claims slot 1: seed 12
    assert second_worker != runs[0][1]
    # An explicit slot overrides the claim: slot 0 again means seed 11 again (TPE's first
    # ten trials are seeded random draws, independent of the history).
    assert first_params(url, "s", worker_index=0) == runs[0][1]
