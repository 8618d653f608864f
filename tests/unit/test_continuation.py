"""A block the time budget cut is written on in the background: accepting the lines on
screen then shows the rest from the type-through cache, and any other request stops the
continuation. A stand-in model streams a fixed body one character at a time, 0.1 s of
model time a character (its own clock), with the real stop checks (narrow test; the real model is in the
e2e tests)."""

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
from lsp_server.backends.stops import check_stops
from lsp_server.backends.worker import ModelWorker
from lsp_server.config import Settings
from lsp_server.engine import CompletionEngine
from lsp_server.parsing.document import Document

HEAD = 'def f(x):\n    """Doc."""\n'
BODY = "    a = 1\n    b = 2\n    c = 3\n    d = 4\n    e = 5\n    f = 6\n    return a + b\n"
AFTER = "\n\ndef g():\n    pass\n"
SECONDS_PER_CHAR = 0.1


class Streamer:
    """Writes BODY + AFTER after the document's head, from wherever the prompt ends."""

    info = ModelInfo("stand-in", "-", None, 4096, 1, 0)

    def __init__(self, wall_per_char: float = 0.0) -> None:
        self.requests: list[GenerationRequest] = []
        self.cancelled = threading.Event()
        self.wall_per_char = wall_per_char

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return [ord(ch) for ch in text]

    def generate(self, request: GenerationRequest, cancel: CancelToken) -> GenerationResult:
        self.requests.append(request)
        at = request.prompt.rfind(HEAD)
        written = request.prompt[at + len(HEAD):] if at >= 0 else None
        script = (BODY + AFTER)[len(written):] if written is not None and (BODY + AFTER).startswith(written) else " 1"
        text, reason = "", "length"
        for count, char in enumerate(script[: request.max_tokens], start=1):
            if cancel.cancelled:
                self.cancelled.set()
                raise Cancelled(cancel.reason)
            time.sleep(self.wall_per_char)
            text += char
            cut, why = check_stops(text, request, 0.0, now=count * SECONDS_PER_CHAR)
            if cut is not None:
                text, reason = text[:cut], why
                break
        return GenerationResult(text=text, token_count=len(text), stop_reason=reason,
                                total_s=len(text) * SECONDS_PER_CHAR)

    def close(self) -> None:
        pass


def engine_with(backend: Streamer) -> tuple[ModelWorker, CompletionEngine]:
    worker = ModelWorker()
    worker.load(lambda: backend, "stand-in").result(timeout=5)
    # 3 s of model time: the budget runs out after 30 characters, at the third line (and
    # a request that takes the suggestion waits up to 3 s of wall time for the rest).
    return worker, CompletionEngine(worker, lambda: Settings(time_budget_ms=3000, max_tokens=200))


def test_accepting_a_cut_block_shows_the_rest_written_in_the_background() -> None:
    backend = Streamer(wall_per_char=0.002)
    worker, engine = engine_with(backend)

    async def scenario() -> None:
        document = Document(uri="file:///t.py", text=HEAD + AFTER)
        shown = await engine.complete(document, len(HEAD))
        assert shown is not None and shown.result is not None
        assert shown.result.stop_reason == "time"
        assert shown.text == "    a = 1\n    b = 2\n    c = 3"  # the lines complete in the budget
        # The user accepts it at once (the continuation is still writing): the request
        # waits for it and answers the whole block from the type-through cache.
        accepted = HEAD + shown.text + AFTER
        cursor = len(HEAD) + len(shown.text)
        rest = await engine.complete(Document(uri="file:///t.py", text=accepted, version=2), cursor)
        assert rest is not None and rest.reused_from_cache
        assert rest.text == BODY.rstrip("\n")  # up to the block's end, not into ``def g``
        assert (rest.start, rest.end) == (len(HEAD), cursor)

    try:
        asyncio.run(scenario())
    finally:
        worker.shutdown()
    first, more = backend.requests
    assert engine.continued == 1 and len(backend.requests) == 2
    assert more.time_budget is None and more.stop == ()
    # It goes on from the tokens already evaluated and generated (the KV cache's).
    assert first.prompt_tokens is not None and more.prompt_tokens is not None
    assert more.prompt_tokens[: len(first.prompt_tokens)] == first.prompt_tokens
    assert "".join(chr(t) for t in more.prompt_tokens) == more.prompt


def test_typing_part_of_a_cut_block_is_answered_at_once_while_the_rest_is_written() -> None:
    """Typing through the lines on screen does not wait for the continuation: what is
    left of them is there already (the replays had such requests wait the whole budget)."""
    backend = Streamer(wall_per_char=0.05)  # the continuation takes seconds of wall time
    worker, engine = engine_with(backend)

    async def scenario() -> None:
        shown = await engine.complete(Document(uri="file:///t.py", text=HEAD + AFTER), len(HEAD))
        assert shown is not None and shown.result is not None and shown.result.stop_reason == "time"
        typed = shown.text[:6]  # "    a "
        started = time.perf_counter()
        again = await engine.complete(
            Document(uri="file:///t.py", text=HEAD + typed + AFTER, version=2), len(HEAD) + len(typed))
        waited = time.perf_counter() - started
        assert again is not None and again.reused_from_cache and again.text == shown.text
        assert engine.continued == 0 and engine._pending is not None  # still writing
        assert waited < 1.0, waited

    try:
        asyncio.run(scenario())
    finally:
        worker.shutdown()


def test_another_request_stops_the_continuation() -> None:
    backend = Streamer(wall_per_char=0.05)  # the continuation would take seconds
    worker, engine = engine_with(backend)
    other = "def h(y):\n    return y +"

    async def scenario() -> None:
        shown = await engine.complete(Document(uri="file:///t.py", text=HEAD + AFTER), len(HEAD))
        assert shown is not None and shown.result is not None and shown.result.stop_reason == "time"
        await asyncio.sleep(0.2)  # the continuation is writing
        started = time.perf_counter()
        await engine.complete(Document(uri="file:///u.py", text=other), len(other))
        assert time.perf_counter() - started < 1.0  # did not wait for the continuation

    try:
        asyncio.run(scenario())
    finally:
        worker.shutdown()
    assert backend.cancelled.is_set()
    assert engine.continued == 0
    assert len(backend.requests) == 3 and backend.requests[2].prompt.endswith(other)


def test_a_block_that_ends_in_the_budget_is_not_continued() -> None:
    backend = Streamer()
    worker = ModelWorker()
    worker.load(lambda: backend, "stand-in").result(timeout=5)
    engine = CompletionEngine(worker, lambda: Settings(time_budget_ms=50000, max_tokens=200))

    async def scenario() -> None:
        shown = await engine.complete(Document(uri="file:///t.py", text=HEAD + AFTER), len(HEAD))
        assert shown is not None and shown.text == BODY.rstrip("\n")
        await asyncio.sleep(0.1)

    try:
        asyncio.run(scenario())
    finally:
        worker.shutdown()
    assert len(backend.requests) == 1 and engine.continued == 0
