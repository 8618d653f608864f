"""What the engine asks the backend for: a block on a fresh line after a header or in an
empty body must start with code (``ban_first``); a line in the middle of code need not.
A stand-in backend records the requests (narrow test; the real model is in e2e)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lsp_server.backends.base import (
    CancelToken,
    FimTokens,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
)
from lsp_server.backends.worker import ModelWorker
from lsp_server.config import Settings
from lsp_server.engine import CODE_FIRST, CompletionEngine
from lsp_server.parsing.document import Document
from lsp_server.prompts.postprocess import complete_line_cut


class Recorder:
    info = ModelInfo("stand-in", "-", None, 2048, 1, 0)

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.requests: list[GenerationRequest] = []

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return [ord(ch) for ch in text]

    def generate(self, request: GenerationRequest, cancel: CancelToken) -> GenerationResult:
        self.requests.append(request)
        return GenerationResult(text=self.answers[len(self.requests) - 1], token_count=3)

    def close(self) -> None:
        pass


def requests_at(marked: str, answers: list[str]) -> list[GenerationRequest]:
    backend = Recorder(answers)
    worker = ModelWorker()
    worker.load(lambda: backend, "stand-in").result(timeout=5)
    engine = CompletionEngine(worker, lambda: Settings())
    cursor = marked.index("|")
    text = marked.replace("|", "")
    try:
        engine.complete_blocking(Document(uri="file:///t.py", text=text), cursor)
    finally:
        worker.shutdown()
    return backend.requests


@pytest.mark.parametrize(
    ("marked", "answers", "bans"),
    [
        pytest.param('def f(x):\n    """Doc."""\n|', ["    return x\n"], [CODE_FIRST], id="empty-body"),
        pytest.param("def f(x):\n    if x:\n|", ["        return 1\n"], [CODE_FIRST], id="after-header"),
        pytest.param("def f(x):\n    y = x\n    return y +|", [" 1"], [()], id="mid-line"),
        pytest.param("def f(x):\n    y = x\n|", ["    return y\n"], [()], id="new-line-in-code"),
        pytest.param(
            "def f(x):\n    y = x\n    if|", [" y:", "        return y\n"], [(), CODE_FIRST],
            id="line-opens-a-block",
        ),
    ],
)
def test_code_first_only_where_a_block_starts(
    marked: str, answers: list[str], bans: list[tuple[str, ...]]
) -> None:
    requests = requests_at(marked, answers)
    assert [r.ban_first for r in requests] == bans
    # The prompt reaches the backend as token ids that spell the prompt text.
    for request in requests:
        assert request.prompt_tokens is not None
        assert "".join(chr(t) for t in request.prompt_tokens) == request.prompt


def test_class_header_holds_while_an_open_bracket_swallows_the_next_method() -> None:
    """Retyping textwrap's ``_fix_sentence_endings`` one character at a time: with a
    bracket open at the cursor, ``_handle_long_word`` drops out of the parse; the
    prompt's head must not flip with it (each flip re-evaluated ~150 tokens)."""
    import textwrap

    source = open(textwrap.__file__, encoding="utf-8").read()
    line = '            if chunks[i+1] == " " and patsearch(chunks[i]):'
    start = source.index(line)
    backend = Recorder(["x"] * 200)
    backend.info = ModelInfo("stand-in", "-", None, 65536, 1, 0)  # one token a character:
    settings = Settings(max_prompt_tokens=32768)  # room for the whole class header
    worker = ModelWorker()
    worker.load(lambda: backend, "stand-in").result(timeout=5)
    engine = CompletionEngine(worker, lambda: settings)
    heads = set()
    try:
        for end in range(start + line.index("patsearch("), start + len(line) + 1):
            text = source[:end] + source[start + len(line) :]
            engine.complete_blocking(Document(uri="file:///textwrap.py", text=text), end)
            prompt = backend.requests[-1].prompt
            heads.add(prompt[: prompt.rindex("    def _fix_sentence_endings")])
    finally:
        worker.shutdown()
    assert len(backend.requests) == len(line) - line.index("patsearch(") + 1
    assert len(heads) == 1
    assert "def _handle_long_word" in heads.pop()


