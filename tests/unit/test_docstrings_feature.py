"""The docstring feature on a real server object, without a model: the code action's
offer, the command's argument checks, the never-read rules (the buffer and the project
files read for the style), and the command's skeleton when no model is loaded.
Messages to the client are caught where the server would send them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from lsp_server.backends.base import ModelUnavailable
from lsp_server.config import merge
from lsp_server.features.docstring import (
    COMMAND,
    arguments,
    code_actions,
    percentage,
)
from lsp_server.policy import path_reader
from lsp_server.server import GhostpilotServer, create_server

SOURCE = '@dec\ndef f(a):\n    x = 1\n    return a\n\n\ndef g():\n    """Doc."""\n'
URI = "file:///t.py"
NUMPY_DOC = '"""Add.\n\n    Parameters\n    ----------\n    a : int\n        A number.\n    """'
NUMPY_MODULE = f"def add(a):\n    {NUMPY_DOC}\n    return a\n"


class Caught:
    """What the server would send: applied edits (answered as applied)."""

    def __init__(self, server: GhostpilotServer) -> None:
        self.edits: list[types.ApplyWorkspaceEditParams] = []

        async def apply(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
            self.edits.append(params)
            return types.ApplyWorkspaceEditResult(applied=True)

        server.workspace_apply_edit_async = apply  # type: ignore[method-assign]


def initialize(server: GhostpilotServer, root: Path | None = None) -> None:
    """pygls's own initialize step (client capabilities, ``server.workspace``)."""
    params = types.InitializeParams(capabilities=types.ClientCapabilities(), root_uri=root.as_uri() if root else None)
    for _handler in server.protocol.lsp_initialize(params):
        pass


@pytest.fixture
def server() -> GhostpilotServer:
    server = create_server()
    initialize(server)
    return server


def _actions(
    server: GhostpilotServer,
    line: int,
    character: int,
    only: list[str] | None = None,
    text: str = SOURCE,
    language: str = "python",
    uri: str = URI,
) -> list[str]:
    server.documents.open(uri, text, 1, language)
    position = types.Position(line=line, character=character)
    params = types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(start=position, end=position),
        context=types.CodeActionContext(diagnostics=[], only=only),
    )
    actions = code_actions(server, params) or []
    for action in actions:
        assert action.command is not None and action.command.command == COMMAND
        assert action.command.arguments == [uri, {"line": line, "character": character}]
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
    server: GhostpilotServer, line: int, character: int, only: list[str] | None, expected: list[str]
) -> None:
    assert _actions(server, line, character, only) == expected


@pytest.mark.parametrize(
    ("text", "language", "uri"),
    [
        pytest.param("", "python", URI, id="empty"),
        pytest.param("def f(a):\n    return a\n", "plaintext", URI, id="not-python"),
        pytest.param("def f(a):\n    return a\n", "python", "file:///w/.env", id="never-read-env"),
        pytest.param("def f(a):\n    return a\n", "python", "untitled:id.key", id="never-read-key"),
    ],
)
def test_no_actions(server: GhostpilotServer, text: str, language: str, uri: str) -> None:
    assert _actions(server, 0, 0, text=text, language=language, uri=uri) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param([URI, {"line": 1, "character": 2}], (URI, 1, 2), id="uri-and-position"),
        pytest.param([URI, [3, 4]], (URI, 3, 4), id="position-as-pair"),
        pytest.param([[URI, {"line": 1, "character": 2}]], (URI, 1, 2), id="one-list"),
        pytest.param(
            [{"uri": URI, "position": {"line": 0, "character": 0}}], (URI, 0, 0), id="one-object"
        ),
    ],
)
def test_arguments(args: list[Any], expected: tuple[str, int, int]) -> None:
    uri, position = arguments(args)
    assert (uri, position.line, position.character) == expected


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="none"),
        pytest.param([URI], id="no-position"),
        pytest.param([URI, {"line": "1", "character": 0}], id="string-line"),
        pytest.param([URI, {"row": 1}], id="wrong-keys"),
        pytest.param([1, {"line": 1, "character": 0}], id="uri-not-a-string"),
        # These raised ValueError from lsprotocol's Position: an internal error, not InvalidParams.
        pytest.param([URI, {"line": -3, "character": 0}], id="negative-line"),
        pytest.param([URI, {"line": 0, "character": 2**40}], id="character-2^40"),
        pytest.param([URI, [2**31, 0]], id="line-2^31"),
        pytest.param([URI, {"line": True, "character": False}], id="booleans"),
    ],
)
def test_bad_arguments(args: list[Any]) -> None:
    with pytest.raises(JsonRpcInvalidParams, match="generateDocstring"):
        arguments(args)


