"""The demo budget of ``make run``: the whole pipeline on the embedded synthetic market in minutes.

A year of a synthetic market with a strong planted edge (``synthetic_plant_strength`` 2:
persistent trends that trailing returns reveal). The last 13 weeks are held back: 12 for the
arena (weekly windows, the validation windows' length: 8 for matches, the last 4 for the edge
test's confirmation) and the final week for the offline sandbox replay. The timeframe search is
a grid of 1h and 4h x lookbacks 10, 20 and 40 with 2 seeds per cell; the training study has 48
trials of one walk-forward fold. Every trial gets 40,960 env steps, which the budget rule turns
into 64 parallel episodes x 32-bar rollouts = 20 PPO updates (``agents.budget``: the floor), and
validates on the same weekly windows of the second half of the search period. The trials with
validation evidence of an edge enter the arena as the networks they validated, best first. The
rules are the product's own (20 straight wins, the edge test, 2 days in the sandbox); only the
budget and the market are small.
"""

from __future__ import annotations

from typing import Any

DEMO_WORKERS = 2
"""Worker processes per study (this machine has 2 cores)."""

DEMO_OVERRIDES: dict[str, Any] = {
    "source": "synthetic",
    "history_days": 365,
    "synthetic_plant_strength": 2.0,
    "holdout_weeks": 12.0,
    "replay_weeks": 1.0,
    "search_intervals": ("1h", "4h"),
    "search_lookbacks": (10, 20, 40),
    "timeframe_trials": 12,
    "timeframe_steps": 40_960,
    "train_trials": 48,
    "train_steps": 40_960,
    "train_folds": 1,
    "prune_trials": False,
    "candidates": 48,
}
"""Settings the demo overrides (a ``RunOverrides``); everything else is the configured value."""