def test_stable_headers_follow_clean_parses_only() -> None:
    from lsp_server.engine import StableHeaders
    from lsp_server.prompts.context import PromptContext

    def context(header: str, current: str = "    def f(self):\n        x") -> PromptContext:
        return PromptContext("", (), header, current, "", "", "    ", True)

    headers = StableHeaders()
    full, partial = "class A:\n    def g(self): ...\n    def h(self): ...", "class A:\n    def g(self): ..."
    assert headers.settle("u", context(full), clean=True).scope_header == full
    assert headers.settle("u", context(partial), clean=False).scope_header == full
    assert headers.settle("u", context(partial), clean=True).scope_header == partial
    # Another method of the class gets the class's header of the last clean parse (the
    # head of its prompt is then the one in the KV cache); another document or class has
    # its own entry; no header, nothing to hold.
    other = context(full, "    def g(self):\n        y")
    assert headers.settle("u", other, clean=False).scope_header == partial
    assert headers.settle("u", context(full, "    def h(self):\n        z"), clean=True).scope_header == full
    assert headers.settle("u", context(partial, "    def g(self):\n        y"), clean=False).scope_header == full
    assert headers.settle("u", context("class B:\n    x = 1"), clean=False).scope_header == "class B:\n    x = 1"
    assert headers.settle("v", context(partial), clean=False).scope_header == partial
    assert headers.settle("u", context(""), clean=False).scope_header == ""
    # Decorated classes are told apart by their class line, not their first line: one
    # ``@dataclass`` class's header must not stand in for another's.
    first = "@dataclass\nclass Point:\n    x: int\n    def norm(self): ..."
    second = "@dataclass\nclass Span:\n    start: int\n    def length(self): ..."
    assert headers.settle("u", context(first), clean=True).scope_header == first
    assert headers.settle("u", context(second), clean=False).scope_header == second
    assert headers.settle("u", context(first[:30]), clean=False).scope_header == first


FIM = FimTokens(prefix=-1, suffix=-2, middle=-3, stops=frozenset({-4}), order="psm")


@pytest.mark.parametrize(
    ("fim", "bos"),
    [
        pytest.param(None, (), id="prefix-only"),
        pytest.param(None, (-9,), id="prefix-only-with-bos"),
        pytest.param(FIM, (-9,), id="fim-psm"),
        pytest.param(replace(FIM, order="spm"), (), id="fim-spm"),
    ],
)
def test_prompt_tokens_come_from_model_info(fim: FimTokens | None, bos: tuple[int, ...]) -> None:
    """FIM markers and BOS are the model's, read from ``ModelInfo``: nothing else about
    the backend is looked up."""
    backend = Recorder(["    return x\n"])
    backend.info = ModelInfo("stand-in", "-", "psm" if fim else None, 2048, 1, 0, bos=bos, fim=fim)
    worker = ModelWorker()
    worker.load(lambda: backend, "stand-in").result(timeout=5)
    text = "def f(x):\n    \n\nprint(f(1))\n"
    cursor = text.index("\n    \n") + 5
    try:
        engine = CompletionEngine(worker, lambda: Settings())
        engine.complete_blocking(Document(uri="file:///t.py", text=text), cursor)
    finally:
        worker.shutdown()
    (request,) = backend.requests
    assert request.prompt_tokens is not None
    ids = list(request.prompt_tokens)
    assert ids[: len(bos)] == list(bos)
    ids = ids[len(bos) :]
    prefix = [ord(ch) for ch in request.prompt]
    if fim is None:
        assert ids == prefix and request.stop_token_ids == frozenset()
        return
    assert request.stop_token_ids == fim.stops
    assert ids[-1] == fim.middle
    first, second = (fim.prefix, fim.suffix) if fim.order == "psm" else (fim.suffix, fim.prefix)
    assert ids[0] == first and second in ids
    split = ids.index(second)
    prefix_ids, suffix_ids = (ids[1:split], ids[split + 1 : -1])
    if fim.order == "spm":
        prefix_ids, suffix_ids = suffix_ids, prefix_ids
    assert prefix_ids == prefix
    assert "".join(chr(t) for t in suffix_ids).startswith("\n\nprint(f(1))")


def test_time_budget_cut_is_a_stop_rule_from_the_engine() -> None:
    requests = requests_at("def f(x):\n    y = x\n|", ["    return y\n"])
    (request,) = requests
    assert request.time_budget is not None
    assert request.time_budget.seconds == Settings().time_budget_ms / 1000.0
    assert request.time_budget.cut is complete_line_cut


