"""``ghostpilot bench --set KEY=VALUE``: server settings for one run (A/B runs of a
setting at its default and off), parsed as JSON where they are JSON, checked like any
setting."""

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
