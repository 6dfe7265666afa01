"""Settings: one typed model, read from ``CAPPUCCINO_*`` variables and an optional ``cappuccino.toml``.

This is the only module that reads the environment. Secrets (Alpaca keys) are ``SecretStr``:
they print as ``**********`` and are never logged or written to disk by Cappuccino.

Precedence (highest first): explicit arguments, environment variables, ``cappuccino.toml``
(path in ``CAPPUCCINO_CONFIG``, default ``./cappuccino.toml``), defaults.
"""

from __future__ import annotations

import os
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, create_model, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from cappuccino_core.data.intervals import SEARCH_INTERVALS, Interval
from cappuccino_core.data.symbols import parse_symbol
from cappuccino_core.lifecycle.limits import MonitorConfig
from cappuccino_core.lifecycle.ramp import RampConfig
from cappuccino_core.redaction import secrets_with_url_parts

DEFAULT_SYMBOLS: tuple[str, ...] = (
    "BTC/USD", "ETH/USD", "LTC/USD", "BCH/USD", "LINK/USD", "UNI/USD", "AAVE/USD",
)


class DataSourceKind(StrEnum):
    """Where bars come from."""

    SYNTHETIC = "synthetic"
    ALPACA = "alpaca"
    FILES = "files"


class SettingsError(ValueError):
    """Settings that cannot be used; the message names every offending field."""


