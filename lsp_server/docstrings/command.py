"""What the editor's "Generate docstring" does, without LSP: the action's title at a
cursor, the job, the finished docstring moved onto a text that was edited while the
model wrote, and the command's answer.

``features/docstring.py`` turns these into LSP messages; the model calls, progress and
the applied edit stay there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tree_sitter import Tree

from lsp_server.docstrings import (
    DocstringError,
    DocstringJob,
    DocstringOutcome,
    NoDefinition,
    finish,
    prepare,
)
from lsp_server.docstrings.generation import skeleton
from lsp_server.docstrings.structure import definition_at, qualified_name
from lsp_server.docstrings.styles import slot_keys
from lsp_server.parsing.region import SyntaxTree

GENERATE = "Generate docstring"
REGENERATE = "Regenerate docstring"


def action_title(tree: SyntaxTree, source: bytes, byte_offset: int) -> str | None:
    """"Generate docstring" (or "Regenerate docstring") when ``byte_offset`` is on a
    definition's header or its docstring; None elsewhere."""
    try:
        definition = definition_at(tree, source, byte_offset, header_only=True)
    except DocstringError:
        return None
    return REGENERATE if definition.existing_docstring else GENERATE


def job_at(
    text: str, tree: Tree, offset: int, *, style: str, project_docstrings: Iterable[str] = ()
) -> DocstringJob:
    """The job for the definition around code-point ``offset``; a private copy of the
    tree, so that edits arriving while the model writes leave it alone."""
    return prepare(
        text, tree=tree.copy(), offset=offset, style=style, project_docstrings=project_docstrings
    )


def follow_edits(job: DocstringJob, outcome: DocstringOutcome, text: str) -> DocstringOutcome:
    """``outcome`` placed in ``text``, a newer version of the job's document: the
    definition found again by its qualified name, with the same prose (or the same
    skeleton). Raises :class:`DocstringError` when it is gone or its signature changed."""
    moved = prepare(text, name=qualified_name(job.definition.node), style=job.style.value)
    texts = (
        dict(outcome.draft.texts)
        if outcome.draft
        else skeleton(moved.structure, moved.pieces, moved.previous_summary)
    )
    if set(texts) != set(slot_keys(moved.pieces)):
        raise NoDefinition("its signature changed")
    return finish(moved, texts, outcome.draft)


def answer(
    job: DocstringJob,
    outcome: DocstringOutcome,
    *,
    applied: bool,
    failure_reason: str | None,
    note: str = "",
) -> dict[str, Any]:
    """The command's result: what was written and where the prose came from."""
    draft = outcome.draft
    return {
        "applied": applied,
        "failureReason": failure_reason,
        "name": job.structure.name,
        "style": outcome.style.value,
        "docstring": outcome.literal,
        "fromModel": draft.model_slots if draft else 0,
        "slots": len(draft.origin) if draft else 0,
        "placeholders": sum(1 for o in draft.origin.values() if o == "placeholder") if draft else 0,
        "note": note,
    }


def cancelled(job: DocstringJob, reason: str) -> dict[str, Any]:
    return {"applied": False, "cancelled": True, "reason": reason, "name": job.structure.name}
