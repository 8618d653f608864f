"""What the engine asks the backend for: a block on a fresh line after a header or in an
empty body must start with code (``ban_first``); a line in the middle of code need not.
A stand-in backend records the requests (narrow test; the real model is in e2e)."""

from __future__ import annotations

import pytest

from lsp_server.backends.base import (
    CancelToken,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
)
from lsp_server.backends.worker import ModelWorker
from lsp_server.config import Settings
from lsp_server.engine import CODE_FIRST, CompletionEngine
from lsp_server.parsing.document import Document


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
