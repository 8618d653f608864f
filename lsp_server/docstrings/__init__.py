"""Codex-D docstring generation: the structure from the syntax tree, the prose from the model.

``prepare`` finds the definition and everything the docstring depends on (structure,
style, indentation, quotes, the code the model reads); ``generate`` fills it with the
model's prose and returns the text edit; ``finish`` turns any prose (or none, for a
skeleton) into that edit. The LSP feature, the CLI and the evaluation share these.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tree_sitter import Tree

from lsp_server.docstrings.errors import (
    DocstringError,
    EmptyFile,
    InsertionFailed,
    NoDefinition,
    SyntaxErrorInCode,
)
from lsp_server.docstrings.generation import (
    DocstringDraft,
    Generate,
    Progress,
    code_context,
    fit_code,
    generate_prose,
    skeleton,
)
from lsp_server.docstrings.insertion import (
    Placement,
    TextEdit,
    build_edit,
    check_edit,
    placement,
)
from lsp_server.docstrings.structure import (
    Definition,
    Structure,
    all_docstrings,
    definition_at,
    definition_named,
    definitions,
    describe,
)
from lsp_server.docstrings.styles import (
    Piece,
    Style,
    layout,
    parse_docstring,
    render,
    resolve_style,
)
from lsp_server.parsing import syntax
from lsp_server.prompts.budget import PromptBudget


@dataclass(frozen=True)
class DocstringJob:
    text: str
    source: bytes
    tree: Tree
    definition: Definition
    style: Style
    place: Placement
    pieces: list[Piece]
    code: str  # the definition's code as the model reads it (old docstring removed, uncut)
    signature: str  # the header re-stated for the prompt, dedented

    @property
    def structure(self) -> Structure:
        return self.definition.structure

    @property
    def regenerate(self) -> bool:
        return self.definition.existing_docstring is not None

    @property
    def previous_summary(self) -> str | None:
        existing = self.definition.existing_docstring
        if existing is None:
            return None
        return parse_docstring(syntax.node_text(existing, self.source)).summary or None


@dataclass(frozen=True)
class DocstringOutcome:
    edit: TextEdit
    new_text: str
    literal: str  # the docstring as inserted, quotes included, "\n" newlines
    style: Style
    draft: DocstringDraft | None = None


def _char(source: bytes, byte_offset: int) -> int:
    return len(source[:byte_offset].decode("utf-8", errors="replace"))


def _code_and_signature(text: str, source: bytes, definition: Definition) -> tuple[str, str]:
    """The definition's code (decorators in, old docstring out) and its bare header."""
    node = definition.node
    outer_start = _char(source, syntax.definition_node(node).start_byte)
    line_start = text.rfind("\n", 0, outer_start) + 1
    end = _char(source, node.end_byte)
    code = text[line_start:end]
    existing = definition.existing_docstring
    if existing is not None:
        old_start = _char(source, existing.start_byte) - line_start
        old_end = _char(source, existing.end_byte) - line_start
        cut_start = code.rfind("\n", 0, old_start) + 1
        if code[cut_start:old_start].strip():  # the docstring shares a line: cut it alone
            cut_start = old_start
        after = code.find("\n", old_end)
        cut_end = after + 1 if after != -1 and not code[old_end:after].strip() else old_end
        code = code[:cut_start] + code[cut_end:]
    start = _char(source, node.start_byte)
    prefix = text[text.rfind("\n", 0, start) + 1 : start]
    header = text[start : _char(source, definition.header_end)].replace("\r\n", "\n")
    lines = header.split("\n")
    if not prefix.strip():
        lines = [lines[0]] + [line.removeprefix(prefix) for line in lines[1:]]
    return code_context(code), "\n".join(lines)


