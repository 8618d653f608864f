"""Token budget: fit_prefix / fit_suffix with a real tokenizer (vocab-only GGUFs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from lsp_server.prompts.budget import RESERVE_STEP_TOKENS, fit_prefix, fit_suffix
from lsp_server.prompts.context import PromptContext
from lsp_server.prompts.tokens import PromptTokenizer
from tests.conftest import VOCAB_DIR, require_vocab

llama_cpp = pytest.importorskip("llama_cpp")

CURRENT = (
    "    def mean(self):\n"
    + "".join(f"        v{i} = compute({i})\n" for i in range(30))
    + "        return "
)
CONTEXT = PromptContext(
    imports="import os\nimport sys",
    definitions=tuple(f'def helper{i}(x):\n    """Helper {i}."""\n    ...' for i in range(6)),
    scope_header="class Stats:\n    def other(self):\n        ...",
    current=CURRENT,
    suffix="",
    block_indent="    ",
    function_indent="    ",
    in_function=True,
)


@pytest.fixture(
    scope="module",
    params=[
        "ggml-vocab-llama-spm.gguf",
        "ggml-vocab-deepseek-coder.gguf",
        "ggml-vocab-starcoder.gguf",
    ],
)
def count(request: pytest.FixtureRequest) -> Callable[[str], int]:
    path = VOCAB_DIR / request.param
    require_vocab(path)
    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    return lambda text: len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))


@pytest.mark.parametrize(
    "budget", [pytest.param(b, id=f"budget-{b}") for b in (8, 20, 60, 120, 200, 300, 400)]
)
def test_fit_prefix_stays_within_budget_and_keeps_cursor_end(
    count: Callable[[str], int], budget: int
) -> None:
    prefix = fit_prefix(CONTEXT, count, budget)
    assert count(prefix) <= budget
    assert prefix.endswith("        return ")
    if budget >= 20:  # whole lines go from the top; the lines above the cursor stay
        assert prefix.endswith("        v29 = compute(29)\n        return ")


def test_fit_prefix_with_room_keeps_everything_in_stable_order(count: Callable[[str], int]) -> None:
    prefix = fit_prefix(CONTEXT, count, 4096)
    expected = "\n\n\n".join(
        [CONTEXT.imports, *CONTEXT.definitions, CONTEXT.scope_header + "\n" + CURRENT]
    )
    assert prefix == expected


def test_fit_prefix_prefers_nearest_definitions(count: Callable[[str], int]) -> None:
    """With room for the current code and a few stubs, the ones nearest the cursor stay."""
    needed = count(fit_prefix(CONTEXT, count, 4096))
    used = count(CURRENT)
    reserve = -(-used // RESERVE_STEP_TOKENS) * RESERVE_STEP_TOKENS
    budget = reserve + (needed - used) - 25
    prefix = fit_prefix(CONTEXT, count, budget)
    assert count(prefix) <= budget
    assert CURRENT in prefix
    kept = [d for d in CONTEXT.definitions if d in prefix]
    assert kept and kept == list(CONTEXT.definitions[len(CONTEXT.definitions) - len(kept) :])
    assert "def helper0" not in prefix


def test_fit_prefix_head_is_stable_while_typing(count: Callable[[str], int]) -> None:
    """Typing at the cursor changes only the prompt's tail: the KV cache stays valid."""
    budget = count(fit_prefix(CONTEXT, count, 4096)) + 40
    before = fit_prefix(CONTEXT, count, budget)
    head = before[: before.index(CURRENT)]
    for typed in ("r", "re", "ret", "return", "return x"):
        grown = replace(CONTEXT, current=CURRENT + typed)
        after = fit_prefix(grown, count, budget)
        assert after.startswith(head), typed


@pytest.mark.parametrize("budget", [pytest.param(b, id=f"budget-{b}") for b in (0, 5, 30, 1000)])
def test_fit_suffix_keeps_the_top(count: Callable[[str], int], budget: int) -> None:
    suffix = "".join(f"    line_{i} = {i}\n" for i in range(40))
    fitted = fit_suffix(suffix, count, budget)
    assert count(fitted) <= budget
    assert suffix.startswith(fitted)
    if budget == 1000:
        assert fitted == suffix


def test_fit_prefix_single_enormous_line_keeps_its_tail(count: Callable[[str], int]) -> None:
    context = PromptContext("", (), "", "x = [" + "1, " * 3000, "", "", "", False)
    prefix = fit_prefix(context, count, 50)
    assert 40 <= count(prefix) <= 50
    assert ("x = [" + "1, " * 3000).endswith(prefix)


def test_fit_prefix_zero_budget_is_empty() -> None:
    context = PromptContext("", (), "", "x = [" + "1, " * 30, "", "", "", False)
    assert fit_prefix(context, len, 0) == ""


def test_token_counter_caches() -> None:
    calls: list[str] = []

    def tokenize(text: str) -> list[int]:
        calls.append(text)
        return list(range(len(text)))

    counter = PromptTokenizer(tokenize, size=2, by_pieces=False)
    assert [counter("ab"), counter("ab"), counter("abc"), counter("d"), counter("ab")] == [
        2,
        2,
        3,
        1,
        2,
    ]
    assert calls == ["ab", "abc", "d", "ab"]
