"""The market a home was built on: recorded at its first ingest, used by every later run on it.

The stored bars of a home are defined by a few settings: the source, the synthetic market's
seed and plant strength (or the files directory), the symbols, the base interval and the
history length. A run may set them (``cappuccino run --demo`` sets a planted market of one
year), but a scheduled deployment on the same home knows only the configuration: without a
record it would regenerate another market and every refresh would be refused by the store.

So the first ingest that stores bars writes ``<home>/market.json`` (``record_market``), and
``load_settings`` passes every settings object through ``settle_market``: a field not set
explicitly (by an argument, a run override, the environment or ``cappuccino.toml``) takes the
recorded value; an explicitly different value is refused in one line naming the difference
(``MarketMismatch``). A run may name a subset of the recorded symbols; a symbol the home does
not hold is a different market. The record is never rewritten: another market needs another
home.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cappuccino_core.clock import ensure_utc
from cappuccino_core.config.settings import DataSourceKind, Settings, SettingsError
from cappuccino_core.data.intervals import Interval

MARKET_FILE = "market.json"
"""The record's file name in the home."""

FORMAT_VERSION = 1


class MarketMismatch(SettingsError):
    """A run asks for another market than the one its home was built on (the message names the difference)."""


class MarketRecordError(SettingsError):
    """The home's market record cannot be read (the message names the file and the problem)."""


@dataclass(frozen=True)
class MarketRecord:
    """The settings that define a home's stored bars, as its first ingest stored them.

    Attributes:
        source: where the bars came from.
        symbols: the pairs stored, in the configured order.
        base_interval: the interval bars are stored at.
        history_days: days of history every full-window ingest fetches.
        synthetic_seed: the synthetic market's seed (None for another source).
        synthetic_plant_strength: the synthetic market's plant strength (None for another source).
        files_path: the directory of bar files (None for another source).
        first_start: open time of the first bar the first ingest asked for (what the home holds from).
        recorded_at: when the record was written (UTC).
    """

    source: DataSourceKind
    symbols: tuple[str, ...]
    base_interval: Interval
    history_days: int
    synthetic_seed: int | None
    synthetic_plant_strength: float | None
    files_path: str | None
    first_start: datetime
    recorded_at: datetime

    @classmethod
    def of(cls, settings: Settings, *, first_start: datetime, recorded_at: datetime) -> MarketRecord:
        """The record of the market ``settings`` describe."""
        synthetic = settings.source is DataSourceKind.SYNTHETIC
        files = settings.source is DataSourceKind.FILES
        return cls(
            source=DataSourceKind(settings.source), symbols=tuple(settings.symbols),
            base_interval=Interval(settings.base_interval), history_days=settings.history_days,
            synthetic_seed=settings.synthetic_seed if synthetic else None,
            synthetic_plant_strength=settings.synthetic_plant_strength if synthetic else None,
            files_path=str(settings.files_path) if files and settings.files_path is not None else None,
            first_start=ensure_utc(first_start), recorded_at=ensure_utc(recorded_at),
        )

    def describe(self) -> str:
        """The market in a few words: ``synthetic seed 7 plant 2.0, 7 symbols at 1h, 365 days``."""
        if self.source is DataSourceKind.SYNTHETIC:
            market = f"synthetic seed {self.synthetic_seed} plant {self.synthetic_plant_strength:g}"
        elif self.source is DataSourceKind.FILES:
            market = f"files from {self.files_path}"
        else:
            market = str(self.source)
        return f"{market}, {len(self.symbols)} symbols at {self.base_interval}, {self.history_days} days"

    def defined_values(self) -> dict[str, Any]:
        """The settings fields this record defines, with their recorded values (typed as ``Settings`` holds them)."""
        values: dict[str, Any] = {"source": self.source, "symbols": self.symbols,
                                  "base_interval": self.base_interval, "history_days": self.history_days}
        if self.source is DataSourceKind.SYNTHETIC:
            values |= {"synthetic_seed": self.synthetic_seed, "synthetic_plant_strength": self.synthetic_plant_strength}
        if self.source is DataSourceKind.FILES:
            values["files_path"] = None if self.files_path is None else Path(self.files_path)
        return values

    def differences(self, settings: Settings, explicit: set[str]) -> list[str]:
        """One phrase per explicitly set field of ``settings`` that asks for another market."""
        out = []
        for name, recorded in self.defined_values().items():
            if name not in explicit:
                continue
            asked = getattr(settings, name)
            if name == "symbols":
                extra = [s for s in asked if s not in recorded]
                if extra:
                    out.append(f"symbols {', '.join(extra)} are not in it")
            elif name == "files_path":
                if asked is None or Path(asked).resolve() != Path(recorded).resolve():
                    out.append(f"files_path {asked} differs")
            elif asked != recorded:
                out.append(f"{name} {_shown(asked)} differs")
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON document of ``market.json``."""
        return {"format": FORMAT_VERSION, "source": str(self.source), "symbols": list(self.symbols),
                "base_interval": str(self.base_interval), "history_days": self.history_days,
                "synthetic_seed": self.synthetic_seed, "synthetic_plant_strength": self.synthetic_plant_strength,
                "files_path": self.files_path, "first_start": self.first_start.isoformat(),
                "recorded_at": self.recorded_at.isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MarketRecord:
        """Parse the JSON document of ``market.json``.

        Raises:
            ValueError: a field is missing or has the wrong type (the message names it).
        """
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {data.get('format')!r} is not {FORMAT_VERSION}")
        try:
            seed, plant = data["synthetic_seed"], data["synthetic_plant_strength"]
            return cls(
                source=DataSourceKind(data["source"]), symbols=tuple(str(s) for s in data["symbols"]),
                base_interval=Interval.parse(data["base_interval"]), history_days=int(data["history_days"]),
                synthetic_seed=None if seed is None else int(seed),
                synthetic_plant_strength=None if plant is None else float(plant),
                files_path=data["files_path"], first_start=ensure_utc(datetime.fromisoformat(data["first_start"])),
                recorded_at=ensure_utc(datetime.fromisoformat(data["recorded_at"])),
            )
        except KeyError as exc:
            raise ValueError(f"field {exc.args[0]!r} is missing") from None


def market_path(home: Path) -> Path:
    """Where a home's market record lives."""
    return Path(home) / MARKET_FILE


