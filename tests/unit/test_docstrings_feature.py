"""The code action's offer and the command's argument checks (no server, no model)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from lsp_server.features.docstring import COMMAND, _arguments, code_actions
from lsp_server.parsing.document import DocumentStore

SOURCE = '@dec\ndef f(a):\n    x = 1\n    return a\n\n\ndef g():\n    """Doc."""\n'
URI = "file:///t.py"


def _actions(
    line: int,
    character: int,
    only: list[str] | None = None,
    text: str = SOURCE,
    language: str = "python",
) -> list[str]:
    documents = DocumentStore()
    documents.open(URI, text, 1, language)
    position = types.Position(line=line, character=character)
    params = types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=URI),
        range=types.Range(start=position, end=position),
        context=types.CodeActionContext(diagnostics=[], only=only),
    )
    actions = code_actions(SimpleNamespace(documents=documents), params) or []
    for action in actions:
        assert action.command is not None and action.command.command == COMMAND
        assert action.command.arguments == [URI, {"line": line, "character": character}]
    return [action.title for action in actions]


@pytest.mark.parametrize(
    ("line", "character", "only", "expected"),
    [
        pytest.param(1, 4, None, ["Generate docstring"], id="on-def"),
        pytest.param(0, 1, None, ["Generate docstring"], id="on-decorator"),
        pytest.param(2, 4, None, [], id="in-body-nothing"),
        pytest.param(6, 4, None, ["Regenerate docstring"], id="has-docstring"),
        pytest.param(7, 6, None, ["Regenerate docstring"], id="on-the-docstring"),
        pytest.param(1, 4, ["refactor"], ["Generate docstring"], id="only-refactor"),
        pytest.param(1, 4, ["quickfix"], [], id="only-quickfix"),
        pytest.param(99, 0, None, [], id="past-the-end-is-quiet"),
    ],
)
def test_code_actions(
    line: int, character: int, only: list[str] | None, expected: list[str]
) -> None:
    assert _actions(line, character, only) == expected


@pytest.mark.parametrize(
    ("text", "language"),
    [
        pytest.param("", "python", id="empty"),
        pytest.param("def f(a):\n    return a\n", "plaintext", id="not-python"),
    ],
)
def test_no_actions(text: str, language: str) -> None:
    assert _actions(0, 0, text=text, language=language) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param([URI, {"line": 1, "character": 2}], (URI, 1, 2), id="uri-and-position"),
        pytest.param([URI, [3, 4]], (URI, 3, 4), id="position-as-pair"),
        pytest.param(
            [{"uri": URI, "position": {"line": 0, "character": 0}}], (URI, 0, 0), id="one-object"
        ),
    ],
)
def test_arguments(args: list, expected: tuple) -> None:
    uri, position = _arguments(args)
    assert (uri, position.line, position.character) == expected


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="none"),
        pytest.param([URI], id="no-position"),
        pytest.param([URI, {"line": "1", "character": 0}], id="string-line"),
        pytest.param([URI, {"row": 1}], id="wrong-keys"),
        pytest.param([1, {"line": 1, "character": 0}], id="uri-not-a-string"),
    ],
)
def test_bad_arguments(args: list) -> None:
    with pytest.raises(JsonRpcInvalidParams, match="generateDocstring|position|integers"):
        _arguments(args)