def prepare(
    text: str,
    *,
    tree: Tree | None = None,
    offset: int | None = None,
    name: str | None = None,
    style: str | None = "auto",
    project_docstrings: Iterable[str] = (),
    header_only: bool = False,
) -> DocstringJob:
    """Everything needed to document the definition at ``offset`` (code points) or named
    ``name``. Raises a :class:`DocstringError` with a user-facing message."""
    if not text.strip():
        raise EmptyFile()
    source = text.encode("utf-8")
    if tree is None:
        tree = syntax.parse(source)
    if name is not None:
        definition = definition_named(tree, source, name)
    else:
        byte_offset = len(text[: offset or 0].encode("utf-8"))
        definition = definition_at(tree, source, byte_offset, header_only=header_only)
    existing = list(all_docstrings(tree, source))
    chosen = resolve_style(style, existing, project_docstrings)
    place = placement(text, source, definition, existing)
    code, signature = _code_and_signature(text, source, definition)
    return DocstringJob(
        text=text,
        source=source,
        tree=tree,
        definition=definition,
        style=chosen,
        place=place,
        pieces=layout(definition.structure, chosen, place.unit),
        code=code,
        signature=signature,
    )


def finish(
    job: DocstringJob, texts: dict[str, str], draft: DocstringDraft | None = None
) -> DocstringOutcome:
    """The checked edit that inserts the docstring with these slot texts."""
    literal = render(job.pieces, texts, indent=job.place.indent, quoting=job.place.quoting)
    edit = build_edit(job.text, job.source, job.definition, literal, job.place)
    name_node = job.definition.node.child_by_field_name("name") or job.definition.node
    new_text = check_edit(job.text, job.tree, edit, _char(job.source, name_node.start_byte))
    return DocstringOutcome(edit, new_text, literal, job.style, draft)


def generate(
    job: DocstringJob,
    model: Generate | None,
    *,
    budget: PromptBudget | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> DocstringOutcome:
    """Fill the job with the model's prose (a skeleton when ``model`` is None).

    ``budget`` is the model's (``runtime.prompt_budget``): the code the model reads is
    cut to it (:func:`~lsp_server.docstrings.generation.fit_code`). It counts through
    the model, so it is used here, off the event loop. Without one (stand-in models),
    the code goes whole.
    """
    if model is None:
        return finish(job, skeleton(job.structure, job.pieces, job.previous_summary))
    code = job.code
    if budget is not None:
        code = fit_code(
            code, job.signature, job.pieces, budget, indent=job.place.unit,
            quote=job.place.quoting.quote,
        )  # fmt: skip
    draft = generate_prose(
        job.structure,
        job.pieces,
        code,
        job.signature,
        model,
        indent=job.place.unit,
        quote=job.place.quoting.quote,
        previous_summary=job.previous_summary,
        progress=progress,
        cancelled=cancelled,
    )
    return finish(job, draft.texts, draft)


_SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".venv",
        "venv",
        "env",
        "node_modules",
        "__pycache__",
        "site-packages",
        "build",
        "dist",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
    }
)


def project_root(path: Path) -> Path:
    """The nearest folder above ``path`` that looks like a project root, else its folder."""
    folder = path.resolve().parent
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in (".git", "pyproject.toml", "setup.py")):
            return candidate
    return folder


def undocumented(tree: Tree, source: bytes) -> list[Definition]:
    """Every function, method and class without a docstring, in file order."""
    found = []
    for node in definitions(tree):
        if node.has_error:
            continue
        definition = describe(node, source)
        if definition.existing_docstring is None:
            found.append(definition)
    return sorted(found, key=lambda d: d.node.start_byte)


def project_docstrings(
    root: str | Path,
    *,
    max_files: int = 200,
    max_bytes: int = 512_000,
    readable: Callable[[Path], bool] = lambda _path: True,
) -> list[str]:
    """Docstrings from up to ``max_files`` Python files under ``root`` (for style
    detection); a file that ``readable`` refuses (never-read rules) is not opened."""
    found: list[str] = []
    seen = 0
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for filename in sorted(filenames):
            if not filename.endswith(".py"):
                continue
            path = Path(directory, filename)
            if not readable(path):
                continue
            try:
                if path.stat().st_size > max_bytes:
                    continue
                source = path.read_bytes()
            except OSError:
                continue
            found.extend(all_docstrings(syntax.parse(source), source))
            seen += 1
            if seen >= max_files:
                return found
    return found


__all__ = [
    "DocstringError",
    "DocstringJob",
    "DocstringOutcome",
    "EmptyFile",
    "InsertionFailed",
    "NoDefinition",
    "Style",
    "SyntaxErrorInCode",
    "TextEdit",
    "finish",
    "generate",
    "prepare",
    "project_docstrings",
    "project_root",
    "undocumented",
]
