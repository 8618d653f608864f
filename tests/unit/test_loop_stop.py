"""A generation that falls into a loop stops there (``stops.repetition``), and a line
suggestion that looped is not shown. Loops are the small model's, seen in the typing
replays; the real code below must never look like one."""

from __future__ import annotations

import random
import sysconfig
from pathlib import Path

import pytest

from lsp_server.backends.base import CancelToken, GenerationRequest, GenerationResult, ModelInfo
from lsp_server.backends.stops import (
    LOOP_COPIES,
    LOOP_MAX_PERIOD,
    LOOP_MIN_CHARS,
    NEST_COPIES,
    NEST_MIN_PERIOD,
    _shape,
    check_stops,
    nesting,
    repetition,
)
from lsp_server.backends.worker import ModelWorker
from lsp_server.config import Settings
from lsp_server.engine import CompletionEngine
from lsp_server.parsing.document import Document


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("get_width(self.tk.get_width(self.tk.get_width(self.tk.get_wi", "get_width(self.tk."),
        ("getint(self.getdouble(self.getdouble(self.getdouble(self.get", "getint(self.getdouble"),
        ("1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,", "1, "),
        ("x = " + "ab" * 30, "x = ab"),
    ],
)
def test_a_loop_is_cut_after_its_first_copy(text: str, kept: str) -> None:
    assert text[: repetition(text)] == kept
    cut, reason = check_stops(text, GenerationRequest(prompt=""), 0.0)
    assert (text[:cut], reason) == (kept, "repetition")


@pytest.mark.parametrize(
    "text",
    [
        "x = [0, 0, 0, 0, 0, 0, 0, 0]",
        'padding = b"\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00"',
        "# " + "-" * 70,
        "    " * 12 + "return value",
        "mask = 0x0000000000000000",
        # two copies are not a loop
        " and name.isidentifier() and name.isidentifier() and name.is",
        "value = '" + "=" * 60 + "'",
        # whole lines that repeat are the block rule's (postprocess._repetition_cut)
        "\n        self.x = x\n        self.x = x\n        self.x = x\n        self.x",
    ],
)
def test_real_code_is_not_a_loop(text: str) -> None:
    assert repetition(text) is None
    assert check_stops(text, GenerationRequest(prompt=""), 0.0) == (None, "")


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("        self.error_reply(self.sock, self.error_temp(self.sock, self.error_perm(self.sock, "
         "self.error_proto(self.sock, self.", "        self.error_reply(self.sock, "),
        ("return self.node(left, self.tree(right, self.leaf(value, self.branch(other, self.",
         "return self.node(left, "),
    ],
)
def test_calls_that_nest_without_end_are_cut_after_the_first(text: str, kept: str) -> None:
    """A new name at each level: no copy of one piece, but the same shape."""
    assert repetition(text) is None
    cut, reason = check_stops(text, GenerationRequest(prompt=""), 0.0)
    assert (text[:cut], reason) == (kept, "repetition")


@pytest.mark.parametrize(
    "text",
    [
        "base = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data')",
        "value = max(0, min(limit, round(value * scale, 2)))",
        "call(alpha, beta, gamma, delta, epsilon, zeta, eta, theta, iota, kappa, lambda_)",
        "matrix = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12], [13, 14, 15]]",
        "result = f(a, g(b, h(c, d)))  # three levels, each a new name",
    ],
)
def test_real_nesting_is_not_a_loop(text: str) -> None:
    assert all(nesting(text[:end]) is None for end in range(len(text) + 1))


def test_short_texts_are_never_loops() -> None:
    assert repetition("a" * (LOOP_MIN_CHARS - 1)) is None
    assert repetition("a" * LOOP_MIN_CHARS) == 1


def test_a_stop_string_before_the_loop_wins() -> None:
    text = "x = 1\n" + "foo(" * 20
    cut, reason = check_stops(text, GenerationRequest(prompt="", stop=("\n",)), 0.0)
    assert (cut, reason) == (5, "stop")


STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.mark.parametrize("module", ["argparse.py", "tkinter/__init__.py", "ftplib.py", "json/decoder.py",
                                    "email/_header_value_parser.py"])
def test_no_line_of_real_modules_looks_like_a_loop_wherever_it_is_cut(module: str) -> None:
    """Generated text ends anywhere: no prefix of any line may look like a loop."""
    path = STDLIB / module
    if not path.is_file():
        pytest.skip(f"{path} is not installed")
    found = [
        line for line in path.read_text(encoding="utf-8").split("\n")
        if any(repetition(line[:end]) is not None or nesting(line[:end]) is not None
               for end in range(LOOP_MIN_CHARS, len(line) + 1))
    ]
    assert found == []


