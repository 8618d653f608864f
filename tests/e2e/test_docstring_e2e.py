"""Generate docstring end to end: ``ghostpilot serve`` with the real embedded model,
driven over stdio by pytest-lsp as an editor would drive it."""

from __future__ import annotations

import ast
import asyncio
import shutil
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from lsp_server.parsing.positions import LineIndex, offset_at

pytestmark = pytest.mark.e2e

_SCRIPT = Path(sys.executable).with_name("ghostpilot")
SERVER = (
    [str(_SCRIPT), "serve"]
    if _SCRIPT.exists()
    else [shutil.which("ghostpilot") or "ghostpilot", "serve"]
)

SOURCE = """\
import re


@functools.lru_cache
def split_words(
    text: str,
    limit: int = 10,
    *extra: str,
    lower: bool = False,
) -> list[str]:
    words = re.findall(r"\\w+", text)
    if limit < 0:
        raise ValueError("limit must not be negative")
    if lower:
        words = [word.lower() for word in words]
    return (words + list(extra))[:limit]


def log(message):
    print(message)
"""


class Editor:
    """The client's side: open buffers and the edits the server asked it to apply."""

    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.texts: dict[str, str] = {}
        self.versions: dict[str, int] = {}
        self.applied: list[types.ApplyWorkspaceEditParams] = []

    def open(self, name: str, text: str) -> str:
        uri = f"file:///tmp/ghostpilot-e2e/{name}"
        self.texts[uri], self.versions[uri] = text, 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=text
                )
            )
        )
        return uri

    def apply(self, params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        self.applied.append(params)
        for change in params.edit.document_changes or []:
            assert isinstance(change, types.TextDocumentEdit)
            uri = change.text_document.uri
            if change.text_document.version != self.versions[uri]:
                return types.ApplyWorkspaceEditResult(applied=False, failure_reason="stale version")
            text = self.texts[uri]
            for edit in sorted(
                change.edits,
                key=lambda e: (e.range.start.line, e.range.start.character),
                reverse=True,
            ):
                index = LineIndex.build(text)
                start = offset_at(
                    text, index, edit.range.start.line, edit.range.start.character, strict=True
                )
                end = offset_at(
                    text, index, edit.range.end.line, edit.range.end.character, strict=True
                )
                text = text[:start] + edit.new_text + text[end:]
            self.versions[uri] += 1
            self.texts[uri] = text
            self.client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(
                        uri=uri, version=self.versions[uri]
                    ),
                    content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
                )
            )
        return types.ApplyWorkspaceEditResult(applied=True)


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient):
    @lsp_client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register_capability(params: types.RegistrationParams) -> None:
        """VS Code accepts dynamic registrations (file watchers); so does this client."""

    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            initialization_options={"docstringStyle": "auto"},
        )
    )
    yield
    await lsp_client.shutdown_session()


@pytest.fixture
def editor(client: LanguageClient) -> Editor:
    state = Editor(client)

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        return state.apply(params)

    return state


async def _actions(editor: Editor, uri: str, line: int, character: int) -> list[types.CodeAction]:
    position = types.Position(line=line, character=character)
    result = await editor.client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(start=position, end=position),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    return [_as_code_action(a) for a in result or []]


def _as_code_action(action: types.CodeAction | types.Command) -> types.CodeAction:
    """lsprotocol's client-side converter reads any action with a ``command`` key as a
    Command (its hook does not check the key's type), stringifying the nested command;
    undo that so the test sees what the server sent."""
    if isinstance(action, types.CodeAction):
        return action
    nested = ast.literal_eval(action.command)
    return types.CodeAction(
        title=action.title,
        command=types.Command(nested["title"], nested["command"], arguments=nested["arguments"]),
    )


async def _run(editor: Editor, command: types.Command) -> dict:
    return await editor.client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=command.command, arguments=command.arguments)
    )


def _function(text: str, name: str) -> ast.FunctionDef:
    return next(
        n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.FunctionDef) and n.name == name
    )


