""""Generate a test for this function": where the test goes, the prompt, and the edit.

The model only writes the body of ``def test_<name>():``; the file, the import and the
test's name are decided here, so the result is always a well-formed pytest test the
user reviews before keeping it. The embedded model has no FIM tokens, so the prompt is
a prefix: the function under test, then the start of its test file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from lsp_server.backends.base import Backend, CancelToken, GenerationRequest, GenerationResult
from lsp_server.parsing import syntax
from lsp_server.prompts.budget import PromptBudget

STOP = ("\ndef ", "\nclass ", "\n# file:", "\nif __name__", "\n@")
# Tokens the model may write for a test's body.
MAX_TOKENS = 160


def import_module(path: str) -> str:
    """Dotted module of a workspace-relative file, as tests import it (``src/`` dropped)."""
    parts = list(PurePosixPath(path).with_suffix("").parts)
    if parts and parts[0] == "src" and len(parts) > 1:
        parts = parts[1:]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def choose_test_file(module_path: str, existing_tests: Iterable[str], has_tests_dir: bool) -> str:
    """The test file for ``module_path``: an existing ``test_<stem>.py`` if there is one,
    else a new one in ``tests/`` (if the workspace has that directory) or next to it."""
    stem = PurePosixPath(module_path).stem
    wanted = {f"test_{stem}.py", f"{stem}_test.py"}
    matches = sorted(p for p in existing_tests if PurePosixPath(p).name in wanted)
    if matches:
        return matches[0]
    if has_tests_dir:
        return f"tests/test_{stem}.py"
    parent = PurePosixPath(module_path).parent
    return str(parent / f"test_{stem}.py") if str(parent) != "." else f"test_{stem}.py"


def import_line(module_path: str, name: str, class_name: str | None) -> str:
    return f"from {import_module(module_path)} import {class_name or name}"


def unique_test_name(name: str, existing_text: str) -> str:
    base = f"test_{name.strip('_') or 'function'}"
    candidate, n = base, 2
    while f"def {candidate}(" in existing_text:
        candidate, n = f"{base}_{n}", n + 1
    return candidate


@dataclass(frozen=True)
class TestPrompt:
    """A prefix that ends right where the test's body begins: ``head`` names the module,
    ``source`` is the function under test, ``tail`` starts its test file."""

    __test__ = False  # not a pytest class

    head: str
    source: str
    tail: str

    @property
    def text(self) -> str:
        return self.head + self.source + self.tail

    def fitted(self, budget: PromptBudget) -> str:
        """The prompt within the model's budget beside :data:`MAX_TOKENS`: the function
        keeps its top (signature, docstring, first lines); lines go from its end."""
        room = budget.room(MAX_TOKENS, beside=self.head + self.tail)
        return self.head + budget.keep_start(self.source, room) + self.tail


def build_prompt(
    module_path: str, function_source: str, imports: str, test_name: str, existing_tests: str = ""
) -> TestPrompt:
    """The function under test, then the start of its test file."""
    header = existing_tests.strip() or f"import pytest\n\n{imports}"
    if imports not in header:
        header = f"{header}\n{imports}"
    return TestPrompt(
        f"# file: {module_path}\n",
        function_source.rstrip(),
        f"\n\n\n# file: tests/test_{PurePosixPath(module_path).stem}.py\n{header}\n\n\n"
        f"def {test_name}():\n    ",
    )


def request(prompt: TestPrompt, budget: PromptBudget) -> GenerationRequest:
    return GenerationRequest(
        prompt=prompt.fitted(budget), max_tokens=MAX_TOKENS, temperature=0.0, stop=STOP
    )


def generation(prompt: TestPrompt) -> Callable[[Backend, CancelToken], GenerationResult]:
    """A model-worker job: fit the prompt with the loaded model's tokenizer, then generate."""

    def job(backend: Backend, cancel: CancelToken) -> GenerationResult:
        budget = PromptBudget.counting(backend.info.n_ctx, backend.tokenize)
        return backend.generate(request(prompt, budget), cancel)

    return job


def clean_body(generated: str) -> str | None:
    """The indented body the model wrote, cut to what parses; None if nothing useful."""
    lines = ("    " + generated).split("\n")
    body: list[str] = []
    for line in lines:
        if line.strip() and not line.startswith((" ", "\t")):
            break
        body.append(line.rstrip())
    while body and not body[-1].strip():
        body.pop()
    while body:
        source = "def t():\n" + "\n".join(body) + "\n"
        if syntax.error_count(syntax.parse_text(source).root_node) == 0:
            break
        body.pop()
    if not any(line.strip() and not line.strip().startswith("#") for line in body):
        return None
    return "\n".join(body)


@dataclass(frozen=True)
class Insertion:
    offset: int  # code points into the test file (0 for a new file)
    text: str


def insertions(existing: str | None, imports: str, test_name: str, body: str) -> list[Insertion]:
    """The text to add to the test file (None: it does not exist yet)."""
    test = f"def {test_name}():\n{body}\n"
    if existing is None or not existing.strip():
        return [Insertion(0, f"{imports}\n\n\n{test}")]
    out: list[Insertion] = []
    if imports not in existing:
        out.append(Insertion(_import_offset(existing), f"{imports}\n"))
    ending = "" if existing.endswith("\n") else "\n"
    out.append(Insertion(len(existing), f"{ending}\n\n{test}"))
    return out


def _import_offset(text: str) -> int:
    """Just after the last top-level import (or the module docstring), else 0."""
    tree = syntax.parse_text(text)
    source = text.encode("utf-8")
    offset_bytes = 0
    for node in tree.root_node.children:
        if node.type in ("import_statement", "import_from_statement", "future_import_statement"):
            offset_bytes = node.end_byte
        elif node.type == "expression_statement" and offset_bytes == 0 and node.children and node.children[0].type == "string":
            offset_bytes = node.end_byte
        elif node.type not in ("comment",):
            break
    if offset_bytes == 0:
        return 0
    prefix = source[:offset_bytes].decode("utf-8", errors="replace")
    newline = text.find("\n", len(prefix))
    return len(text) if newline < 0 else newline + 1
