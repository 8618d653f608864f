"""Settings from the command line: ``ghostpilot bench --set KEY=VALUE`` (a server setting
for one run, parsed as JSON where it is JSON, checked like any setting) and
``ghostpilot complete``'s one-shot time budget."""

from __future__ import annotations

import argparse

import pytest

from lsp_server.cli.bench import _settings


def args(*overrides: str) -> argparse.Namespace:
    return argparse.Namespace(model=None, threads=None, overrides=list(overrides))


def test_set_gives_the_server_those_settings() -> None:
    settings, raw = _settings(args("startEarly=false", "timeBudgetMs=1500", "model=gemma3-270m"))
    assert raw == {"startEarly": False, "timeBudgetMs": 1500, "model": "gemma3-270m"}
    assert settings.start_early is False and settings.time_budget_ms == 1500


@pytest.mark.parametrize(
    ("item", "message"),
    [
        pytest.param("startEarly", "KEY=VALUE", id="no-equals"),
        pytest.param("=1", "KEY=VALUE", id="no-key"),
        pytest.param("noSuchKey=1", "unknown setting", id="unknown"),
        pytest.param("timeBudgetMs=5", "timeBudgetMs", id="out-of-range"),
    ],
)
def test_bad_set_is_a_clear_error(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _settings(args(item))


def test_a_one_shot_completion_waits_for_the_whole_block() -> None:
    """``ghostpilot complete`` is not a keystroke: its time budget is 10 s unless given,
    not the editor's 500 ms first paint (the CLI has no background continuation)."""
    from lsp_server.cli.complete import ONE_SHOT_BUDGET_MS, add_parser, cli_settings

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    settings, problems = cli_settings(parser.parse_args(["complete", "f.py:1:1"]))
    assert not problems and settings.time_budget_ms == ONE_SHOT_BUDGET_MS > 500
    settings, _ = cli_settings(parser.parse_args(["complete", "f.py:1:1", "--time-budget-ms", "700"]))
    assert settings.time_budget_ms == 700


@pytest.mark.parametrize("argv", [
    ["bench", "latency", "--functions", "0"],
    ["bench", "latency", "--keystrokes", "-1"],
    ["bench", "latency", "--visits", "0"],
    ["bench", "throughput", "--gen-tokens", "0"],
    ["serve", "--max-message-mb", "0"],
])  # fmt: skip
def test_counts_below_one_are_refused_before_anything_runs(argv: list[str], capsys) -> None:  # type: ignore[no-untyped-def]
    """``bench latency --functions 0`` ran a replay of nothing and printed empty tables."""
    from lsp_server.cli import build_parser

    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(argv)
    assert stopped.value.code == 2
    assert "expected a positive number" in capsys.readouterr().err


def test_version(capsys) -> None:  # type: ignore[no-untyped-def]
    from importlib.metadata import version

    from lsp_server.cli import build_parser

    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"ghostpilot {version('ghostpilot')}"
