"""Model prose checked and repaired against the structure (a stand-in model; the real one
is exercised end to end in tests/e2e/test_docstring_e2e.py)."""

from __future__ import annotations

import ast

import pytest

from lsp_server.backends.base import Cancelled, GenerationRequest, GenerationResult
from lsp_server.docstrings import generate, prepare
from lsp_server.docstrings.generation import (
    ENTRY_TOKENS,
    SUMMARY_TOKENS,
    clean_slot,
    code_context,
    fit_code,
    fix_default,
    imperative,
    one_line,
)
from lsp_server.docstrings.styles import PLACEHOLDER, parse_docstring
from lsp_server.prompts.budget import MARGIN_TOKENS, PromptBudget

NAMES = {"a", "b", "threshold"}


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        pytest.param(" List of numbers.", "param:a", "List of numbers.", id="plain"),
        pytest.param(" the list", "param:a", "The list.", id="capitalised-and-stopped"),
        pytest.param(
            "\n    Check the numbers.", "summary", "Check the numbers.", id="summary-on-next-line"
        ),
        pytest.param(
            " Check it. Then more text follows here.",
            "summary",
            "Check it.",
            id="summary-first-sentence",
        ),
        pytest.param(" First. b (int): second.", "param:a", "First.", id="next-entry-cut"),
        pytest.param("\n        threshold (float):", "param:a", None, id="only-next-entry"),
        pytest.param(" threshold: a value", "param:a", None, id="untyped-next-entry"),
        pytest.param(" a (int): The value.", "param:a", "The value.", id="own-name-echoed"),
        pytest.param(" The sum. Returns: int", "returns", "The sum.", id="section-cut"),
        pytest.param(' The sum."""', "returns", "The sum.", id="closing-quotes"),
        pytest.param(" if x == 1:", "param:a", None, id="code"),
        pytest.param(" result = a + b", "returns", None, id="assignment"),
        pytest.param(
            " If the file is missing.",
            "raises:KeyError",
            "If the file is missing.",
            id="prose-starting-with-if",
        ),
        pytest.param(" >>> f(1)", "summary", None, id="doctest"),
        pytest.param("", "param:a", None, id="empty"),
        pytest.param(" 123 ...", "param:a", None, id="no-words"),
        pytest.param(" the the the the the the the the the", "param:a", None, id="repetition-loop"),
        pytest.param(" has_close_elements", "summary", None, id="summary-is-just-the-name"),
        pytest.param(" A list (of things", "param:a", None, id="unbalanced"),
    ],
)
def test_clean_slot(raw: str, key: str, expected: str | None) -> None:
    own = key.split(":", 1)[-1]
    assert clean_slot(raw, key, NAMES - {own}, "has_close_elements") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(" One line", None, id="line-not-finished"),
        pytest.param(" One line\nnext", 9, id="end-of-line"),
        pytest.param("\n    Summary\n", 12, id="leading-newline-allowed"),
        pytest.param("\n\n    Args:", 0, id="blank-line-means-nothing"),
        pytest.param("\n   ", None, id="only-whitespace-so-far"),
    ],
)
def test_one_line(text: str, expected: int | None) -> None:
    assert one_line(text) == expected


class FakeModel:
    """Answers each slot from a table keyed by the prompt's last line; records prompts."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.prompts: list[str] = []

    def __call__(self, request: GenerationRequest) -> GenerationResult:
        self.prompts.append(request.prompt)
        last = request.prompt.rsplit("\n", 1)[-1].strip()
        for ending, answer in self.answers.items():
            if last.endswith(ending):
                return GenerationResult(text=answer, token_count=5)
        return GenerationResult(text="")


SOURCE = "def add(a: int, b: int = 0) -> int:\n    total = a + b\n    return total\n"


def test_prompt_reads_code_first_then_restates_signature() -> None:
    model = FakeModel({'"""': "\n    Add two numbers."})
    generate(prepare(SOURCE, name="add"), model)
    first = model.prompts[0]
    assert first.startswith(
        "def add(a: int, b: int = 0) -> int:\n    total = a + b\n    return total"
    )
    assert first.endswith('\n\n\ndef add(a: int, b: int = 0) -> int:\n    """')
    # Each later prompt extends the previous one (KV cache reuse) up to its slot.
    assert all(later.startswith(model.prompts[0]) for later in model.prompts[1:])
    assert model.prompts[1].endswith("Add two numbers.\n\n    Args:\n        a (int):")


