"""What a study is: stored with it (Optuna study user attr ``spec``), so every worker, on any
machine, rebuilds exactly the same objective, and a restart cannot change the rules mid-study.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from cappuccino_core.agents.config import PPOConfig
from cappuccino_core.data.intervals import Interval
from cappuccino_core.env.config import EnvConfig
from cappuccino_core.search.protocol import ProtocolConfig
from cappuccino_core.search.split import HistorySplit

MAX_TIMEFRAME_TRIALS = 100
MAX_TRAINING_TRIALS = 1000


class StudyKind(StrEnum):
    TIMEFRAME = "timeframe"  # Phase 2: interval x lookback
    TRAINING = "training"  # Phase 3: PPO and env hyperparameters


@dataclass(frozen=True)
class EarlyStopConfig:
    """Stop when the best value has not improved by ``min_delta`` over the last ``patience`` completed trials."""

    patience: int = 50
    min_delta: float = 0.01
    min_trials: int = 20


@dataclass(frozen=True)
class PrunerConfig:
    """Median pruning on the fold validation scores reported during training."""

    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    enabled: bool = True


@dataclass(frozen=True)
class StudySpec:
    """Everything that defines a study.

    Attributes:
        name: study name (also the MLflow experiment).
        kind: timeframe search or training study.
        cap: hard cap on trials of every state (<= 100 for Phase 2, <= 1000 for Phase 3).
        seed: base training seed (trial ``n`` trains with ``seed + n``) and the sampler seed.
        symbols, base_interval, max_gap_bars: the market, as stored.
        split: the time split (search | holdout | replay).
        intervals, lookbacks: Phase 2's choices; Phase 3 holds exactly one of each (its result).
        protocol: validation protocol.
        ppo, env: base configs (the budget lives in ``ppo.total_steps``).
        data_hashes: interval -> content hash of the bars the study was prepared on; a worker
            whose store gives other bars refuses to run.
        early_stop, pruner: stopping rules.
        model_name: registered model of the candidates; top_k: candidates registered.
        timeframe_study: the Phase 2 study this one took its interval and lookback from.
        prior_trials: trials tried before this study (Phase 2's), counted by the DSR.
        heartbeat_seconds: a running trial's worker beats this often; a trial silent for twice
            as long is failed (and retried once) by the next worker.
    """

    name: str
    kind: StudyKind
    cap: int
    seed: int
    symbols: tuple[str, ...]
    base_interval: Interval
    split: HistorySplit
    intervals: tuple[Interval, ...]
    lookbacks: tuple[int, ...]
    protocol: ProtocolConfig = ProtocolConfig()
    ppo: PPOConfig = PPOConfig()
    env: EnvConfig = EnvConfig()
    max_gap_bars: int = 3
    data_hashes: dict[str, str] = field(default_factory=dict)
    early_stop: EarlyStopConfig = EarlyStopConfig()
    pruner: PrunerConfig = PrunerConfig()
    model_name: str = "cappuccino-ppo"
    top_k: int = 10
    timeframe_study: str | None = None
    prior_trials: int = 0
    heartbeat_seconds: int = 30

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", StudyKind(self.kind))
        object.__setattr__(self, "base_interval", Interval(self.base_interval))
        object.__setattr__(self, "intervals", tuple(Interval(i) for i in self.intervals))
        object.__setattr__(self, "lookbacks", tuple(int(v) for v in self.lookbacks))
        object.__setattr__(self, "symbols", tuple(self.symbols))
        limit = MAX_TIMEFRAME_TRIALS if self.kind is StudyKind.TIMEFRAME else MAX_TRAINING_TRIALS
        if not 1 <= self.cap <= limit:
            raise ValueError(f"a {self.kind} study allows 1..{limit} trials, got cap={self.cap}")
        if not self.intervals or not self.lookbacks or any(v < 2 for v in self.lookbacks):
            raise ValueError(f"need at least one interval and lookbacks >= 2, got {self.intervals}, {self.lookbacks}")
        if self.kind is StudyKind.TRAINING and (len(self.intervals) != 1 or len(self.lookbacks) != 1):
            raise ValueError("a training study has exactly one interval and one lookback (Phase 2's choice)")
        if self.heartbeat_seconds < 1:
            raise ValueError(f"heartbeat_seconds must be >= 1, got {self.heartbeat_seconds}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")

    @property
    def interval(self) -> Interval:
        """The single interval of a training study."""
        return self.intervals[0]

    @property
    def lookback(self) -> int:
        return self.lookbacks[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": str(self.kind), "cap": self.cap, "seed": self.seed,
            "symbols": list(self.symbols), "base_interval": str(self.base_interval),
            "split": self.split.to_dict(), "intervals": [str(i) for i in self.intervals],
            "lookbacks": list(self.lookbacks), "protocol": self.protocol.to_dict(),
            "ppo": self.ppo.to_dict(), "env": self.env.to_dict(), "max_gap_bars": self.max_gap_bars,
            "data_hashes": dict(self.data_hashes), "early_stop": asdict(self.early_stop),
            "pruner": asdict(self.pruner), "model_name": self.model_name, "top_k": self.top_k,
            "timeframe_study": self.timeframe_study, "prior_trials": self.prior_trials,
            "heartbeat_seconds": self.heartbeat_seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySpec:
        d = dict(data)
        d["split"] = HistorySplit.from_dict(d["split"])
        d["protocol"] = ProtocolConfig.from_dict(d["protocol"])
        d["ppo"] = PPOConfig.from_dict(d["ppo"])
        d["env"] = EnvConfig.from_dict(d["env"])
        d["early_stop"] = EarlyStopConfig(**d["early_stop"])
        d["pruner"] = PrunerConfig(**d["pruner"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StudySpec:
        return cls.from_dict(json.loads(text))