async def test_generate_docstring_code_action(editor: Editor) -> None:
    uri = editor.open("words.py", SOURCE)
    line = SOURCE.splitlines().index("def split_words(")
    actions = await _actions(editor, uri, line, 6)
    assert [a.title for a in actions] == ["Generate docstring"]
    assert actions[0].command is not None

    result = await _run(editor, actions[0].command)
    assert result["applied"] is True, result
    text = editor.texts[uri]

    # The buffer still parses; only the docstring was added.
    function = _function(text, "split_words")
    docstring = ast.get_docstring(function)
    assert docstring is not None
    assert text.replace("    " + result["docstring"] + "\n", "", 1) == SOURCE
    print(result["docstring"])
    # Google style (no other docstrings to learn from): every parameter, right types.
    lines = docstring.splitlines()
    summary = lines[0]
    assert summary and not summary.startswith("TODO")
    for entry in (
        "text (str):",
        "limit (int, optional):",
        "*extra (str):",
        "lower (bool, optional):",
    ):
        matching = [item for item in lines if item.strip().startswith(entry)]
        assert len(matching) == 1, (entry, docstring)
        assert matching[0].strip()[len(entry) :].strip(), (entry, docstring)
    assert "Returns:" in lines and "Raises:" in lines
    assert any(item.strip().startswith("ValueError:") for item in lines)
    args = lines[lines.index("Args:") + 1 : lines.index("Returns:")]
    assert (
        len([item for item in args if item.startswith("    ") and not item.startswith("        ")])
        == 4
    )
    # The model wrote the prose (not only placeholders).
    assert result["fromModel"] >= 3, result

    # Progress was reported from begin to end.
    kinds = [
        getattr(value, "kind", None)
        for values in editor.client.progress_reports.values()
        for value in values
    ]
    assert "begin" in kinds and "report" in kinds and "end" in kinds

    # Now the definition has a docstring: the action offers to regenerate it.
    line = text.splitlines().index("def split_words(")
    actions = await _actions(editor, uri, line, 6)
    assert [a.title for a in actions] == ["Regenerate docstring"]


async def test_function_returning_nothing_gets_no_returns(editor: Editor) -> None:
    uri = editor.open("log.py", SOURCE)
    line = SOURCE.splitlines().index("def log(message):")
    [action] = await _actions(editor, uri, line, 4)
    result = await _run(editor, action.command)
    docstring = ast.get_docstring(_function(editor.texts[uri], "log"))
    assert docstring is not None and "Returns" not in docstring
    assert "message:" in docstring and result["applied"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param("import os\n\nx = 1\n", 2, "not on a function", id="not-on-a-function"),
        pytest.param("def f(a):\n    return a +\n", 0, "syntax error", id="syntax-error"),
        pytest.param("", 0, "empty", id="empty-file"),
    ],
)
async def test_bad_input_gets_a_clear_error(
    editor: Editor, text: str, line: int, message: str
) -> None:
    uri = editor.open("bad.py", text)
    assert await _actions(editor, uri, line, 0) == []
    with pytest.raises(Exception, match=message):
        await editor.client.workspace_execute_command_async(
            types.ExecuteCommandParams(
                command="ghostpilot.generateDocstring",
                arguments=[uri, {"line": line, "character": 0}],
            )
        )
    assert editor.applied == []
    # The server is still serving.
    good = editor.open("good.py", "def f(a):\n    return a\n")
    assert [a.title for a in await _actions(editor, good, 0, 4)] == ["Generate docstring"]


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(["file:///not/open.py", {"line": 0, "character": 0}], id="unknown-uri"),
        pytest.param(["URI", {"line": 99, "character": 0}], id="position-past-the-end"),
        pytest.param(["URI"], id="missing-position"),
    ],
)
async def test_bad_arguments(editor: Editor, arguments: list) -> None:
    uri = editor.open("args.py", "def f(a):\n    return a\n")
    arguments = [uri if a == "URI" else a for a in arguments]
    with pytest.raises(Exception, match="not open|past the end|two arguments"):
        await editor.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="ghostpilot.generateDocstring", arguments=arguments)
        )


async def test_cancel_from_the_progress_bar(editor: Editor) -> None:
    body = "".join(f"    v{i} = a * {i}\n" for i in range(40))
    uri = editor.open("cancel.py", f"def f(a, b, c, d, e, f, g, h):\n{body}    return a\n")
    before = set(editor.client.progress_reports)
    task = asyncio.ensure_future(
        editor.client.workspace_execute_command_async(
            types.ExecuteCommandParams(
                command="ghostpilot.generateDocstring", arguments=[uri, {"line": 0, "character": 4}]
            )
        )
    )

    def ours() -> list:
        return [
            t
            for t in set(editor.client.progress_reports) - before
            if str(t).startswith("ghostpilot-docstring") and editor.client.progress_reports[t]
        ]

    for _ in range(200):
        if ours():
            break
        await asyncio.sleep(0.05)
    [token] = ours()
    begin = editor.client.progress_reports[token][0]
    assert begin.kind == "begin" and begin.cancellable
    editor.client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
    result = await task
    assert result["cancelled"] is True and result["applied"] is False
    assert "progress bar" in result["reason"]
    assert editor.applied == []
    assert editor.client.progress_reports[token][-1].kind == "end"