def test_good_answers_are_used() -> None:
    model = FakeModel(
        {
            '"""': "\n    Add two numbers.",
            "a (int):": " The first.",
            "b (int, optional):": " The second.",
            "int:": " The sum.",
        }
    )
    outcome = generate(prepare(SOURCE, name="add"), model)
    parsed = parse_docstring(outcome.literal)
    assert parsed.summary == "Add two numbers."
    assert parsed.params == {"a": ("int", "The first."), "b": ("int", "The second.")}
    assert parsed.returns == "The sum."
    assert outcome.draft is not None and outcome.draft.model_slots == 4


def test_invented_parameters_and_sections_are_dropped() -> None:
    model = FakeModel(
        {
            '"""': "\n    Add. Args: c (int): made up",
            "a (int):": "\n        c (str): x",
            "b (int, optional):": " Second. Returns: nothing",
            "int:": " if a:",
        }
    )
    outcome = generate(prepare(SOURCE, name="add"), model)
    parsed = parse_docstring(outcome.literal)
    assert set(parsed.params) == {"a", "b"}
    assert parsed.params["b"][1] == "Second."
    assert parsed.params["a"][1] == PLACEHOLDER
    assert parsed.returns == PLACEHOLDER
    assert outcome.draft is not None
    assert outcome.draft.origin["param:a"] == "placeholder"


def test_unusable_model_gives_a_correct_skeleton() -> None:
    model = FakeModel({"": "def add(a, b):"})
    outcome = generate(prepare(SOURCE, name="add"), model)
    parsed = parse_docstring(outcome.literal)
    assert parsed.summary == "Add."
    assert set(parsed.params) == {"a", "b"} and parsed.returns == PLACEHOLDER
    ast.parse(outcome.new_text)


def test_no_returns_for_a_function_returning_nothing_whatever_the_model_says() -> None:
    model = FakeModel({'"""': "\n    Print it. Returns: the value", "x:": " The value."})
    outcome = generate(prepare("def show(x):\n    print(x)\n", name="show"), model)
    parsed = parse_docstring(outcome.literal)
    assert parsed.returns is None and parsed.summary == "Print it."


def test_cancellation_between_slots() -> None:
    calls = []

    def cancelled() -> bool:
        return len(calls) >= 2

    def model(request: GenerationRequest) -> GenerationResult:
        calls.append(request)
        return GenerationResult(text=" Text.")

    with pytest.raises(Cancelled):
        generate(prepare(SOURCE, name="add"), model, cancelled=cancelled)
    assert len(calls) == 2


def test_progress_reports_each_slot() -> None:
    seen: list[tuple[int, int, str]] = []
    generate(prepare(SOURCE, name="add"), FakeModel({}), progress=lambda *a: seen.append(a))
    assert [s[:2] for s in seen] == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert seen[1][2] == "parameter a"


def test_regenerate_prompt_hides_the_old_docstring() -> None:
    source = 'def f(a):\n    """Old wrong text."""\n    return a\n'
    model = FakeModel({})
    outcome = generate(prepare(source, name="f"), model)
    assert "Old wrong text" not in model.prompts[0]
    assert "Old wrong text." in outcome.literal  # the fallback summary is the old one


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param(
            "    def m(self):\n        return 1", "def m(self):\n    return 1", id="dedent"
        ),
        pytest.param("\tdef m(self):\n\t\treturn 1", "def m(self):\n\treturn 1", id="tabs"),
        pytest.param("def f():\r\n    pass\r\n", "def f():\n    pass", id="crlf"),
    ],
)
def test_code_context(code: str, expected: str) -> None:
    assert code_context(code) == expected


LONG = "def f(a, b):\n" + "".join(f"    x{i} = a + {i}\n" for i in range(400)) + "    return b\n"


