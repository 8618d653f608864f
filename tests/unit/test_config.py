"""Table tests for settings merged from editor configuration."""

from __future__ import annotations

from typing import Any

import pytest

from lsp_server.config import Settings, merge, needs_reload, snake_case, to_camel
from lsp_server.reliance.settings import RelianceSettings

BASE = Settings(n_threads=2)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param("nThreads", "n_threads", id="camel"),
        pytest.param("timeBudgetMs", "time_budget_ms", id="three-words"),
        pytest.param("n_threads", "n_threads", id="already-snake"),
        pytest.param("enable", "enable", id="one-word"),
    ],
)
def test_snake_case(key: str, expected: str) -> None:
    assert snake_case(key) == expected


@pytest.mark.parametrize(
    ("raw", "changes"),
    [
        pytest.param({"nThreads": 4}, {"n_threads": 4}, id="camel-int"),
        pytest.param({"n_ctx": 4096}, {"n_ctx": 4096}, id="snake-int"),
        pytest.param({"maxTokens": 128.0}, {"max_tokens": 128}, id="integral-float-to-int"),
        pytest.param({"temperature": 1}, {"temperature": 1.0}, id="int-to-float"),
        pytest.param({"topP": 0.5}, {"top_p": 0.5}, id="top-p"),
        pytest.param({"enable": False}, {"enable": False}, id="bool"),
        pytest.param({"model": "/models/x.gguf"}, {"model": "/models/x.gguf"}, id="model-path"),
        pytest.param(
            {"enabledLanguages": ["python", "cython"]},
            {"enabled_languages": ("python", "cython")},
            id="list",
        ),
        pytest.param(
            {"excludeGlobs": "*.gen.py"}, {"exclude_globs": ("*.gen.py",)}, id="string-to-list"
        ),
        pytest.param(
            {"completionFallback": "never"}, {"completion_fallback": "never"}, id="choice"
        ),
        pytest.param(
            {"docstringStyle": "numpy"}, {"docstring_style": "numpy"}, id="choice-docstring"
        ),
        pytest.param({"flashAttention": "off"}, {"flash_attention": "off"}, id="choice-flash"),
        pytest.param({"nGpuLayers": -1}, {"n_gpu_layers": -1}, id="range-low-edge"),
        pytest.param({"timeBudgetMs": 60000}, {"time_budget_ms": 60000}, id="range-high-edge"),
        pytest.param(
            {"reliance": {"minShare": 0.5}},
            {"reliance": RelianceSettings(min_share=0.5)},
            id="nested-object",
        ),
        pytest.param(
            {"ghostpilot": {"maxTokens": 10}}, {"max_tokens": 10}, id="ghostpilot-section"
        ),
        pytest.param({}, {}, id="empty"),
    ],
)
def test_merge_accepts(raw: dict[str, Any], changes: dict[str, Any]) -> None:
    settings, problems = merge(BASE, raw)
    assert problems == []
    for name, value in changes.items():
        assert getattr(settings, name) == value
        assert type(getattr(settings, name)) is type(value)
    untouched = {k: v for k, v in vars(BASE).items() if k not in changes}
    assert {k: getattr(settings, k) for k in untouched} == untouched


