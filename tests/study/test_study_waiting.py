"""A queued (WAITING) trial is claimed by exactly one worker, however many race for it.

The timeframe grid queues every cell as a WAITING trial and two workers pop them. Optuna's
WAITING -> RUNNING step reads the trial and then writes it; on SQLite that read runs outside a
transaction, so two processes could both see WAITING and both run the same trial (the second
then failed with "Cannot tell a COMPLETE trial", which killed a worker of the demo).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import optuna

from cappuccino_core.study import open_storage, prepare_study
from tests.conftest import REPO

QUEUED = 120
WORKERS = 3

_CLAIM = """
import json, sys, pathlib
import optuna
from cappuccino_core.study import TrialCapReached, open_storage
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, name, go = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
study = optuna.load_study(study_name=name, storage=open_storage(url))
while not go.exists():
    pass
claimed = []
while True:
    try:
        trial = study.ask()  # pops a WAITING trial; with none left the cap refuses a new one
    except TrialCapReached:
        break
    claimed.append(trial.number)
    study.tell(trial, trial.suggest_float("x", 0.0, 1.0))
print(json.dumps(claimed))
"""


def test_each_queued_trial_is_claimed_by_exactly_one_of_several_workers(place, tmp_path) -> None:
    prepare_study(place.url, place.name, sampler_seed=0, cap=QUEUED, attrs={})
    study = optuna.load_study(study_name=place.name, storage=open_storage(place.url))
    for i in range(QUEUED):
        study.enqueue_trial({"x": i / QUEUED})
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _CLAIM, place.url, place.name, str(go)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(WORKERS)]
    go.touch()
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    claims = Counter(n for out, _ in outputs for n in json.loads(out.strip().splitlines()[-1]))
    assert {n for n, c in claims.items() if c > 1} == set(), "trials run by more than one worker"
    assert sorted(claims) == list(range(QUEUED))
    states = Counter(t.state for t in study.get_trials(deepcopy=False))
    assert states == {optuna.trial.TrialState.COMPLETE: QUEUED}
