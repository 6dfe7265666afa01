"""A home remembers the market it was built on: later runs follow the record or refuse in one line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cappuccino_core.config import DataSourceKind, SettingsError, load_settings
from cappuccino_core.data.intervals import Interval
from cappuccino_core.config.market_record import (
    MarketMismatch,
    MarketRecordError,
    market_path,
    read_market,
    record_market,
)

T0 = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CAPPUCCINO_CONFIG", str(tmp_path / "absent.toml"))
    for name in ("CAPPUCCINO_SYNTHETIC_SEED", "CAPPUCCINO_SYNTHETIC_PLANT_STRENGTH", "CAPPUCCINO_HISTORY_DAYS",
                 "CAPPUCCINO_SYMBOLS", "CAPPUCCINO_SOURCE", "CAPPUCCINO_BASE_INTERVAL"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("CAPPUCCINO_HOME", str(home))
    return home


def _build_demo_home() -> None:
    demo = load_settings(synthetic_plant_strength=2.0, history_days=365, synthetic_seed=11,
                         symbols=("BTC/USD", "ETH/USD", "LTC/USD"))
    record_market(demo, first_start=T0, now=T0)


def test_a_home_without_a_record_keeps_the_configured_market(home: Path) -> None:
    settings = load_settings()
    assert read_market(home) is None
    assert (settings.synthetic_plant_strength, settings.history_days) == (1.0, 730)


def test_later_runs_on_a_home_use_the_market_its_first_ingest_recorded(home: Path) -> None:
    _build_demo_home()

    later = load_settings()  # what a scheduled deployment loads: nothing about the market set

    assert later.source is DataSourceKind.SYNTHETIC and later.base_interval is Interval.H1
    assert (later.synthetic_seed, later.synthetic_plant_strength, later.history_days) == (11, 2.0, 365)
    assert later.symbols == ("BTC/USD", "ETH/USD", "LTC/USD")


def test_an_explicitly_different_plant_is_refused_in_one_line_naming_the_difference(home: Path) -> None:
    _build_demo_home()

    with pytest.raises(MarketMismatch) as refused:
        load_settings(synthetic_plant_strength=1.0)

    message = str(refused.value)
    assert isinstance(refused.value, SettingsError) and "\n" not in message and len(message) < 300
    assert f"this home ({home}) was built on synthetic seed 11 plant 2, 3 symbols at 1h, 365 days" in message
    assert "synthetic_plant_strength 1 differs" in message and "use a new home" in message


def test_an_environment_variable_counts_as_explicit(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _build_demo_home()
    monkeypatch.setenv("CAPPUCCINO_SYNTHETIC_SEED", "7")
    monkeypatch.setenv("CAPPUCCINO_BASE_INTERVAL", "4h")

    with pytest.raises(MarketMismatch, match="base_interval 4h differs; synthetic_seed 7 differs"):
        load_settings()


def test_the_same_values_given_explicitly_pass(home: Path) -> None:
    _build_demo_home()
    same = load_settings(synthetic_plant_strength=2.0, history_days=365, synthetic_seed=11)
    assert same.synthetic_plant_strength == 2.0


def test_a_run_may_name_a_subset_of_the_symbols_but_not_a_symbol_the_home_does_not_hold(home: Path) -> None:
    _build_demo_home()

    assert load_settings(symbols=("ETH/USD",)).symbols == ("ETH/USD",)
    with pytest.raises(MarketMismatch, match="symbols AAVE/USD are not in it"):
        load_settings(symbols=("ETH/USD", "AAVE/USD"))


def test_the_record_is_written_once_and_never_rewritten(home: Path) -> None:
    _build_demo_home()
    first = market_path(home).read_text()

    kept = record_market(load_settings(), first_start=datetime(2020, 1, 1, tzinfo=UTC), now=datetime.now(UTC))

    assert market_path(home).read_text() == first and kept.first_start == T0
    assert read_market(home) == kept


def test_an_unreadable_record_is_refused_naming_the_file(home: Path) -> None:
    home.mkdir(parents=True)
    market_path(home).write_text("{not json")
    with pytest.raises(MarketRecordError, match="market.json: not a market record"):
        load_settings()