def test_a_huge_argument_is_quoted_short() -> None:
    with pytest.raises(JsonRpcInvalidParams) as caught:
        arguments([URI, "x" * 1_000_000])
    message = str(caught.value)
    assert len(message) < 400 and "1,000,002 characters" in message, message[:400]


@pytest.mark.parametrize(
    ("done", "total", "expected"),
    [pytest.param(0, 4, 0, id="start"), pytest.param(1, 3, 33, id="third"), pytest.param(0, 0, 100, id="nothing-to-do")],
)
def test_percentage(done: int, total: int, expected: int) -> None:
    assert percentage(done, total) == expected


# -- the command -----------------------------------------------------------------------------


async def run_command(server: GhostpilotServer, uri: str, line: int, character: int) -> dict[str, Any]:
    handler = server.protocol.fm.commands[COMMAND]  # as pygls calls it, with the server bound
    result: dict[str, Any] = await handler(uri, {"line": line, "character": character})
    return result


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("file:///w/.env", id="dot-env"),
        pytest.param("file:///w/.env.local", id="dot-env-local"),
        pytest.param("untitled:server.pem", id="pem"),
    ],
)
async def test_never_read_buffer_is_refused_before_the_model_sees_it(
    server: GhostpilotServer, uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: "Generate docstring" read a ``.env``-named Python buffer into the
    model's prompt; never-read rules were only checked for completions."""
    asked: list[Any] = []

    def submit(run: Any, key: str | None = None) -> Any:
        asked.append(key)
        raise ModelUnavailable("stand-in: no model")

    monkeypatch.setattr(server.worker, "submit", submit)
    Caught(server)
    server.documents.open(uri, "API_KEY = 'x'\n\ndef f(a):\n    return a\n", 1, "python")
    with pytest.raises(JsonRpcInvalidParams, match="never reads .*neverReadGlobs"):
        await run_command(server, uri, 2, 4)
    assert asked == []


def _project(tmp_path: Path, ignored: bool) -> str:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (tmp_path / ".gitignore").write_text("vendored/\n")
    folder = tmp_path / ("vendored" if ignored else "lib")
    folder.mkdir()
    (folder / "numpy_style.py").write_text(NUMPY_MODULE)
    main = tmp_path / "main.py"
    main.write_text("def f(a):\n    return a\n")
    return main.as_uri()


@pytest.mark.parametrize(
    ("ignored", "style"),
    [pytest.param(False, "numpy", id="read-for-the-style"), pytest.param(True, "google", id="gitignored-not-read")],
)
async def test_project_style_reads_only_files_the_rules_allow(
    tmp_path: Path, ignored: bool, style: str
) -> None:
    """Regression: the project's files were read for the docstring style without the
    never-read rules (here .gitignore). Without a model the command inserts a skeleton
    in the style it found."""
    server = create_server()
    initialize(server, tmp_path)
    caught = Caught(server)
    uri = _project(tmp_path, ignored)
    server.documents.open(uri, "def f(a):\n    return a\n", 1, "python")
    result = await run_command(server, uri, 0, 4)
    assert (result["applied"], result["style"], result["name"]) == (True, style, "f")
    assert result["note"].startswith("model unavailable")
    [applied] = caught.edits
    assert applied.label == "Generate docstring"


def test_path_reader_follows_the_settings(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("vendored/\n")
    settings, problems = merge(create_server().settings, {"neverReadGlobs": ["secret_*.py"]})
    assert problems == []
    readable = path_reader(settings)
    assert readable(tmp_path / "lib" / "a.py")
    assert not readable(tmp_path / "lib" / "secret_keys.py")
    assert not readable(tmp_path / "vendored" / "a.py")
    relaxed, _ = merge(settings, {"respectGitignore": False})
    assert path_reader(relaxed)(tmp_path / "vendored" / "a.py")


async def test_a_function_removed_while_its_docstring_was_written_is_content_modified(
    server: GhostpilotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer is LSP's ContentModified (the client may ask again), not an internal
    error (a hostile-traffic fuzz deleted the function mid-generation)."""
    from pygls.exceptions import JsonRpcContentModified

    from lsp_server import docstrings
    from lsp_server.parsing.document import RangeEdit

    real_generate = docstrings.generate

    def generate(job: Any, run: Any, **kwargs: Any) -> Any:
        # The user deletes f while the model writes (no model here: the skeleton).
        server.documents.change(URI, 2, [RangeEdit(((0, 0), (4, 0)), "")])
        return real_generate(job, None)

    monkeypatch.setattr(docstrings, "generate", generate)
    Caught(server)
    server.documents.open(URI, SOURCE, 1, "python")
    with pytest.raises(JsonRpcContentModified, match="changed while the docstring"):
        await run_command(server, URI, 1, 4)