def _plain_repetition(text: str) -> int | None:
    """stops.repetition's rule without its quick rejection: every period walked."""
    n = len(text)
    if n < LOOP_MIN_CHARS:
        return None
    for period in range(1, min(LOOP_MAX_PERIOD, n // LOOP_COPIES) + 1):
        span = period
        while span < n and text[n - span - 1] == text[n - span - 1 + period]:
            span += 1
        if span >= LOOP_MIN_CHARS and span >= LOOP_COPIES * period:
            piece = text[n - period :]
            if "\n" not in piece and any(c.isalnum() for c in piece):
                return n - span + period
    return None


def _plain_nesting(text: str) -> int | None:
    """stops.nesting's rule without its quick rejection (the line's commas and brackets)."""
    line_start = text.rfind("\n") + 1
    if len(text) - line_start < LOOP_MIN_CHARS:
        return None
    shape, starts = _shape(text[line_start:])
    n = len(shape)
    for period in range(NEST_MIN_PERIOD, min(LOOP_MAX_PERIOD, n // NEST_COPIES) + 1):
        span = period
        while span < n and shape[n - span - 1] == shape[n - span - 1 + period]:
            span += 1
        if span < NEST_COPIES * period:
            continue
        piece = shape[n - period :]
        opened = sum(piece.count(c) for c in "([{") - sum(piece.count(c) for c in ")]}")
        first = starts[n - span + period]
        if opened > 0 and "," in piece and len(text) - line_start - starts[n - span] >= LOOP_MIN_CHARS:
            return line_start + first
    return None


def test_the_quick_rejections_change_no_answer() -> None:
    """The loop checks run at every generated token, so each first rejects most texts
    with a comparison in C; on random texts with and without loops in them, and every
    prefix of each, they answer as the plain rules do."""
    rng = random.Random(7)
    pieces = ["f(a, ", "self.x(", "ab", "0, ", "get(self.tk.", " ", "\n", "x", ")", "[1, ", "q"]
    texts = []
    for _ in range(300):
        head = "".join(rng.choice("abc (),[]\n1_") for _ in range(rng.randrange(0, 30)))
        piece = rng.choice(pieces) + "".join(rng.choice("ab(,") for _ in range(rng.randrange(0, 8)))
        texts.append(head + piece * rng.randrange(1, 25) + rng.choice(["", "a", "f(", "\n"]))
    looped = checked = 0
    for text in texts:
        for end in range(LOOP_MIN_CHARS, len(text) + 1):
            prefix = text[:end]
            expected = (_plain_repetition(prefix), _plain_nesting(prefix))
            assert (repetition(prefix), nesting(prefix)) == expected, prefix
            looped += expected != (None, None)
            checked += 1
    assert looped > 1000 and checked - looped > 1000  # both kinds of text were seen


class Looping:
    """A stand-in backend whose answer stopped on a loop (narrow test)."""

    info = ModelInfo("stand-in", "-", None, 2048, 1, 0)

    def __init__(self, text: str) -> None:
        self.text = text

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return [ord(ch) for ch in text]

    def generate(self, request: GenerationRequest, cancel: CancelToken) -> GenerationResult:
        cut, reason = check_stops(self.text, request, 0.0)
        text = self.text if cut is None else self.text[:cut]
        return GenerationResult(text=text, token_count=20, stop_reason=reason or "length")

    def close(self) -> None:
        pass


def complete(marked: str, answer: str) -> tuple[str | None, str]:
    engine_worker = ModelWorker()
    engine_worker.load(lambda: Looping(answer), "stand-in").result(timeout=5)
    engine = CompletionEngine(engine_worker, lambda: Settings())
    cursor = marked.index("|")
    text = marked.replace("|", "")
    try:
        suggestion = engine.complete_blocking(Document(uri="file:///t.py", text=text), cursor)
    finally:
        engine_worker.shutdown()
    assert engine.last_request is not None
    return (None if suggestion is None else suggestion.text), engine.last_request.outcome


def test_a_line_that_looped_is_not_shown() -> None:
    text, outcome = complete("def f(self):\n    w = self.|",
                             "get_width(self.tk.get_width(self.tk.get_width(self.tk.get_wi")
    assert text is None and outcome == "dropped: the model repeated itself"


def test_a_block_keeps_its_lines_before_calls_that_nest_without_end() -> None:
    answer = ("    reply = None\n    self.error_reply(self.sock, self.error_temp(self.sock, "
              "self.error_perm(self.sock, self.error_proto(self.sock, self.")
    text, outcome = complete("def f(self):\n|", answer)
    assert outcome == "suggested" and text is not None
    assert text.strip() == "reply = None"


def test_a_block_keeps_its_lines_before_the_loop() -> None:
    answer = "    total = 0\n    w = get(self.get(self.get(self.get(self.get(self.get(self.get(self."
    text, outcome = complete("def f(values):\n|", answer)
    assert outcome == "suggested" and text is not None
    assert text.strip() == "total = 0"