class Recording(FakeModel):
    def __init__(self) -> None:
        super().__init__({})
        self.requests: list[GenerationRequest] = []

    def __call__(self, request: GenerationRequest) -> GenerationResult:
        self.requests.append(request)
        return super().__call__(request)


@pytest.mark.parametrize("n_ctx", [512, 2048])
def test_code_is_cut_to_the_model_budget_keeping_its_top(n_ctx: int) -> None:
    """One token a character: every slot's prompt, with what it and the slots after it
    may write, fits the context; the code keeps its first lines, whole."""
    model = Recording()
    budget = PromptBudget(n_ctx, len)
    generate(prepare(LONG, name="f"), model, budget=budget)
    code = model.prompts[0].split("\n\n\ndef f(a, b):", 1)[0]
    assert LONG.startswith(code + "\n") and code.count("\n") > 10
    written = SUMMARY_TOKENS + (len(model.requests) - 1) * ENTRY_TOKENS
    assert len(model.prompts[-1]) + written + MARGIN_TOKENS <= n_ctx
    assert all(prompt.startswith(code) for prompt in model.prompts)


def test_code_goes_whole_without_a_budget() -> None:
    model = Recording()
    generate(prepare(LONG, name="f"), model)
    assert model.prompts[0].startswith(LONG.rstrip())


def test_fit_code_leaves_code_that_fits_alone() -> None:
    job = prepare(SOURCE, name="add")
    budget = PromptBudget(2048, len)
    assert fit_code(job.code, job.signature, job.pieces, budget) == job.code


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        pytest.param("The limit. Defaults to 10.", "10", "The limit. Defaults to 10.", id="right"),
        pytest.param(
            "Flag. Defaults to True.", "False", "Flag. Defaults to False.", id="wrong-value"
        ),
        pytest.param('Extra. Defaults to " ".', None, "Extra.", id="no-default-at-all"),
        pytest.param("Defaults to 5.", None, None, id="nothing-left"),
        pytest.param("Flag (default: True).", "True", "Flag (default: True).", id="parenthesis"),
        pytest.param('Name. Default is "x".', "'x'", 'Name. Default is "x".', id="quotes-differ"),
        pytest.param("Size, defaults to 3.", "4", "Size. Defaults to 4.", id="clause"),
        pytest.param(
            "Uses defaults for the rest.",
            None,
            "Uses defaults for the rest.",
            id="word-in-prose-kept",
        ),
    ],
)
def test_fix_default(text: str, default: str | None, expected: str | None) -> None:
    assert fix_default(text, default) == expected


def test_invented_default_is_corrected() -> None:
    model = FakeModel(
        {
            '"""': "\n    Add.",
            "b (int, optional):": " The second. Defaults to 5.",
            "a (int):": " The first. Defaults to 1.",
        }
    )
    outcome = generate(prepare(SOURCE, name="add"), model)
    parsed = parse_docstring(outcome.literal)
    assert parsed.params["a"][1] == "The first."
    assert parsed.params["b"][1] == "The second. Defaults to 0."


def test_summary_retry_starts_with_the_names_verb() -> None:
    model = FakeModel({'"""': "\n    split_words:", '"""Split': " the text into words."})
    outcome = generate(
        prepare("def split_words(text):\n    return text.split()\n", name="split_words"), model
    )
    assert parse_docstring(outcome.literal).summary == "Split the text into words."
    assert outcome.draft is not None and outcome.draft.origin["summary"] == "repaired"


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        pytest.param("This function returns True if x.", "Return True if x.", id="returns"),
        pytest.param("This function will filter strings.", "Filter strings.", id="will"),
        pytest.param("The method matches a and b.", "Match a and b.", id="es"),
        pytest.param("This function applies f.", "Apply f.", id="ies"),
        pytest.param("This function is fast.", "This function is fast.", id="is-kept"),
        pytest.param("Return x.", "Return x.", id="already-imperative"),
    ],
)
def test_imperative(summary: str, expected: str) -> None:
    assert imperative(summary) == expected
