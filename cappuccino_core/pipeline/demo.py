"""The demo budget of ``make run``: the whole pipeline on the embedded synthetic market in minutes.

A half-year of a synthetic market with a strong planted edge (``synthetic_plant_strength`` 2:
persistent trends that trailing returns reveal), 6 weeks kept for the arena (its last 30 % are
the edge test's confirmation windows: with 4 weeks, a 20-win king was refused because the
cash-heavy 60/40 baseline out-scored it on 9 falling days) and the week after them for the
offline sandbox replay. Small studies (6 timeframe trials, 48 training
trials of one walk-forward fold x 30k steps, no pruning) so that the arena has 48 candidates,
admitted best validation first: a king crowned among the first 28 still meets the 20
consecutive challengers the promotion rule asks for. (Among well-trained models the holdout
ranking is noisy: with 32 candidates the validation-best king won 14 matches before a model
ranked 16th by validation took the crown, which then ran out of challengers at 17 wins.) The rules are the
product's own; only the budget and the market are small.
"""

from __future__ import annotations

from typing import Any

DEMO_WORKERS = 2
"""Worker processes per study (this machine has 2 cores)."""

DEMO_OVERRIDES: dict[str, Any] = {
    "source": "synthetic",
    "history_days": 180,
    "synthetic_plant_strength": 2.0,
    "holdout_weeks": 6.0,
    "replay_weeks": 1.0,
    "search_intervals": ("1h", "4h"),
    "search_lookbacks": (10, 20, 40),
    "timeframe_trials": 6,
    "timeframe_steps": 15_000,
    "train_trials": 48,
    "train_steps": 30_000,
    "train_folds": 1,
    "prune_trials": False,
    "candidates": 48,
}
"""Settings the demo overrides (a ``RunOverrides``); everything else is the configured value."""
