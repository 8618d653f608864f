"""Token budget: fit_prefix / fit_suffix with a real tokenizer (vocab-only GGUFs), and the
one budget every prompt is fitted to (``PromptBudget``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from lsp_server.prompts.budget import (
    MARGIN_TOKENS,
    OUTLINE_MAX_TOKENS,
    RESERVE_STEP_TOKENS,
    PromptBudget,
    fit_prefix,
    fit_suffix,
    prompt_room,
    short_docstring,
)
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
        [CONTEXT.imports, CONTEXT.scope_header, *CONTEXT.definitions, "class Stats:\n" + CURRENT]
    )
    assert prefix == expected
    alone = fit_prefix(replace(CONTEXT, definitions=()), count, 4096)
    assert alone == "\n\n\n".join([CONTEXT.imports, CONTEXT.scope_header + "\n" + CURRENT])


OUTLINE = "\n".join(
    [f"def top{i}(a, b): ..." for i in range(40)]
    + ["class Long(\n        Base): ..."]
    + [f"class K{i}: ..." for i in range(40)]
)


def test_the_head_is_the_same_for_every_function(count: Callable[[str], int]) -> None:
    """Imports, outline and class header come first and are cut the same way whatever
    function the cursor is in (its length below the reservation, its used definitions):
    moving between methods re-evaluates only what follows the head."""
    with_outline = replace(CONTEXT, outline=OUTLINE)
    heads = set()
    for uses, current in ((6, CURRENT[:300]), (1, "    def small(self):\n        "), (0, CURRENT[:120])):
        context = replace(with_outline, definitions=CONTEXT.definitions[:uses], current=current)
        for budget in (700,):
            prefix = fit_prefix(context, count, budget)
            assert count(prefix) <= budget and prefix.endswith(current)
            head = prefix[: prefix.index(CONTEXT.scope_header) + len(CONTEXT.scope_header)]
            heads.add(head)
    assert len(heads) == 1
    head = heads.pop()
    assert head.startswith(CONTEXT.imports + "\n\n\ndef top0(a, b): ...")
    outline = head[len(CONTEXT.imports) + 3 : head.index(CONTEXT.scope_header) - 3]
    assert OUTLINE.startswith(outline) and 0 < count(outline) <= OUTLINE_MAX_TOKENS
    assert OUTLINE[len(outline) :].startswith("\n") and not OUTLINE[len(outline) + 1].isspace()


def _big_class(name: str, methods: int) -> str:
    doc = "\n".join(f"    Paragraph line {i} of a long class docstring." for i in range(40))
    members = "".join(f"\n    def method_{i}(self, value, other=None):\n        ..." for i in range(methods))
    return f"class {name}:\n    \'\'\'An API client.\n\n{doc}\n    \'\'\'\n    timeout = 30{members}"


def test_a_big_class_header_does_not_move_the_imports_and_outline(count: Callable[[str], int]) -> None:
    """The class header comes after the imports and the outline and is fitted last: how
    big it is (classes differ) must not change how much of the outline precedes it, or a
    jump to a method of another class re-evaluates the whole prompt (before: the header
    was fitted first and the outline got its leftovers: one entry here, four there)."""
    heads = set()
    for header in (_big_class("Client", 60), _big_class("Server", 5), "class Small:\n    x = 1"):
        context = replace(CONTEXT, outline=OUTLINE, scope_header=header, definitions=())
        prefix = fit_prefix(context, count, 1024)
        assert count(prefix) <= 1024 and prefix.endswith(CONTEXT.current)
        heads.add(prefix[: prefix.index("\n\n\nclass ")])
    assert len(heads) == 1
    head = heads.pop()
    assert head.startswith(CONTEXT.imports + "\n\n\ndef top0(a, b): ...")


def test_a_big_class_header_keeps_whole_members_and_one_docstring_line(count: Callable[[str], int]) -> None:
    """A class header that does not fit loses its long docstring (down to its first line)
    before any member, then whole members from the end: never a ``def`` line without
    its body, which reads as a nested function to the model."""
    header = _big_class("Client", 60)
    context = replace(CONTEXT, scope_header=header, definitions=())
    prefix = fit_prefix(context, count, 1024)
    kept = prefix[prefix.index("class Client:") : prefix.index(CONTEXT.current)]
    assert "    \'\'\'An API client.\'\'\'\n    timeout = 30\n    def method_0(" in kept
    assert "Paragraph line" not in kept
    members = kept.count("def method_")
    assert 0 < members < 60
    assert kept.rstrip("\n").endswith("        ...")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("class A:\n    \"\"\"Sum.\n\n    More.\n    \"\"\"\n    x = 1",
                     "class A:\n    \"\"\"Sum.\"\"\"\n    x = 1", id="summary-on-first-line"),
        pytest.param("class A(\n        B):\n    r\'\'\'\n    Sum here.\n    \'\'\'\n    def f(self):\n        ...",
                     "class A(\n        B):\n    r\'\'\'Sum here.\'\'\'\n    def f(self):\n        ...",
                     id="summary-on-next-line-two-line-class"),
        pytest.param("class A:\n    \"\"\"One line.\"\"\"\n    x = 1", None, id="one-line-docstring"),
        pytest.param("class A:\n    x = 1\n    \"\"\"not a docstring\n    \"\"\"", None, id="no-docstring"),
        pytest.param("class A:\n    \"\"\"never closed\n    x = 1", None, id="unclosed"),
    ],
)
def test_short_docstring(header: str, expected: str | None) -> None:
    assert short_docstring(header) == (header if expected is None else expected)


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


# -- the one budget: room beside the generation, and cuts that keep the start ------------


@pytest.mark.parametrize(
    ("n_ctx", "max_tokens", "reserved", "expected"),
    [
        pytest.param(2048, 96, 0, 2048 - 96 - MARGIN_TOKENS, id="completion-prefix-only"),
        pytest.param(2048, 96, 256, 2048 - 96 - 256 - MARGIN_TOKENS, id="completion-fim-suffix"),
        pytest.param(512, 160, 100, 512 - 160 - 100 - MARGIN_TOKENS, id="test-generation"),
        pytest.param(64, 96, 0, 64 - 96 - MARGIN_TOKENS, id="overfull-is-negative"),
    ],
)
def test_prompt_room(n_ctx: int, max_tokens: int, reserved: int, expected: int) -> None:
    assert prompt_room(n_ctx, max_tokens, reserved) == expected


def test_room_counts_what_is_beside_and_never_goes_below_zero() -> None:
    budget = PromptBudget(100, len)  # one token a character
    assert budget.room(20) == 100 - 20 - MARGIN_TOKENS
    assert budget.room(20, beside="x" * 10) == 100 - 20 - 10 - MARGIN_TOKENS
    assert budget.room(20, beside="x" * 10, reserved=5) == 100 - 20 - 15 - MARGIN_TOKENS
    assert budget.room(200) == 0
    assert PromptBudget.counting(100, lambda text: text.split()).count("a b c") == 3


LINES = "def f(x):\n    a = 1\n    b = 2\n    return a + b"


@pytest.mark.parametrize(
    ("text", "room", "expected"),
    [
        pytest.param(LINES, 100, LINES, id="fits-unchanged"),
        pytest.param(LINES, 19, "def f(x):\n    a = 1", id="whole-lines-from-the-end"),
        pytest.param(LINES, 9, "def f(x):", id="first-line-only"),
        pytest.param(LINES, 5, "def f", id="first-line-head"),
        pytest.param(LINES, 0, "", id="no-room"),
    ],
)
def test_keep_start(text: str, room: int, expected: str) -> None:
    assert PromptBudget(0, len).keep_start(text, room) == expected


@pytest.mark.parametrize("room", [5, 40, 120, 400])
def test_keep_start_with_a_real_tokenizer(count: Callable[[str], int], room: int) -> None:
    text = CURRENT
    kept = PromptBudget(0, count).keep_start(text, room)
    assert count(kept) <= room
    assert text.startswith(kept)
    if kept != text and count("    def mean(self):") <= room:
        # Whole lines, as many as fit: the next one would not.
        assert text[len(kept) :].startswith("\n")
        assert count(text[: text.find("\n", len(kept) + 1)]) > room
