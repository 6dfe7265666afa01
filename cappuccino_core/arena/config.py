"""ArenaConfig: the rules of one king-of-the-hill tournament, typed, documented and checked once.

An arena's config is stored with the arena when it is created and may not change afterwards
(``ArenaStore.ensure_arena`` refuses a different one): the match windows, seeds and the
promotion rule of every recorded match depend on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from cappuccino_core.evaluation.scoring import SCORE_WINDOW_HOURS


@dataclass(frozen=True)
class ArenaConfig:
    """How matches are played and when a king is promoted.

    The holdout panel is cut into non-overlapping windows of ``window_hours`` (as bars of its interval). The latest
    ``confirmation_fraction`` of them are the **confirmation windows**: never used by a match,
    only by the edge test (``edge_test.edge_test``), so a king is never confirmed on the data
    it was selected on. Matches draw ``windows_per_match`` of the remaining **match windows**.
    """

    promotion_streak: int = 20
    """Consecutive wins after which the king is edge-tested and, if it passes, promoted."""
    windows_per_match: int | None = None
    """Evaluation windows both players trade in one match (drawn without replacement); ``None``:
    every match window, so each match compares the two players on the whole non-confirmation holdout."""
    window_hours: float = SCORE_WINDOW_HOURS
    """Length of one evaluation window in hours, converted to bars of each holdout's interval
    (``scoring.window_bars``): the same windows validation scores on."""
    window_bars: int | None = None
    """Steps per window, overriding ``window_hours`` (small test arenas); ``None``: from ``window_hours``."""
    seed: int = 0
    """Arena seed; match ``n`` draws its windows from a seed derived from ``(seed, n)``."""
    confirmation_fraction: float = 0.3
    """Share of the holdout windows (the latest ones) reserved for the edge test."""
    alpha_confidence: float = 0.95
    """Two-sided confidence of the bootstrap interval of the king's mean per-bar excess return."""
    n_bootstrap: int = 2000
    """Stationary-bootstrap resamples of the edge test."""
    bootstrap_block_length: int | None = None
    """Mean bootstrap block length in bars; None = ``ceil(n ** (1/3))``."""
    require_beat_baselines: bool = True
    """Promotion also requires a higher match score than every default baseline on the confirmation windows."""
    tie_tolerance: float = 1e-9
    """Scores closer than this (annualised Sharpe units) are a tie, which keeps the king."""
    prefetch_matches: int = 16
    """Evaluate the king and the next this-many challengers in one backtest batch."""
    torch_threads: int = 1
    """Intra-op torch threads while evaluating (arena batches are small: one thread is fastest and shares cores)."""

    def __post_init__(self) -> None:
        """Check every field; raise ValueError naming the bad ones."""
        checks = {
            "promotion_streak": _is_int(self.promotion_streak) and self.promotion_streak >= 1,
            "windows_per_match": self.windows_per_match is None
            or (_is_int(self.windows_per_match) and self.windows_per_match >= 1),
            "window_hours": isinstance(self.window_hours, int | float) and self.window_hours > 0,
            "window_bars": self.window_bars is None or (_is_int(self.window_bars) and self.window_bars >= 2),
            "seed": _is_int(self.seed) and self.seed >= 0,
            "confirmation_fraction": 0.0 < self.confirmation_fraction < 1.0,
            "alpha_confidence": 0.0 < self.alpha_confidence < 1.0,
            "n_bootstrap": _is_int(self.n_bootstrap) and self.n_bootstrap >= 100,
            "bootstrap_block_length": self.bootstrap_block_length is None
            or (_is_int(self.bootstrap_block_length) and self.bootstrap_block_length >= 1),
            "tie_tolerance": self.tie_tolerance >= 0.0,
            "prefetch_matches": _is_int(self.prefetch_matches) and self.prefetch_matches >= 1,
            "torch_threads": _is_int(self.torch_threads) and self.torch_threads >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"invalid ArenaConfig: {values}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArenaConfig:
        """Rebuild from ``to_dict`` output."""
        return cls(**data)

    def rules_dict(self) -> dict[str, Any]:
        """Return the fields that decide match outcomes (all but the throughput knobs)."""
        rules = self.to_dict()
        for knob in _THROUGHPUT_KNOBS:  # they never change a result
            del rules[knob]
        return rules

    def rules_hash(self) -> str:
        """Return a SHA-256 hex digest of ``rules_dict`` (stable key order)."""
        return hashlib.sha256(json.dumps(self.rules_dict(), sort_keys=True).encode()).hexdigest()


_THROUGHPUT_KNOBS = ("prefetch_matches", "torch_threads")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
