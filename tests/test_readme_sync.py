"""README.md's generated tables: in sync with the Settings model and benchmarks/results.json, and the generator itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from benchmarks import readme
from cappuccino_core.config import DataSourceKind, Settings

BLOCKS_ONLY = (
    "intro\n<!-- settings:begin -->\n<!-- settings:end -->\nmiddle\n<!-- bench:begin -->\n<!-- bench:end -->\ntail\n"
)


class _Tiny(BaseSettings):
    """A small settings model worked by hand."""

    model_config = SettingsConfigDict(env_prefix="TINY_", populate_by_name=True)

    path: Path = Field(Path("a/b"), description="A path.")
    key: SecretStr | None = Field(None, validation_alias=AliasChoices("VENDOR_KEY", "TINY_KEY", "key"), description="A key.")
    sizes: tuple[int, ...] = Field((1, 2), description="Sizes, a|b.")
    flag: bool = Field(False, description="A flag.")
    kind: DataSourceKind = Field(DataSourceKind.FILES, description="A kind.")
    limit: float | None = Field(None)


def _row(table: str, first_cell: str) -> str:
    rows = [line for line in table.splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, f"expected one row starting {first_cell!r} in\n{table}"
    return rows[0]


@pytest.fixture
def no_config_file(monkeypatch, tmp_path):
    monkeypatch.setenv("CAPPUCCINO_CONFIG", str(tmp_path / "absent.toml"))


def test_readme_tables_are_what_the_generator_produces_from_the_settings_model_and_results() -> None:
    text = readme.README.read_text(encoding="utf-8")
    if text != readme.render_readme(text, readme.read_results()):
        pytest.fail(f"README.md's generated tables are out of date: run `python -m benchmarks.readme`\n{readme.readme_diff()}")


def test_every_setting_has_a_row_and_every_result_has_a_row() -> None:
    settings, bench = readme.settings_table(), readme.bench_table(readme.read_results())
    for name in Settings.model_fields:
        _row(settings, f"`{name}`")
    for key in readme.read_results():
        _row(bench, f"`{key}`")


def test_documented_environment_variables_are_the_ones_pydantic_settings_reads(monkeypatch, no_config_file) -> None:
    documented = {name: readme.env_variables(name, field, Settings) for name, field in Settings.model_fields.items()}
    for variables in documented.values():
        for variable in variables:
            monkeypatch.delenv(variable, raising=False)
    baseline = set(EnvSettingsSource(Settings)())
    for name, variables in documented.items():
        field = Settings.model_fields[name]
        accepted = {name, *(field.validation_alias.choices if isinstance(field.validation_alias, AliasChoices) else ())}
        for variable in variables:
            monkeypatch.setenv(variable, "1")
            read = set(EnvSettingsSource(Settings)()) - baseline
            monkeypatch.delenv(variable)
            assert len(read) == 1 and read <= accepted, f"{variable} should set {name}, pydantic-settings read {read}"


def test_the_generator_spells_names_variables_types_defaults_and_descriptions_as_declared() -> None:
    table = readme.settings_table(_Tiny)
    assert table.splitlines()[2:] == [
        "| `path` | `TINY_PATH` | `Path` | `a/b` | A path. |",
        "| `key` | `VENDOR_KEY` or `TINY_KEY` | `SecretStr \\| None` | unset | A key. |",
        "| `sizes` | `TINY_SIZES` | `tuple[int, ...]` | `1, 2` | Sizes, a\\|b. |",
        "| `flag` | `TINY_FLAG` | `bool` | `false` | A flag. |",
        "| `kind` | `TINY_KIND` | `DataSourceKind (synthetic, alpaca, files)` | `files` | A kind. |",
        "| `limit` | `TINY_LIMIT` | `float \\| None` | unset | — |",
    ]


def test_secrets_never_show_a_value_even_when_the_environment_sets_them(monkeypatch, no_config_file) -> None:
    leaks = {
        "APCA_API_KEY_ID": "AKLEAKED123", "APCA_API_SECRET_KEY": "secret-leak-456",
        "CAPPUCCINO_LIVE_API_KEY": "live-leak-789", "CAPPUCCINO_LIVE_SECRET_KEY": "live-secret-leak",
        "CAPPUCCINO_NOTIFY_URLS": "json://leak.example/hook",
    }
    for variable, value in leaks.items():
        monkeypatch.setenv(variable, value)
    assert Settings().alpaca_api_key is not None  # the environment really does hold a key
    text = readme.render_readme(BLOCKS_ONLY, {})
    assert not [value for value in leaks.values() if value in text]
    for name in ("alpaca_api_key", "alpaca_secret_key", "live_api_key", "live_secret_key", "notify_urls"):
        assert _row(text, f"`{name}`").split(" | ")[3] == "unset"


def test_defaults_are_the_models_declared_ones_not_the_environment_or_toml(monkeypatch, tmp_path) -> None:
    (tmp_path / "cappuccino.toml").write_text('history_days = 90\nsource = "files"\n')
    monkeypatch.setenv("CAPPUCCINO_CONFIG", str(tmp_path / "cappuccino.toml"))
    monkeypatch.setenv("CAPPUCCINO_SYMBOLS", "BTC/USD")
    monkeypatch.setenv("CAPPUCCINO_HOME", "/somewhere/else")
    table = readme.settings_table()
    assert _row(table, "`history_days`").split(" | ")[3] == "`730`"
    assert _row(table, "`source`").split(" | ")[3] == "`synthetic`"
    assert _row(table, "`home`").split(" | ")[3] == "`.cappuccino`"
    assert "`BTC/USD, ETH/USD, LTC/USD, BCH/USD, LINK/USD, UNI/USD, AAVE/USD`" in _row(table, "`symbols`")


@pytest.mark.parametrize("marker", ["settings:begin", "settings:end", "bench:begin", "bench:end"])
def test_a_missing_marker_is_an_error_naming_it(marker) -> None:
    text = BLOCKS_ONLY.replace(f"<!-- {marker} -->\n", "")
    with pytest.raises(readme.ReadmeError, match=marker):
        readme.render_readme(text, {})


def test_a_repeated_or_reversed_marker_is_an_error() -> None:
    with pytest.raises(readme.ReadmeError, match="2 copies"):
        readme.render_readme(BLOCKS_ONLY + "<!-- bench:end -->\n", {})
    reversed_blocks = BLOCKS_ONLY.replace("<!-- settings:begin -->", "X").replace("<!-- settings:end -->", "<!-- settings:begin -->")
    with pytest.raises(readme.ReadmeError, match="comes before"):
        readme.render_readme(reversed_blocks.replace("X", "<!-- settings:end -->"), {})


def test_text_outside_the_blocks_is_left_byte_for_byte() -> None:
    head = "# Title\r\n\ttabbed  \n<!-- settings:begin -->"
    middle = "<!-- settings:end -->\n\n## Benchmarks ünïcode\n<!-- bench:begin -->"
    tail = "<!-- bench:end -->\nno newline at the end"
    text = head + "\nstale table\n" + middle + "\nold | row\n" + tail
    out = readme.render_readme(text, {"ppo_train_steps_per_s": 9739})
    blocks = readme.generated_blocks({"ppo_train_steps_per_s": 9739})
    assert out == head + "\n" + blocks["settings"] + "\n" + middle + "\n" + blocks["bench"] + "\n" + tail
    assert readme.render_readme(out, {"ppo_train_steps_per_s": 9739}) == out


def test_figures_are_described_by_key_or_prefix_and_an_undescribed_one_shows_a_dash() -> None:
    results = {"ppo_train_steps_per_s": 9739, "stage_seconds_train": 12.0, "make_run_seconds": 301.25, "made_up": 1.23456}
    table = readme.bench_table(results)
    assert _row(table, "`ppo_train_steps_per_s`").startswith("| `ppo_train_steps_per_s` | 9,739 | env steps/s | ")
    assert "`train` stage of `make run`" in _row(table, "`stage_seconds_train`")
    assert _row(table, "`make_run_seconds`").startswith("| `make_run_seconds` | 301.2 | s | End-to-end `make run`")
    assert _row(table, "`made_up`") == "| `made_up` | 1.235 |  | — |"
    assert readme.undescribed_figures(results) == ["made_up"]
    for stage in ("ingest", "gate", "timeframe", "train", "candidates"):
        assert readme.describe_figure(f"stage_seconds_{stage}") is not None


@pytest.mark.parametrize(
    ("value", "shown"),
    [(196092, "196,092"), (3.0, "3"), (0.531, "0.531"), (13.648, "13.65"), (108.6, "108.6"),
     (12345.678, "12,350"), (None, "n/a"), ("shared", "shared"), (True, "true")],
)
def test_figures_are_rounded_to_four_significant_digits_with_thousands_separators(value, shown) -> None:
    assert readme.figure_text(value) == shown


def test_check_exits_1_with_a_diff_then_a_rewrite_brings_the_readme_in_sync(tmp_path, capsys) -> None:
    (tmp_path / "README.md").write_text(BLOCKS_ONLY)
    (tmp_path / "results.json").write_text(json.dumps({"ppo_train_steps_per_s": 9739, "made_up": 1}))
    args = ["--readme", str(tmp_path / "README.md"), "--results", str(tmp_path / "results.json")]
    assert readme.main(["--check", *args]) == 1
    out, err = capsys.readouterr()
    assert "+| `ppo_train_steps_per_s` | 9,739 |" in out and "python -m benchmarks.readme" in err
    assert "warning" in err and "'made_up'" in err
    assert readme.main(args) == 0
    assert readme.main(["--check", *args]) == 0  # an undescribed figure warns, it does not fail
    assert "'made_up'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "results.json"]  # no temp file left
    assert readme.update_readme(tmp_path / "README.md", tmp_path / "results.json") is False


def test_check_reports_a_missing_marker_by_name(tmp_path, capsys) -> None:
    (tmp_path / "README.md").write_text(BLOCKS_ONLY.replace("<!-- bench:begin -->\n", ""))
    (tmp_path / "results.json").write_text("{}")
    assert readme.main(["--check", "--readme", str(tmp_path / "README.md"), "--results", str(tmp_path / "results.json")]) == 2
    assert "<!-- bench:begin -->" in capsys.readouterr().err
