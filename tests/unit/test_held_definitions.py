"""The definitions a function uses are held per function while the user types in it; the
new ones come in after a pause (prompts/held.py, engine ``_refresh``). A stand-in backend
records the prompts (narrow test; tests/e2e/test_held_definitions_e2e.py runs the real
model)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from lsp_server.backends.base import CancelToken, GenerationRequest, GenerationResult, ModelInfo
from lsp_server.backends.worker import ModelWorker
from lsp_server.config import Settings
from lsp_server.engine import REFRESH_IDLE_S, CompletionEngine
from lsp_server.parsing.document import Document, RangeEdit
from lsp_server.prompts.context import PromptContext
from lsp_server.prompts.held import HeldDefinitions, function_key

URI = "file:///t.py"
SOURCE = (
    "def parse_header(line):\n    return line.split(':', 1)\n\n\n"
    "def render(rows):\n    return '\\n'.join(rows)\n\n\n"
    "def handle(request):\n    rows = request.rows\n    "
)


def _context(definitions: tuple[str, ...], current: str = "def f(x):\n    return ") -> PromptContext:
    return PromptContext(imports="", definitions=definitions, scope_header="", current=current,
                         suffix="", block_indent="", function_indent="", in_function=True)


def test_a_function_keeps_its_first_definitions_until_new_ones_are_adopted() -> None:
    held = HeldDefinitions()
    first, _ = held.hold(URI, _context(("def a(): ...",)))
    assert first.definitions == ("def a(): ...",)
    now, fresh = held.hold(URI, _context(("def a(): ...", "def b(): ...")))
    assert now.definitions == ("def a(): ...",)
    assert fresh is not None and fresh.definitions == ("def a(): ...", "def b(): ...")
    held.adopt(URI, fresh)
    now, fresh = held.hold(URI, _context(("def a(): ...", "def b(): ...")))
    assert now.definitions == ("def a(): ...", "def b(): ...") and fresh is None


def test_functions_are_told_apart_by_their_def_line_not_their_decorator() -> None:
    prop = "    @property\n    def name(self):\n        return "
    other = "    @property\n    def size(self):\n        return "
    assert function_key(URI, _context((), prop)) == (URI, "    def name(self):")
    held = HeldDefinitions()
    held.hold(URI, _context(("def a(): ...",), prop))
    now, fresh = held.hold(URI, _context(("def b(): ...",), other))
    assert now.definitions == ("def b(): ...",) and fresh is None  # its own first visit
    outside = PromptContext(imports="", definitions=("def a(): ...",), scope_header="", current="x = ",
                            suffix="", block_indent="", function_indent="", in_function=False)
    assert held.hold(URI, outside) == (outside, None)
    held.forget(URI)
    now, fresh = held.hold(URI, _context(("def c(): ...",), prop))
    assert now.definitions == ("def c(): ...",) and fresh is None


def test_methods_of_two_classes_with_the_same_def_line_are_held_apart() -> None:
    """Many classes of one file have a ``def __init__(self):``: each holds its own used
    definitions (keyed below the class line, decorators of the class skipped)."""
    init = "    def __init__(self):\n        self.x = "
    box = PromptContext(imports="", definitions=("def make_box(): ...",), scope_header="@dataclass\nclass Box:",
                        current=init, suffix="", block_indent="", function_indent="    ", in_function=True)
    jar = replace(box, definitions=("def make_jar(): ...",), scope_header="@dataclass\nclass Jar:")
    assert function_key(URI, box) == (URI, "class Box:\n    def __init__(self):")
    held = HeldDefinitions()
    held.hold(URI, box)
    now, fresh = held.hold(URI, jar)
    assert now.definitions == ("def make_jar(): ...",)  # Jar's own first visit
    now, fresh = held.hold(URI, replace(box, definitions=("def other(): ...",)))
    assert now.definitions == ("def make_box(): ...",)  # Box's, held
    assert fresh is not None and fresh.definitions == ("def other(): ...",)


class Recorder:
    info = ModelInfo("stand-in", "-", None, 4096, 1, 0)

    def __init__(self) -> None:
        self.requests: list[GenerationRequest] = []
        self.prefilled: list[str] = []

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return [ord(ch) for ch in text]

    def prefill(self, tokens: tuple[int, ...], cancel: CancelToken) -> int:
        self.prefilled.append("".join(chr(t) for t in tokens))
        return len(tokens)

    def generate(self, request: GenerationRequest, cancel: CancelToken) -> GenerationResult:
        self.requests.append(request)
        return GenerationResult(text="x", token_count=1)

    def close(self) -> None:
        pass


def _type(document: Document, text: str) -> None:
    line, character = document.position_at(len(document.text))
    document.apply(RangeEdit(((line, character), (line, character)), text))


def _engine() -> tuple[ModelWorker, Recorder, CompletionEngine]:
    worker = ModelWorker()
    backend = Recorder()
    worker.load(lambda: backend, "stand-in").result(timeout=5)
    return worker, backend, CompletionEngine(worker, lambda: Settings(start_early=False))


def test_a_newly_named_definition_waits_for_a_pause_then_comes_in() -> None:
    worker, backend, engine = _engine()
    document = Document(uri=URI, text=SOURCE)

    async def run() -> None:
        await engine.complete(document, len(document.text))
        _type(document, "return render")
        await engine.complete(document, len(document.text))  # names render(): held set kept
        _type(document, "(")
        await engine.complete(document, len(document.text))  # at once: still held
        await asyncio.sleep(REFRESH_IDLE_S + 0.5)  # a pause: render() is brought in
        _type(document, "r")
        await engine.complete(document, len(document.text))

    try:
        asyncio.run(run())
        first, named, typed, after = (request.prompt for request in backend.requests)
        assert "def render" not in first and "def render" not in named and "def render" not in typed
        # Without holding, naming render() changed the prompt above the function: all of
        # it was evaluated again at that keystroke.
        assert named.startswith(first) and typed.startswith(named)
        assert "def render(rows):\n    ..." in after and engine.definitions_refreshed == 1
        # The pause evaluated the new prompt up to the cursor's line: the next request
        # shares it.
        assert backend.prefilled and after.startswith(backend.prefilled[-1])
    finally:
        worker.shutdown()


def test_one_shot_requests_hold_nothing() -> None:
    worker, backend, engine = _engine()
    document = Document(uri=URI, text=SOURCE)
    try:
        engine.complete_blocking(document, len(document.text), explicit=True)
        _type(document, "return render(")
        engine.complete_blocking(document, len(document.text), explicit=True)
        assert "def render(rows):\n    ..." in backend.requests[-1].prompt
        time.sleep(REFRESH_IDLE_S + 0.2)
        assert engine.definitions_refreshed == 0 and not backend.prefilled
    finally:
        worker.shutdown()


CLASS_SOURCE = (
    "class Connection:\n"
    '    """A connection to the server.\n\n    It keeps the socket open between requests.\n    """\n\n'
    + "".join(f"    def command_{n}(self, argument, *, timeout=None):\n        return self.send({n}, argument)\n\n"
              for n in range(40))
    + "    def handle(self, request):\n        rows = request.rows\n        "
)


def _method(scope_header: str, current: str = "    def f(self):\n        return ") -> PromptContext:
    return PromptContext(imports="", definitions=(), scope_header=scope_header, current=current,
                         suffix="", block_indent="", function_indent="    ", in_function=True)


def test_a_class_met_for_the_first_time_has_a_brief_header_until_it_is_adopted() -> None:
    held = HeldDefinitions()
    header = "class Box:\n    def get(self): ...\n    def put(self, x): ..."
    now, fresh = held.hold(URI, _method(header))
    assert now.brief_header and fresh is not None and not fresh.brief_header
    assert now.scope_header == header  # the budget fits it: the held text is the whole one
    other, _ = held.hold(URI, _method(header, "    def g(self):\n        return "))
    assert other.brief_header  # any method of the class, until the class is adopted
    held.adopt(URI, fresh)
    now, fresh = held.hold(URI, _method(header))
    assert not now.brief_header and fresh is None
    # Another class, or the same class line in another document: brief again.
    assert held.hold(URI, _method("class Jar:\n    def open(self): ..."))[0].brief_header
    assert held.hold("file:///other.py", _method(header))[0].brief_header
    held.forget(URI)
    assert held.hold(URI, _method(header))[0].brief_header
    module_level = _context(())
    assert held.hold(URI, module_level) == (module_level, None)
    # Two decorated classes: adopting one leaves the other brief.
    point = "@dataclass\nclass Point:\n    x: int"
    now, fresh = held.hold(URI, _method(point))
    assert fresh is not None
    held.adopt(URI, fresh)
    assert not held.hold(URI, _method(point))[0].brief_header
    assert held.hold(URI, _method("@dataclass\nclass Span:\n    start: int"))[0].brief_header


def test_a_brief_header_keeps_the_class_line_and_docstring_summary_in_a_few_tokens() -> None:
    from lsp_server.prompts import budget

    def count(text: str) -> int:
        return len(text.split())

    header = CLASS_SOURCE.split("    def handle")[0].rstrip()
    whole = _method(header)
    brief = PromptContext(**{**whole.__dict__, "brief_header": True})
    long_prefix = budget.fit_prefix(whole, count, 1024)
    short_prefix = budget.fit_prefix(brief, count, 1024)
    assert short_prefix.startswith("class Connection:\n    \"\"\"A connection to the server.\"\"\"")
    assert "def command_0(self" in short_prefix and "def command_39(self" not in short_prefix
    assert "def command_39(self" in long_prefix
    assert count(short_prefix) <= count(whole.current) + budget.BRIEF_HEADER_TOKENS + 8
    assert short_prefix.endswith(whole.current) and long_prefix.endswith(whole.current)


def test_a_new_class_is_prompted_briefly_then_its_whole_header_comes_in_at_a_pause() -> None:
    worker, backend, engine = _engine()
    document = Document(uri=URI, text=CLASS_SOURCE)

    async def run() -> None:
        await engine.complete(document, len(document.text))
        _type(document, "return rows")
        await engine.complete(document, len(document.text))  # no pause: still brief
        await asyncio.sleep(REFRESH_IDLE_S + 0.5)  # a pause: the whole header comes in
        _type(document, ".")
        await engine.complete(document, len(document.text))

    try:
        asyncio.run(run())
        first, typed, after = (request.prompt for request in backend.requests)
        # The stand-in counts a token a character: the brief header is the class line and
        # its docstring's first line; the whole one has every member that fits the head.
        assert first.startswith('class Connection:\n    """A connection to the server."""\n')
        assert "def command_" not in first
        assert typed.startswith(first)  # the same head: only the new tokens are evaluated
        assert after.count("def command_") >= 5 and engine.definitions_refreshed == 1
        # The pause evaluated the whole-header prompt up to the cursor's line: the next
        # request shares it.
        assert backend.prefilled and after.startswith(backend.prefilled[-1])
        assert "def command_0(self" in backend.prefilled[-1]
    finally:
        worker.shutdown()


def test_one_shot_requests_in_a_class_get_the_whole_header() -> None:
    worker, backend, engine = _engine()
    document = Document(uri=URI, text=CLASS_SOURCE)
    try:
        engine.complete_blocking(document, len(document.text), explicit=True)
        assert backend.requests[-1].prompt.count("def command_") >= 5
    finally:
        worker.shutdown()