@pytest.mark.parametrize(
    ("raw", "name", "problem"),
    [
        pytest.param(
            {"nThreads": "four"},
            "n_threads",
            "nThreads: expected an integer, got 'four'",
            id="not-int",
        ),
        pytest.param(
            {"nThreads": 2.5}, "n_threads", "nThreads: expected an integer, got 2.5", id="fraction"
        ),
        pytest.param(
            {"nThreads": True},
            "n_threads",
            "nThreads: expected an integer, got True",
            id="bool-is-not-int",
        ),
        pytest.param(
            {"nThreads": 0}, "n_threads", "nThreads: 0 is outside 1..256", id="below-range"
        ),
        pytest.param(
            {"nCtx": 10**7}, "n_ctx", "nCtx: 10000000 is outside 256..131072", id="above-range"
        ),
        pytest.param(
            {"temperature": 2.5},
            "temperature",
            "temperature: 2.5 is outside 0..2",
            id="float-range",
        ),
        pytest.param(
            {"temperature": "hot"},
            "temperature",
            "temperature: expected a number, got 'hot'",
            id="not-number",
        ),
        pytest.param({"topP": -0.1}, "top_p", "topP: -0.1 is outside 0..1", id="negative-top-p"),
        pytest.param(
            {"enable": "yes"}, "enable", "enable: expected true or false, got 'yes'", id="not-bool"
        ),
        pytest.param(
            {"model": ""}, "model", "model: expected a non-empty string, got ''", id="empty-model"
        ),
        pytest.param(
            {"model": 3}, "model", "model: expected a non-empty string, got 3", id="model-number"
        ),
        pytest.param(
            {"completionFallback": "sometimes"},
            "completion_fallback",
            "completionFallback: expected one of auto, always, never, got 'sometimes'",
            id="bad-choice",
        ),
        pytest.param(
            {"flashAttention": True},
            "flash_attention",
            "flashAttention: expected a non-empty string, got True",
            id="bad-flash",
        ),
        pytest.param(
            {"enabledLanguages": ["python", 3]},
            "enabled_languages",
            "enabledLanguages: expected a list of strings, got ['python', 3]",
            id="bad-list",
        ),
    ],
)
def test_merge_rejects_with_problem_and_default(
    raw: dict[str, Any], name: str, problem: str
) -> None:
    base = Settings(n_threads=3, n_ctx=4096, temperature=0.7, top_p=0.5, enable=False, model="/x.gguf",
                    completion_fallback="never", enabled_languages=("go",))  # fmt: skip
    settings, problems = merge(base, raw)
    assert len(problems) == 1
    assert problems[0].startswith(problem)
    assert problems[0].endswith(f"; using the default {getattr(Settings(), name)!r}")
    # The default, not the stale previous value.
    assert getattr(settings, name) == getattr(Settings(), name)


def test_merge_good_keys_survive_a_bad_one() -> None:
    settings, problems = merge(BASE, {"maxTokens": 50, "nThreads": "x", "temperature": 0.2})
    assert (settings.max_tokens, settings.temperature) == (50, 0.2)
    assert problems == [
        "nThreads: expected an integer, got 'x'; using the default " + repr(Settings().n_threads)
    ]


@pytest.mark.parametrize(
    ("raw", "problems"),
    [
        pytest.param({"maxTokenz": 5}, ["unknown setting 'maxTokenz'"], id="unknown-key"),
        pytest.param([1, 2], ["settings must be an object, got list"], id="not-a-mapping"),
        pytest.param("enable", ["settings must be an object, got str"], id="string"),
        pytest.param(None, [], id="none"),
    ],
)
def test_merge_problems(raw: Any, problems: list[str]) -> None:
    settings, found = merge(BASE, raw)
    assert found == problems
    assert settings == BASE


def test_none_resets_to_default() -> None:
    base = Settings(max_tokens=10, n_threads=2)
    settings, problems = merge(base, {"maxTokens": None})
    assert problems == []
    assert settings.max_tokens == 96


def test_to_camel_round_trips() -> None:
    settings = Settings(n_threads=5, time_budget_ms=700, exclude_globs=("a",))
    camel = to_camel(settings)
    assert camel["nThreads"] == 5
    assert camel["timeBudgetMs"] == 700
    assert "n_threads" not in camel
    assert merge(Settings(n_threads=1), camel) == (settings, [])


@pytest.mark.parametrize(
    ("change", "reload"),
    [
        pytest.param({"model": "other"}, True, id="model"),
        pytest.param({"n_ctx": 4096}, True, id="n-ctx"),
        pytest.param({"n_gpu_layers": 10}, True, id="gpu-layers"),
        pytest.param({"flash_attention": "off"}, True, id="flash-attention"),
        pytest.param({"temperature": 0.3}, False, id="sampling"),
        pytest.param({"enable": False}, False, id="enable"),
    ],
)
def test_needs_reload(change: dict[str, Any], reload: bool) -> None:
    import dataclasses

    assert needs_reload(BASE, dataclasses.replace(BASE, **change)) is reload


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        pytest.param(
            {"maxTokens": float("inf")},
            "maxTokens: expected an integer, got inf; using the default 96",
            id="infinity",
        ),
        pytest.param(
            {"maxTokens": float("nan")},
            "maxTokens: expected an integer, got nan; using the default 96",
            id="nan",
        ),
        pytest.param(
            {"temperature": float("nan")},
            "temperature: expected a number, got nan; using the default 0.0",
            id="nan-float",
        ),
    ],
)
def test_merge_non_finite_numbers(raw: dict[str, Any], problem: str) -> None:
    _, problems = merge(BASE, raw)
    assert problems == [problem]