def read_market(home: Path) -> MarketRecord | None:
    """Return the home's market record, or ``None`` when no ingest has stored bars in it yet.

    Raises:
        MarketRecordError: the file exists but is not a market record.
    """
    path = market_path(home)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return MarketRecord.from_dict(json.loads(text))
    except (ValueError, TypeError, AttributeError) as exc:
        raise MarketRecordError(f"{path}: not a market record ({exc}); restore it or use a new home") from None


def record_market(settings: Settings, *, first_start: datetime, now: datetime) -> MarketRecord:
    """Write the home's market record from ``settings`` unless one exists; return the record in force.

    Call it once bars were stored: a refused first ingest (no keys, a missing directory)
    leaves the home free for another market.
    """
    existing = read_market(settings.home)
    if existing is not None:
        return existing
    record = MarketRecord.of(settings, first_start=first_start, recorded_at=now)
    path = market_path(settings.home)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record.to_dict(), handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return record


def settle_market(settings: Settings) -> Settings:
    """Return ``settings`` on the market their home was built on (unchanged when it has no record).

    Raises:
        MarketMismatch: an explicitly set field asks for another market; names every difference.
        MarketRecordError: the record cannot be read.
    """
    record = read_market(settings.home)
    if record is None:
        return settings
    explicit = set(settings.model_fields_set)
    problems = record.differences(settings, explicit)
    if problems:
        raise MarketMismatch(f"this home ({settings.home}) was built on {record.describe()}; "
                             + "; ".join(problems) + "; use a new home (CAPPUCCINO_HOME) for another market")
    values = record.defined_values()
    if "symbols" in explicit:
        values["symbols"] = tuple(settings.symbols)  # a subset of the home's symbols
    return settings.model_copy(update=values)


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
