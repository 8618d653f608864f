"""docstrings/command.py: what "Generate docstring" does without LSP (the action's title,
the job, the result moved onto a text edited while the model wrote, the answer)."""

from __future__ import annotations

import pytest

from lsp_server.docstrings import (
    DocstringError,
    DocstringJob,
    DocstringOutcome,
    NoDefinition,
    finish,
    generate,
    prepare,
)
from lsp_server.docstrings.command import action_title, answer, cancelled, follow_edits, job_at
from lsp_server.docstrings.generation import DocstringDraft
from lsp_server.docstrings.structure import definition_named, qualified_name
from lsp_server.parsing import syntax

SOURCE = "class Box:\n    def put(self, item: int) -> None:\n        self.item = item\n\n\ndef put(x):\n    return x\n"
PROSE = {"summary": "Store the item.", "param:item": "What to store."}


@pytest.mark.parametrize(
    ("needle", "expected"),
    [
        pytest.param("def put(self", "Generate docstring", id="method-header"),
        pytest.param("self.item =", None, id="body"),
        pytest.param("def put(x)", "Generate docstring", id="function-header"),
    ],
)
def test_action_title(needle: str, expected: str | None) -> None:
    source = SOURCE.encode()
    assert action_title(syntax.parse(source), source, source.index(needle.encode()) + 1) == expected


def test_action_title_regenerate_and_empty() -> None:
    text = 'def f():\n    """Old."""\n'
    assert action_title(syntax.parse(text.encode()), text.encode(), 2) == "Regenerate docstring"
    assert action_title(syntax.parse(b"  \n"), b"  \n", 0) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [pytest.param("Box.put", "Box.put", id="method"), pytest.param("put", "Box.put", id="first-put-is-the-method")],
)
def test_qualified_name_finds_the_definition_again(name: str, expected: str) -> None:
    source = SOURCE.encode()
    node = definition_named(syntax.parse(source), source, name).node
    assert qualified_name(node) == expected
    assert definition_named(syntax.parse(source), source, qualified_name(node)).node.start_byte == node.start_byte


def method_job() -> tuple[DocstringJob, DocstringOutcome]:
    text = SOURCE
    offset = text.index("def put(self") + 4
    job = job_at(text, syntax.parse(text.encode()), offset, style="google")
    draft = DocstringDraft(texts=dict(PROSE), origin={"summary": "model", "param:item": "placeholder"})
    return job, finish(job, dict(PROSE), draft)


def test_job_at_copies_the_tree() -> None:
    tree = syntax.parse(SOURCE.encode())
    job = job_at(SOURCE, tree, SOURCE.index("def put(x)"), style="auto")
    assert job.tree is not tree and job.structure.name == "put"


def test_follow_edits_places_the_same_prose_in_the_edited_text() -> None:
    job, outcome = method_job()
    edited = "import os\n\n\n" + SOURCE.replace("self.item = item", "self.item = item  # kept")
    moved = follow_edits(job, outcome, edited)
    assert moved.literal == outcome.literal
    assert moved.new_text.startswith("import os\n") and "Store the item." in moved.new_text
    assert moved.edit.start > outcome.edit.start


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        pytest.param(("item: int", "item: int, more: str"), NoDefinition, id="signature-changed"),
        pytest.param(("class Box:", "class Crate:"), DocstringError, id="definition-gone"),
    ],
)
def test_follow_edits_refuses_a_changed_definition(edit: tuple[str, str], error: type[Exception]) -> None:
    job, outcome = method_job()
    with pytest.raises(error):
        follow_edits(job, outcome, SOURCE.replace(*edit))


def test_follow_edits_of_a_skeleton_keeps_a_skeleton() -> None:
    job = prepare(SOURCE, name="put")
    outcome = generate(job, None)
    moved = follow_edits(job, outcome, "\n" + SOURCE)
    assert moved.literal == outcome.literal and moved.draft is None


def test_answer_counts_where_the_prose_came_from() -> None:
    job, outcome = method_job()
    found = answer(job, outcome, applied=True, failure_reason=None, note="n")
    assert found == {
        "applied": True, "failureReason": None, "name": "put", "style": "google",
        "docstring": outcome.literal, "fromModel": 1, "slots": 2, "placeholders": 1, "note": "n",
    }  # fmt: skip
    assert cancelled(job, "why") == {"applied": False, "cancelled": True, "reason": "why", "name": "put"}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param("m.py", ("m.py", None), id="file"),
        pytest.param("m.py:area", ("m.py", "area"), id="name"),
        pytest.param("m.py:3", ("m.py", "3"), id="line"),
        pytest.param("m.py:3:9", ("m.py", "3"), id="line-and-column"),
        pytest.param("m.py:Shape.area", ("m.py", "Shape.area"), id="method"),
    ],
)
def test_docstring_targets(tmp_path, monkeypatch, target: str, expected: tuple[str, str | None]) -> None:  # type: ignore[no-untyped-def]
    from lsp_server.cli.docstring import split_target

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text("class Shape:\n    def area(self):\n        return 0\n")
    path, name = split_target(target)
    assert (str(path), name) == expected


def test_docstring_at_file_line_column_documents_the_definition_there(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from lsp_server.cli import main

    source = tmp_path / "m.py"
    source.write_text("def first(a):\n    return a\n\n\ndef second(b, c):\n    return b + c\n")
    assert main(["docstring", f"{source}:5:5", "--skeleton"]) == 0
    diff = capsys.readouterr().out
    assert "b:" in diff and "c:" in diff and "a:" not in diff