def test_a_block_after_a_suggested_header_gets_what_is_left_of_the_time_budget() -> None:
    """The line and the body it opens share one time budget: a request that suggested a
    header after 1.2 s of a 1.5 s budget may spend 0.3 s more, not another 1.5 s."""

    class Slow(Recorder):
        def generate(self, request: GenerationRequest, cancel: CancelToken) -> GenerationResult:
            self.requests.append(request)
            return GenerationResult(text=self.answers[len(self.requests) - 1], token_count=3,
                                    total_s=1.2)

    backend = Slow([" y:", "        return y\n"])
    worker = ModelWorker()
    worker.load(lambda: backend, "stand-in").result(timeout=5)
    engine = CompletionEngine(worker, lambda: Settings(time_budget_ms=1500))
    try:
        text = "def f(x):\n    y = x\n    if"
        engine.complete_blocking(Document(uri="file:///t.py", text=text), len(text))
    finally:
        worker.shutdown()
    first, follow = backend.requests
    assert first.time_budget is not None and first.time_budget.seconds == pytest.approx(1.5)
    assert follow.time_budget is not None and follow.time_budget.seconds == pytest.approx(0.3)
    assert follow.time_budget.cut is first.time_budget.cut


def test_last_request_accounts_for_every_request() -> None:
    """``lastRequest`` (ghostpilot/stats) has the tokens of a plain line suggestion, of
    one dropped by post-processing, and the reason when nothing was asked of the model."""
    backend = Recorder([" + 1", " + (", "x"])
    worker = ModelWorker()
    worker.load(lambda: backend, "stand-in").result(timeout=5)
    engine = CompletionEngine(worker, lambda: Settings())
    text = "def f(x):\n    y = x\n    return y"
    try:
        assert engine.complete_blocking(Document(uri="file:///t.py", text=text), len(text))
        shown = engine.last_request
        assert shown is not None and shown.outcome == "suggested"
        assert shown.as_json()["generatedTokens"] == 3 and shown.prompt_ms >= 0
        engine.forget("file:///t.py")  # no type-through
        assert engine.complete_blocking(Document(uri="file:///t.py", text=text), len(text)) is None
        dropped = engine.last_request
        assert dropped is not None and dropped.outcome == "dropped by post-processing"
        assert dropped.as_json()["generatedTokens"] == 3
        comment = "def f(x):\n    # a comment"
        assert engine.complete_blocking(Document(uri="file:///t.py", text=comment), len(comment)) is None
        nothing = engine.last_request
        assert nothing is not None and nothing.outcome.startswith("nothing to suggest")
        assert nothing.as_json()["generatedTokens"] == 0 and len(backend.requests) == 2
    finally:
        worker.shutdown()


def test_the_outline_holds_while_another_body_is_broken() -> None:
    """The outline heads every prompt of the file; an unfinished statement elsewhere must
    not change it (only a clean parse does)."""
    from lsp_server.engine import StableHeaders
    from lsp_server.prompts.context import PromptContext

    def context(outline: str, imports: str = "import os") -> PromptContext:
        return PromptContext(imports, (), "", "def f():\n    ", "", "", "", True, outline=outline)

    headers = StableHeaders()
    full, folded = "def a(): ...\ndef b(): ...", "def a(): ..."
    assert headers.settle("u", context(full), clean=True).outline == full
    held = headers.settle("u", context(folded, "import os\nimport ssl"), clean=False)
    assert (held.outline, held.imports) == (full, "import os")
    assert headers.settle("v", context(folded), clean=False).outline == folded
    assert headers.settle("u", context(folded), clean=True).outline == folded
    headers.forget("u")
    assert headers.settle("u", context(""), clean=False).outline == ""


def test_a_requests_time_budget_has_a_hard_limit() -> None:
    """Past three times the budget (at least a second past it) a suggestion stops where
    it is, even with no complete line to cut at."""
    (request,) = requests_at('def f(x):\n    """Doc."""\n|', ["    return x\n"])
    budget = request.time_budget
    assert budget is not None
    seconds = Settings().time_budget_ms / 1000
    assert budget.seconds == seconds
    assert budget.hard_seconds == max(3 * seconds, seconds + 1.0)
