"""Start early: an edit away from where the model last worked evaluates the prompt there
(up to the start of the cursor's line) in the background; a request stops it between
slices and keeps what was evaluated. A stand-in backend records what it is asked to
evaluate (narrow test; tests/e2e/test_start_early_e2e.py runs the real model)."""

from __future__ import annotations

import asyncio
import threading
import time

from lsp_server.backends.base import (
    Cancelled,
    CancelToken,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
)
from lsp_server.backends.worker import ModelWorker
from lsp_server.config import Settings
from lsp_server.engine import START_EARLY_LINES, CompletionEngine
from lsp_server.parsing.document import Document

DOC = "    \"\"\"" + " ".join(["The file name of a path, without its folders."] * 6) + "\"\"\"\n"
SOURCE = ("import os\n\n\ndef first(x):\n    return x + 1\n\n" + "\n" * 20
          + "def second(path):\n" + DOC + "    name = os.path.basename(path)\n    return na")


class Prefiller:
    info = ModelInfo("stand-in", "-", None, 4096, 1, 0)

    def __init__(self, slice_s: float = 0.0) -> None:
        self.prefilled: list[tuple[int, ...]] = []
        self.requests: list[GenerationRequest] = []
        self.slice_s = slice_s
        self.stopped = threading.Event()

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return [ord(ch) for ch in text]

    def prefill(self, tokens: tuple[int, ...], cancel: CancelToken) -> int:
        for _ in range(0, len(tokens), 64):
            if cancel.cancelled:
                self.stopped.set()
                raise Cancelled(cancel.reason)
            time.sleep(self.slice_s)
        self.prefilled.append(tuple(tokens))
        return len(tokens)

    def generate(self, request: GenerationRequest, cancel: CancelToken) -> GenerationResult:
        self.requests.append(request)
        return GenerationResult(text="me", token_count=1)

    def close(self) -> None:
        pass


def test_an_edit_far_from_the_last_place_starts_early() -> None:
    worker = ModelWorker()
    backend = Prefiller()
    worker.load(lambda: backend, "stand-in").result(timeout=5)
    engine = CompletionEngine(worker, lambda: Settings())
    try:
        assert engine.moved_to("file:///t.py", 3)  # nothing before: start
        assert not engine.moved_to("file:///t.py", 3 + START_EARLY_LINES)  # same place
        assert engine.moved_to("file:///t.py", 40)  # another function
        assert engine.moved_to("file:///u.py", 40)  # another file
        document = Document(uri="file:///t.py", text=SOURCE)
        engine.start_early(document, len(SOURCE))
        deadline = time.monotonic() + 5
        while not backend.prefilled and time.monotonic() < deadline:
            time.sleep(0.01)
        (tokens,) = backend.prefilled
        text = "".join(chr(t) for t in tokens)
        # The prompt the request will have, up to the start of the cursor's line.
        assert text.endswith("def second(path):\n" + DOC + "    name = os.path.basename(path)\n")
        assert "import os" in text and engine.started_early == 1
        asyncio.run(engine.complete(document, len(SOURCE)))
        (request,) = backend.requests
        assert request.prompt.startswith(text) and request.prompt.endswith("    return na")
    finally:
        worker.shutdown()


def test_a_request_stops_a_prompt_started_early() -> None:
    worker = ModelWorker()
    backend = Prefiller(slice_s=0.5)  # 2 s in all: 4 slices of 64 tokens (characters here)
    worker.load(lambda: backend, "stand-in").result(timeout=5)
    engine = CompletionEngine(worker, lambda: Settings())
    document = Document(uri="file:///t.py", text=SOURCE)
    try:
        engine.start_early(document, len(SOURCE))
        time.sleep(0.1)
        started = time.perf_counter()
        suggestion = asyncio.run(engine.complete(document, len(SOURCE)))
        waited = time.perf_counter() - started
    finally:
        worker.shutdown()
    assert suggestion is not None and backend.requests
    assert backend.stopped.is_set() and not backend.prefilled
    assert waited < 1.5  # one slice at most, not the whole prefill
