"""Settings: environment and TOML, validation naming the field, secrets never shown."""

from __future__ import annotations

import pytest

from cappuccino_core.config import DEFAULT_SYMBOLS, DataSourceKind, SettingsError, load_settings
from cappuccino_core.data.intervals import Interval


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for key in ("CAPPUCCINO_HOME", "CAPPUCCINO_SYMBOLS", "CAPPUCCINO_SOURCE", "CAPPUCCINO_HISTORY_DAYS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CAPPUCCINO_CONFIG", str(tmp_path / "cappuccino.toml"))
    monkeypatch.chdir(tmp_path)


def test_defaults_are_the_seven_pairs_two_years_of_hourly_synthetic_bars_under_dot_cappuccino(tmp_path) -> None:
    settings = load_settings()
    assert settings.symbols == DEFAULT_SYMBOLS and len(DEFAULT_SYMBOLS) == 7
    assert settings.history_days == 730 and settings.base_interval is Interval.H1
    assert settings.source is DataSourceKind.SYNTHETIC
    assert settings.home == (tmp_path / ".cappuccino").resolve()


def test_environment_variables_override_and_symbols_are_comma_separated(monkeypatch) -> None:
    monkeypatch.setenv("CAPPUCCINO_SYMBOLS", "btc-usd, ETH/USD")
    monkeypatch.setenv("CAPPUCCINO_BASE_INTERVAL", "4h")
    settings = load_settings()
    assert settings.symbols == ("BTC/USD", "ETH/USD")
    assert settings.base_interval is Interval.H4


def test_a_toml_file_is_read_and_the_environment_wins_over_it(monkeypatch, tmp_path) -> None:
    (tmp_path / "cappuccino.toml").write_text('history_days = 90\nsource = "files"\n')
    monkeypatch.setenv("CAPPUCCINO_HISTORY_DAYS", "30")
    settings = load_settings()
    assert settings.history_days == 30 and settings.source is DataSourceKind.FILES


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("CAPPUCCINO_HISTORY_DAYS", "2", "history_days (CAPPUCCINO_HISTORY_DAYS)"),
        ("CAPPUCCINO_SOURCE", "kraken", "source (CAPPUCCINO_SOURCE)"),
        ("CAPPUCCINO_SYMBOLS", "BTCUSD", "symbols (CAPPUCCINO_SYMBOLS)"),
        ("CAPPUCCINO_BASE_INTERVAL", "7m", "base_interval (CAPPUCCINO_BASE_INTERVAL)"),
    ],
)
def test_invalid_settings_fail_with_a_message_naming_the_field(monkeypatch, variable, value, named) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as failure:
        load_settings()
    assert named in str(failure.value)


def test_alpaca_keys_come_from_the_sdk_variables_and_are_never_shown(monkeypatch) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", "AKTESTKEY123")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "s3cr3t-value")
    settings = load_settings()
    assert settings.has_alpaca_keys
    assert settings.alpaca_secret_key.get_secret_value() == "s3cr3t-value"
    shown = repr(settings) + str(settings) + str(settings.redacted())
    assert "AKTESTKEY123" not in shown and "s3cr3t-value" not in shown
    assert settings.redacted()["alpaca_secret_key"] == "set"


def test_unprefixed_key_variables_left_by_other_tools_are_never_read_as_keys(monkeypatch) -> None:
    for var in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "LIVE_API_KEY", "LIVE_SECRET_KEY"):
        monkeypatch.setenv(var, "stray-value")
    settings = load_settings()
    assert settings.alpaca_api_key is None and settings.alpaca_secret_key is None
    assert settings.live_api_key is None and settings.live_secret_key is None


def test_a_run_overrides_research_knobs_but_never_secrets_home_or_live_switches(monkeypatch) -> None:
    from cappuccino_core.config import OVERRIDABLE, RunOverrides, settings_for

    monkeypatch.setenv("CAPPUCCINO_TRAIN_STEPS", "5000")
    settings = settings_for(RunOverrides(history_days=90, search_lookbacks=[10, 20], prune_trials=False))
    assert (settings.history_days, settings.search_lookbacks, settings.prune_trials) == (90, (10, 20), False)
    assert settings.train_steps == 5000  # not overridden: the configured value stays
    forbidden = {"home", "alpaca_api_key", "alpaca_secret_key", "live_enabled", "live_api_key", "live_secret_key",
                 "live_capital", "auto_approve", "notify_urls"}
    assert not forbidden & set(OVERRIDABLE)
    with pytest.raises(ValueError):
        RunOverrides(live_enabled=True)


@pytest.mark.parametrize("variable", ["CAPPUCCINO_LIVE_API_KEY", "CAPPUCCINO_LIVE_SECRET_KEY", "APCA_API_KEY_ID",
                                      "APCA_API_SECRET_KEY"])
def test_an_empty_key_is_refused_rather_than_counted_as_a_key(monkeypatch, variable) -> None:
    for name in ("CAPPUCCINO_LIVE_API_KEY", "CAPPUCCINO_LIVE_SECRET_KEY", "APCA_API_KEY_ID", "APCA_API_SECRET_KEY"):
        monkeypatch.setenv(name, "KEYVALUE0001")
    monkeypatch.setenv(variable, "  ")
    with pytest.raises(SettingsError, match="an empty key is not a key"):
        load_settings()
