"""The backend side of the protocol knows nothing of prompts: ``backends/`` imports
nothing from ``prompts/``, and rules such as the time budget's cut come with the request."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

import lsp_server
from lsp_server.backends.base import GenerationRequest, TimeBudget
from lsp_server.backends.stops import check_stops

BACKENDS = Path(lsp_server.__file__).parent / "backends"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize(
    "path", sorted(BACKENDS.rglob("*.py")), ids=lambda p: str(p.relative_to(BACKENDS))
)
def test_backends_import_nothing_from_prompts(path: Path) -> None:
    assert not {name for name in _imports(path) if name.startswith("lsp_server.prompts")}


def _check(text: str, request: GenerationRequest, elapsed: float) -> tuple[int | None, str]:
    return check_stops(text, request, time.perf_counter() - elapsed)


def test_time_budget_cut_applies_only_past_the_budget() -> None:
    calls: list[str] = []

    def cut(text: str) -> int | None:
        calls.append(text)
        return 2

    request = GenerationRequest(prompt="", time_budget=TimeBudget(10.0, cut))
    assert _check("abc\n", request, elapsed=0.0) == (None, "")
    assert calls == []
    assert _check("abc\n", request, elapsed=11.0) == (2, "time")
    assert calls == ["abc\n"]


def test_stop_strings_and_the_stop_rule_come_before_the_time_cut() -> None:
    request = GenerationRequest(
        prompt="", stop=("\ndef",), stop_rule=lambda text: 1 if "!" in text else None,
        time_budget=TimeBudget(0.0, lambda text: 0),
    )  # fmt: skip
    assert _check("x\ndef y", request, elapsed=1.0) == (1, "stop")
    assert _check("x!", request, elapsed=1.0) == (1, "rule")
    assert _check("x", request, elapsed=1.0) == (0, "time")
    no_cut = GenerationRequest(prompt="", time_budget=TimeBudget(0.0, lambda text: None))
    assert _check("x", no_cut, elapsed=1.0) == (None, "")


def test_past_the_hard_limit_generation_stops_where_it_is() -> None:
    """With no place to cut (no complete line yet), the budget lets generation go on,
    up to its hard limit; there it stops with all of the text."""
    request = GenerationRequest(
        prompt="", time_budget=TimeBudget(0.5, lambda text: None, hard_seconds=1.5))
    assert _check("foo(a,\n    b,", request, elapsed=1.0) == (None, "")
    assert _check("foo(a,\n    b,", request, elapsed=1.6) == (len("foo(a,\n    b,"), "time")
    cut_first = GenerationRequest(
        prompt="", time_budget=TimeBudget(0.5, lambda text: 3, hard_seconds=1.5))
    assert _check("abc\ndef", cut_first, elapsed=2.0) == (3, "time")  # a cut still wins