class Settings(BaseSettings):
    """Everything Cappuccino can be told from outside the code."""

    model_config = SettingsConfigDict(
        env_prefix="CAPPUCCINO_",
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )

    home: Path = Field(Path(".cappuccino"), description="Runtime home: bar store, databases, MLflow store, reports.")
    symbols: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_SYMBOLS, description="Pairs to trade, BASE/QUOTE, comma-separated in the environment."
    )
    base_interval: Interval = Field(Interval.H1, description="Interval bars are fetched and stored at.")
    history_days: int = Field(730, ge=7, le=3650, description="Days of history to ingest (default 2 years).")
    source: DataSourceKind = Field(DataSourceKind.SYNTHETIC, description="Bar source: synthetic, alpaca or files.")
    files_path: Path | None = Field(None, description="Directory of {BASE}-{QUOTE}_{interval}.parquet|csv files (source=files).")
    alpaca_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("APCA_API_KEY_ID", "CAPPUCCINO_ALPACA_API_KEY"),
        description="Alpaca key id (env APCA_API_KEY_ID).",
    )
    alpaca_secret_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("APCA_API_SECRET_KEY", "CAPPUCCINO_ALPACA_SECRET_KEY"),
        description="Alpaca secret key (env APCA_API_SECRET_KEY).",
    )
    alpaca_data_url: str | None = Field(None, description="Override of Alpaca's market-data base URL (tests point it at a local server).")
    staleness_bars: int = Field(2, ge=0, description="A symbol is stale when its last bar closed more than this many bars ago.")
    staleness_grace_minutes: float = Field(15.0, ge=0, description="Extra allowance on top of staleness_bars for feed latency.")
    max_gap_bars: int = Field(3, ge=0, description="Training windows never cross a gap longer than this many missing bars.")
    synthetic_seed: int = Field(7, description="Seed of the embedded synthetic market.")
    synthetic_plant_strength: float = Field(
        1.0, ge=0, description="Strength of the synthetic market's planted predictable component (0 = no edge)."
    )
    study_storage: str | None = Field(
        None, description="SQLAlchemy URL of the Optuna studies (default: SQLite under home); PostgreSQL for several machines."
    )
    holdout_weeks: float = Field(4.0, gt=0, le=52, description="Most recent weeks kept back for the arena (never searched).")
    replay_weeks: float = Field(0.0, ge=0, le=52, description="Weeks after the holdout kept for an offline sandbox replay (0: none).")
    search_intervals: Annotated[tuple[Interval, ...], NoDecode] = Field(
        SEARCH_INTERVALS, description="Bar intervals the timeframe search may choose (those the store supports are used)."
    )
    search_lookbacks: Annotated[tuple[int, ...], NoDecode] = Field(
        (10, 20, 40, 60), description="Lookbacks (bars) the timeframe search may choose, comma-separated."
    )
    timeframe_trials: int = Field(50, ge=1, le=100, description="Trials of the timeframe search (Phase 2), at most 100.")
    timeframe_steps: int = Field(50_000, ge=1, description="Training env steps per fold in the timeframe search (reduced budget).")
    train_trials: int = Field(1000, ge=1, le=1000, description="Hard cap on trials of a training study (Phase 3), at most 1000.")
    train_steps: int = Field(150_000, ge=1, description="Training env steps per fold in the training study.")
    train_folds: int = Field(3, ge=1, le=10, description="Walk-forward validation folds per trial.")
    train_envs: int = Field(256, ge=1, description="Parallel training episodes of a trial.")
    prune_trials: bool = Field(True, description="Median pruning of trials whose validation falls behind (both studies).")
    early_stop_patience: int = Field(50, ge=1, description="Stop a study when the best value has not improved for this many completed trials.")
    early_stop_min_delta: float = Field(0.01, ge=0, description="The least improvement of the best value that counts.")
    early_stop_min_trials: int = Field(20, ge=1, description="Never stop early before this many completed trials.")
    candidates: int = Field(10, ge=1, le=100, description="Best trials retrained and registered as arena candidates.")
    model_name: str = Field("cappuccino-ppo", min_length=1, description="Registered model of the candidates.")
    seed: int = Field(0, ge=0, description="Base seed of studies (sampler and training seeds).")
    # --- lifecycle: sandbox -> production (paper) -> live ---------------------------------------
    sandbox_days: float = Field(2.0, gt=0, le=30, description="Days a sandbox run paper-trades before it meets the production model.")
    production_cash: float = Field(
        10_000.0, gt=0, description="Starting cash of the production model's SimBroker account (used when no Alpaca paper keys are set)."
    )
    alpaca_paper_url: str | None = Field(None, description="Override of Alpaca's paper trading base URL (tests point it at a local server).")
    live_enabled: bool = Field(
        False, description="Allow trading real money. Live trading also needs live_api_key, live_secret_key and live_capital."
    )
    live_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("CAPPUCCINO_LIVE_API_KEY"),
        description="Alpaca LIVE key id (env CAPPUCCINO_LIVE_API_KEY). The APCA_* keys are never used for live trading.",
    )
    live_secret_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("CAPPUCCINO_LIVE_SECRET_KEY"),
        description="Alpaca LIVE secret key (env CAPPUCCINO_LIVE_SECRET_KEY).",
    )
    alpaca_live_url: str | None = Field(None, description="Override of Alpaca's live trading base URL (tests point it at a local server).")
    live_capital: float | None = Field(None, gt=0, description="Live capital at full size, in quote currency (unset: live trading waits).")
    ramp_fractions: Annotated[tuple[float, ...], NoDecode] = Field(
        RampConfig.fractions, description="Shares of live_capital traded on each ramp step, comma-separated, increasing, ending at 1."
    )
    ramp_profitable_days: int = Field(RampConfig.profitable_days_per_step, ge=1, description="Profitable live days on a ramp step before the next step.")
    auto_approve: bool = Field(False, description="Approve green-lit models for live automatically (default: a person approves in Prefect).")
    approval_timeout_hours: float = Field(24.0, gt=0, le=24 * 30, description="How long the live gate waits for a person's approval.")
    demote_flatten: bool = Field(True, description="Close every live position when a live model is demoted.")
    catastrophic_loss: float = Field(MonitorConfig.catastrophic_loss, gt=0, le=1, description="Health alert (and live emergency) at this loss from a trader's start.")
    max_step_errors: int = Field(3, ge=1, description="Health alert at this many failed trader steps in 24 hours.")
    notify_urls: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), description="Apprise notification URLs for alerts (Discord, Slack, mailto, json://...), separated by whitespace."
    )
    backup_dir: Path | None = Field(None, description="Where `cappuccino backup` writes (default: <home>/backups).")
    backup_keep: int = Field(7, ge=1, le=1000, description="Backups kept; older ones are deleted after each new backup.")

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        return value

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        symbols = tuple(parse_symbol(s) for s in value)
        if not symbols:
            raise ValueError("at least one symbol is required")
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"duplicate symbols in {list(symbols)}")
        return symbols

    @field_validator("search_intervals", "search_lookbacks", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("search_lookbacks")
    @classmethod
    def _check_lookbacks(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(v < 2 for v in value):
            raise ValueError(f"need at least one lookback, each >= 2, got {list(value)}")
        return value

    @field_validator("ramp_fractions", mode="before")
    @classmethod
    def _split_fractions(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("ramp_fractions")
    @classmethod
    def _check_fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        return RampConfig(live_capital=1.0, fractions=value).fractions  # the ramp's own check, once

    @field_validator("notify_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        # Whitespace, not commas: an Apprise mailto URL may list several recipients with commas.
        return value.split() if isinstance(value, str) else value

    @field_validator("alpaca_api_key", "alpaca_secret_key", "live_api_key", "live_secret_key")
    @classmethod
    def _no_empty_key(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty or blank key would count as "set" and reach the broker; unset the variable instead.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("an empty key is not a key: unset the variable or give the key")
        return value

    @model_validator(mode="after")
    def _live_keys_come_in_pairs(self) -> Settings:
        if (self.live_api_key is None) != (self.live_secret_key is None):
            raise ValueError("live_api_key and live_secret_key must be set together (CAPPUCCINO_LIVE_API_KEY, "
                             "CAPPUCCINO_LIVE_SECRET_KEY)")
        return self

    @field_validator("base_interval", mode="before")
    @classmethod
    def _parse_interval(cls, value: Any) -> Any:
        return Interval.parse(value) if isinstance(value, str) else value

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        # Relative paths would move with the working directory (the MLflow trap): pin them now.
        return value.expanduser().resolve()

    @property
    def history(self) -> timedelta:
        """History length as a ``timedelta``."""
        return timedelta(days=self.history_days)

    @property
    def bars_dir(self) -> Path:
        """Root of the bar store."""
        return self.home / "store"

    @property
    def studies_dir(self) -> Path:
        """Study scratch files, worker logs and summaries."""
        return self.home / "studies"

    @property
    def has_alpaca_keys(self) -> bool:
        """True when both Alpaca key and secret are set."""
        return self.alpaca_api_key is not None and self.alpaca_secret_key is not None

    @property
    def has_live_keys(self) -> bool:
        """True when both Alpaca LIVE keys are set (the paper/data keys never count)."""
        return self.live_api_key is not None and self.live_secret_key is not None

    def secret_values(self) -> tuple[str, ...]:
        """Every secret value that is set: keys, notification URLs and their credential-like parts (what is scrubbed)."""
        keys = (self.alpaca_api_key, self.alpaca_secret_key, self.live_api_key, self.live_secret_key)
        return secrets_with_url_parts((k.get_secret_value() for k in keys if k is not None),
                                      (u.get_secret_value() for u in self.notify_urls))

    def staleness_limit(self, interval: Interval) -> timedelta:
        """How old the last bar of ``interval`` may be before the symbol counts as stale."""
        return interval.timedelta * self.staleness_bars + timedelta(minutes=self.staleness_grace_minutes)

    def redacted(self) -> dict[str, Any]:
        """Return the settings as a JSON-friendly dict with secrets shown only as set/unset."""
        out = self.model_dump(mode="json")
        for key in ("alpaca_api_key", "alpaca_secret_key"):
            out[key] = "set" if getattr(self, key) is not None else "unset"
        return out

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("CAPPUCCINO_CONFIG", "cappuccino.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_path))


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation errors into one ``SettingsError`` naming each field.

    The market settings then follow the home's market record, if it has one
    (``config.market_record.settle_market``).

    Raises:
        SettingsError: some setting is invalid; the message names the field, its environment
            variable and the problem (never the value of a secret). ``MarketMismatch`` (a
            ``SettingsError``): an explicit setting asks for another market than the home's.
    """
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            var = "CAPPUCCINO_" + field.upper() if field in Settings.model_fields else field
            problems.append(f"{field} ({var}): {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
    from cappuccino_core.config.market_record import settle_market  # it reads Settings: imported late

    return settle_market(settings)


# Research knobs a single flow run may set (the pipeline's budget, a demo market); never secrets,
# never the home or the live-trading switches, which come only from the configuration.
OVERRIDABLE: tuple[str, ...] = (
    "source", "files_path", "history_days", "synthetic_seed", "synthetic_plant_strength", "holdout_weeks",
    "replay_weeks", "search_intervals", "search_lookbacks", "timeframe_trials", "timeframe_steps", "train_trials",
    "train_steps", "train_folds", "train_envs", "prune_trials", "early_stop_patience", "early_stop_min_delta",
    "early_stop_min_trials", "candidates", "sandbox_days", "seed",
)


class _OverridesBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def values(self) -> dict[str, Any]:
        """Return the fields that are set (``None`` keeps the configured value)."""
        return {name: value for name, value in self.model_dump().items() if value is not None}


RunOverrides = create_model(
    "RunOverrides",
    __base__=_OverridesBase,
    __doc__="Settings one flow run overrides; unset fields keep the configured value (a flow parameter).",
    **{name: (Settings.model_fields[name].annotation | None,
              Field(None, description=Settings.model_fields[name].description)) for name in OVERRIDABLE},
)


def settings_for(overrides: BaseModel | None = None) -> Settings:
    """Return the configured settings with a run's overrides applied (see ``RunOverrides``)."""
    return load_settings(**({} if overrides is None else overrides.values()))
