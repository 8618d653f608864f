"""The ``reliance.*`` settings: parsed once, by ``config.merge``, into a typed dataclass."""

from __future__ import annotations

import math
from typing import Any

import pytest

from lsp_server.config import Settings, merge, to_camel
from lsp_server.reliance.settings import RelianceSettings, parse
from lsp_server.reliance.settings import to_camel as reliance_to_camel

DEFAULTS = RelianceSettings()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param({"minShare": 0.5}, {"min_share": 0.5}, id="camel-float"),
        pytest.param({"min_share": 1}, {"min_share": 1.0}, id="snake-int-to-float"),
        pytest.param({"enable": False}, {"enabled": False}, id="enable-alias"),
        pytest.param({"enabled": False}, {"enabled": False}, id="enabled"),
        pytest.param({"stateLocation": "workspace"}, {"state_location": "workspace"}, id="choice"),
        pytest.param({"severity": "hint", "failingSeverity": "error"},
                     {"severity": "hint", "failing_severity": "error"}, id="severities"),  # fmt: skip
        pytest.param({"testTimeout": 30}, {"test_timeout_s": 30.0}, id="timeout-alias"),
        pytest.param({"testTimeoutS": 3600}, {"test_timeout_s": 3600.0}, id="timeout-high-edge"),
        pytest.param({"debounceMs": 250.0}, {"debounce_ms": 250}, id="integral-float-to-int"),
        pytest.param({"debounceMs": 0}, {"debounce_ms": 0}, id="range-low-edge"),
        pytest.param({"minShare": None}, {}, id="none-is-default"),
        pytest.param({}, {}, id="empty"),
    ],
)
def test_parse_accepts(raw: dict[str, Any], expected: dict[str, Any]) -> None:
    settings, problems = parse(raw)
    assert problems == []
    for name, value in expected.items():
        assert getattr(settings, name) == value
        assert type(getattr(settings, name)) is type(value)
    untouched = {k: v for k, v in vars(DEFAULTS).items() if k not in expected}
    assert {k: getattr(settings, k) for k in untouched} == untouched


@pytest.mark.parametrize(
    ("raw", "name", "problem"),
    [
        pytest.param({"minShare": "most"}, "min_share", "reliance.minShare: expected a number, got 'most'", id="not-number"),
        pytest.param({"minShare": 1.5}, "min_share", "reliance.minShare: 1.5 is outside 0..1", id="above-range"),
        pytest.param({"minShare": True}, "min_share", "reliance.minShare: expected a number, got True", id="bool-is-not-number"),
        pytest.param({"debounceMs": 2.5}, "debounce_ms", "reliance.debounceMs: expected an integer, got 2.5", id="fraction"),
        pytest.param({"debounceMs": math.inf}, "debounce_ms", "reliance.debounceMs: expected a number, got inf", id="infinite-int"),
        pytest.param({"testTimeoutS": math.nan}, "test_timeout_s", "reliance.testTimeoutS: expected a number, got nan", id="nan"),
        pytest.param({"testTimeoutS": 0.5}, "test_timeout_s", "reliance.testTimeoutS: 0.5 is outside 1..3600", id="below-range"),
        pytest.param({"enabled": "yes"}, "enabled", "reliance.enabled: expected true or false, got 'yes'", id="not-bool"),
        pytest.param({"severity": "loud"}, "severity",
                     "reliance.severity: expected one of error, warning, information, hint, got 'loud'", id="bad-choice"),
        pytest.param({"stateLocation": "cloud"}, "state_location",
                     "reliance.stateLocation: expected one of xdg, workspace, got 'cloud'", id="bad-location"),
    ],
)  # fmt: skip
def test_parse_rejects_with_one_problem_and_the_default(raw: dict[str, Any], name: str, problem: str) -> None:
    settings, problems = parse({**raw, "failingSeverity": "error"})
    assert problems == [f"{problem}; using the default {getattr(DEFAULTS, name)!r}"]
    assert getattr(settings, name) == getattr(DEFAULTS, name)
    assert settings.failing_severity == "error"  # the good key beside the bad one applies


@pytest.mark.parametrize(
    ("raw", "problems"),
    [
        pytest.param({"warn": True}, ["reliance: unknown setting 'warn'"], id="unknown-key"),
        pytest.param([1], ["reliance: expected an object, got [1]; using the defaults"], id="not-an-object"),
        pytest.param("on", ["reliance: expected an object, got 'on'; using the defaults"], id="string"),
        pytest.param(None, [], id="none"),
    ],
)
def test_parse_problems(raw: Any, problems: list[str]) -> None:
    assert parse(raw) == (DEFAULTS, problems)


def test_merge_parses_reliance_once_into_the_dataclass() -> None:
    settings, problems = merge(Settings(n_threads=1), {"reliance": {"minShare": 0.4, "severity": "loud"}, "maxTokens": 10})
    assert isinstance(settings.reliance, RelianceSettings)
    assert settings.reliance.min_share == 0.4
    assert settings.reliance.severity == "information"
    assert settings.max_tokens == 10
    assert problems == [
        "reliance.severity: expected one of error, warning, information, hint, got 'loud'; using the default 'information'"
    ]


def test_merge_replaces_the_whole_reliance_object() -> None:
    """As before the typing: a later reliance object does not keep keys of an earlier one."""
    first, _ = merge(Settings(n_threads=1), {"reliance": {"minShare": 0.4}})
    second, problems = merge(first, {"reliance": {"severity": "hint"}})
    assert problems == []
    assert second.reliance == RelianceSettings(severity="hint")
    third, _ = merge(second, {"reliance": None})
    assert third.reliance == DEFAULTS


def test_merge_infinite_debounce_is_a_problem_not_a_crash() -> None:
    """Python's JSON reader accepts ``Infinity``; int(inf) used to raise out of the parser."""
    settings, problems = merge(Settings(n_threads=1), {"reliance": {"debounceMs": math.inf}})
    assert settings.reliance.debounce_ms == DEFAULTS.debounce_ms
    assert problems == ["reliance.debounceMs: expected a number, got inf; using the default 500"]


def test_to_camel_writes_reliance_as_an_editor_does_and_reads_back() -> None:
    settings = Settings(n_threads=2, reliance=RelianceSettings(min_share=0.3, test_timeout_s=60.0, state_location="workspace"))
    camel = to_camel(settings)
    assert camel["reliance"] == reliance_to_camel(settings.reliance)
    assert camel["reliance"]["minShare"] == 0.3
    assert camel["reliance"]["testTimeoutS"] == 60.0
    assert camel["reliance"]["stateLocation"] == "workspace"
    assert merge(Settings(n_threads=1), camel) == (settings, [])
