"""`cappuccino plot`: a PNG of the model's candles, trades and weights per pair, and its equity beside the baselines."""

from __future__ import annotations

import json
import struct

from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_writes_a_png_with_a_row_per_pair_and_reports_it_as_json(cli_env, tmp_path) -> None:
    out = tmp_path / "plots" / "king.png"
    result = runner.invoke(app, ["plot", "--model", "king", "--start", "2022-02-19", "--end", "2022-03-12",
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["png"] == str(out) and doc["symbols"] == ["BTC/USD", "ETH/USD", "LTC/USD"] and doc["trades"] > 0
    assert doc["baselines"] == ["buy_and_hold", "momentum", "mean_reversion", "sixty_forty"]
    width, height = _png_size(out.read_bytes())
    assert width == 11 * 90 and height == round((2.9 * 3 + 3.2) * 90)  # three pairs and the equity panel


def test_plot_without_out_writes_under_the_home(cli_env) -> None:
    result = runner.invoke(app, ["plot", "--model", "king", "--start", "2022-03-01", "--end", "2022-03-08"])
    assert result.exit_code == 0, result.output
    written = result.stdout.strip().removeprefix("wrote ")
    assert written.startswith(str(cli_env.settings.home / "plots" / f"backtest-v{cli_env.version}-202203010000"))


def test_plot_refuses_a_window_outside_the_stored_bars_in_one_line(cli_env, tmp_path) -> None:
    out = tmp_path / "never.png"
    result = runner.invoke(app, ["plot", "--model", "king", "--start", "2023-01-01", "--end", "2023-02-01", "--out", str(out)])
    assert result.exit_code == 2 and not out.exists()
    assert result.stderr.strip().startswith("error: the window ends at 2023-02-01") and "Traceback" not in result.output
