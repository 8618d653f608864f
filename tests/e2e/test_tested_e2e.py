"""Tested suggestions end to end: ``ghostpilot serve`` with the real embedded model,
driven over stdio by pytest-lsp. Candidates are drawn in one batch, run in the sandbox
against the function's examples and the workspace tests that reference it, ranked."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from lsp_server.features.tested import ACTION_TITLE, COMMAND, FORCED_ENV

pytestmark = pytest.mark.e2e

_SCRIPT = Path(sys.executable).with_name("ghostpilot")
SERVER = [str(_SCRIPT), "serve"] if _SCRIPT.exists() else [shutil.which("ghostpilot") or "ghostpilot", "serve"]
WORKSPACE = Path("/tmp/ghostpilot-e2e-tested")
LOOPS = "    while True:\n        pass\n"
FORKS = "    import os\n    while True:\n        os.fork()\n"
OPTIONS = {"testedCandidates": 4, "testedMaxTokens": 48, "testedTimeoutS": 4.0}

WITH_EXAMPLES = '''def add(a, b):
    """Return the sum of a and b.

    >>> add(1, 2)
    3
    >>> add(-1, 1)
    0
    >>> add(10, 5)
    15
    """
'''

# For the ranked-candidates test: a body the model writes in several ways (the adder's
# eight samples can all be ``return a + b``, one candidate once duplicates are merged:
# the candidates' seeds are random per request, as in the editor). Same layout as
# WITH_EXAMPLES: three examples, the body on line 10.
VARIED = '''def count_vowels(text):
    """Return how many vowels (a, e, i, o, u) are in text.

    >>> count_vowels("hello")
    2
    >>> count_vowels("sky")
    0
    >>> count_vowels("AEIOU")
    5
    """
'''

ONLY_TESTS = '''def scale(value):
    """Scale a value."""
'''

IMPOSSIBLE_TEST = '''from calc import scale


def test_scale_is_a_sentinel():
    assert scale(3) == "no candidate returns this 8f2c"
'''


def _workspace() -> Path:
    shutil.rmtree(WORKSPACE, ignore_errors=True)
    (WORKSPACE / "tests").mkdir(parents=True)
    (WORKSPACE / "calc.py").write_text(ONLY_TESTS)
    (WORKSPACE / "tests" / "test_calc.py").write_text(IMPOSSIBLE_TEST)
    return WORKSPACE


def _server(forced: list[str] | None = None) -> ClientServerConfig:
    env = dict(os.environ)
    if forced:
        env[FORCED_ENV] = json.dumps(forced)
    return ClientServerConfig(server_command=SERVER, server_env=env)


class Recorder:
    """What the server showed: $/progress messages (pytest-lsp keeps the reports) and
    window/showMessage."""

    def __init__(self, client: LanguageClient) -> None:
        self.client = client

    @property
    def progress(self) -> list[str]:
        return [str(getattr(r, "message", "")) for reports in self.client.progress_reports.values()
                for r in reports if getattr(r, "message", None)]

    @property
    def messages(self) -> list[str]:
        return [m.message for m in self.client.messages]


async def _start(client: LanguageClient) -> Recorder:
    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register_capability(params: types.RegistrationParams) -> None:
        """VS Code accepts dynamic registrations (file watchers); so does this client."""

    recorder = Recorder(client)
    root = _workspace()
    await client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"),
        root_uri=root.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="tested")],
        initialization_options=OPTIONS,
    ))  # fmt: skip
    return recorder


def _open(client: LanguageClient, name: str, text: str) -> str:
    uri = (WORKSPACE / name).as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    return uri


def _inline(uri: str, line: int, character: int) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
    )


async def _code_actions(client: LanguageClient, uri: str, line: int) -> list[str]:
    position = types.Position(line=line, character=4)
    found = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=types.Range(start=position, end=position),
        context=types.CodeActionContext(diagnostics=[])))  # fmt: skip
    return [a.title for a in found or []]


@pytest_lsp.fixture(config=_server())
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    lsp_client.recorder = await _start(lsp_client)  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()



async def test_a_function_with_examples_gets_ranked_candidates_with_pass_counts(client: LanguageClient) -> None:
    recorder: Recorder = client.recorder  # type: ignore[attr-defined]
    uri = _open(client, "vowels.py", VARIED)
    assert ACTION_TITLE in await _code_actions(client, uri, 0)
    for _ in range(3):
        # The seeds are random per request: now and then (once in a CI run of session 12)
        # all four draws merge into one candidate. Asking again is what the user does;
        # what is tested here is the ranking of several.
        result = await asyncio.wait_for(client.text_document_inline_completion_async(_inline(uri, 10, 0)), 600)
        assert result is not None
        items = result.items if isinstance(result, types.InlineCompletionList) else result
        if len(items) >= 2:
            break
    assert len(items) >= 2, items
    titles = [item.command.title for item in items if item.command]
    assert len(titles) == len(items)
    counts = []
    for position, title in enumerate(titles, 1):
        match = re.fullmatch(rf"candidate {position}/{len(items)} \u00b7 passes (\d)/3 examples.*", title)
        assert match, title
        counts.append(int(match.group(1)))
    assert counts == sorted(counts, reverse=True)  # best first
    command = items[0].command
    assert command is not None and command.arguments is not None
    details: Any = command.arguments[1]
    assert details["evidence"]["examplesTotal"] == 3
    assert any(re.fullmatch(r"testing \d candidates: \d pass.*", m) for m in recorder.progress), recorder.progress



async def test_tests_that_fail_for_every_candidate_get_an_honest_zero(client: LanguageClient) -> None:
    recorder: Recorder = client.recorder  # type: ignore[attr-defined]
    uri = _open(client, "calc.py", ONLY_TESTS)
    deadline = time.monotonic() + 60
    while ACTION_TITLE not in await _code_actions(client, uri, 0):  # the test index is scanned
        assert time.monotonic() < deadline, "no tested action for a function a test references"
        await asyncio.sleep(0.5)
    answer: Any = await asyncio.wait_for(client.workspace_execute_command_async(types.ExecuteCommandParams(
        command=COMMAND, arguments=[uri, {"line": 1, "character": 4}])), 600)  # fmt: skip
    assert answer["passing"] == 0
    assert answer["summary"].startswith(f"0 of {answer['distinct']} pass 1 test"), answer["summary"]
    assert answer["candidates"], answer
    for candidate in answer["candidates"]:
        assert candidate["evidence"]["testsPassed"] == 0
        assert candidate["evidence"]["testsTotal"] == 1
        assert "passes 0/1 tests" in candidate["title"]
    assert any(m.startswith("Ghostpilot: 0 of") for m in recorder.messages), recorder.messages
    titles = await _code_actions(client, uri, 1)
    assert any(t.startswith("Insert candidate 1: passes 0/1 tests") for t in titles), titles



def _drawing(client: LanguageClient) -> Any:
    """The tested progress's token once its first report came: a candidate was drawn and
    run, so the drawing job is on the model and the progress takes a cancel. Act at once
    then: the whole drawing and testing took 1.4-2.6 s here, and a fixed 2 s wait once
    outlasted it in CI; acting on the progress's creation was too early once in CI (the
    drawing job was not submitted yet, so the newer request was the one superseded)."""
    return next((token for token, reports in client.progress_reports.items()
                 if str(token).startswith("ghostpilot-tested")
                 and any(isinstance(report, types.WorkDoneProgressReport) for report in reports)), None)


async def test_cancelling_stops_the_sampling(client: LanguageClient) -> None:
    uri = _open(client, "adder2.py", WITH_EXAMPLES)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"ghostpilot": {**OPTIONS, "testedCandidates": 16, "testedMaxTokens": 1024}}))  # fmt: skip
    request = asyncio.ensure_future(client.workspace_execute_command_async(types.ExecuteCommandParams(
        command=COMMAND, arguments=[uri, {"line": 10, "character": 0}])))  # fmt: skip
    deadline = time.monotonic() + 120
    token = None
    while token is None:
        assert time.monotonic() < deadline and not request.done(), "no tested progress"
        token = _drawing(client)
        await asyncio.sleep(0.01)
    assert not request.done(), "the tested request ended before it could be cancelled"  # see _drawing
    cancelled_at = time.monotonic()
    client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
    answer: Any = await asyncio.wait_for(request, 120)
    stopped_after = time.monotonic() - cancelled_at
    assert answer["cancelled"] is True and answer["candidates"] == []
    assert getattr(client.progress_reports[token][-1], "kind", None) == "end"
    # Cancelled, not finished: no candidates came back (the drawing stops between tokens).
    assert stopped_after < 60, stopped_after


async def test_a_newer_request_for_the_document_supersedes_the_sampling(client: LanguageClient) -> None:
    uri = _open(client, "adder4.py", WITH_EXAMPLES)
    # 32 candidates, the most: the drawing lasts until the longest one ends, long after
    # the first (it is the drawing, not the testing, that a newer request supersedes).
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"ghostpilot": {**OPTIONS, "testedCandidates": 32, "testedMaxTokens": 1024}}))  # fmt: skip
    request = asyncio.ensure_future(client.workspace_execute_command_async(types.ExecuteCommandParams(
        command=COMMAND, arguments=[uri, {"line": 10, "character": 0}])))  # fmt: skip
    deadline = time.monotonic() + 120

    while _drawing(client) is None:
        assert time.monotonic() < deadline and not request.done(), "no tested progress"
        await asyncio.sleep(0.01)
    # At once: the whole drawing and testing took 1.4-2.6 s here (see _drawing).
    assert not request.done(), "the tested request ended before it could be superseded"
    superseded_at = time.monotonic()
    # The user types on: an automatic completion for the same document.
    plain = asyncio.ensure_future(client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=0, character=4),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic))))
    answer: Any = await asyncio.wait_for(request, 120)
    assert answer["cancelled"] is True, answer
    assert time.monotonic() - superseded_at < 60
    await asyncio.wait_for(plain, 300)  # and the newer request is served


@pytest_lsp.fixture(config=_server([LOOPS, FORKS]))
async def forced_client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    lsp_client.recorder = await _start(lsp_client)  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()



async def test_a_candidate_that_loops_or_forks_is_killed_and_the_others_still_rank(
    forced_client: LanguageClient,
) -> None:
    uri = _open(forced_client, "adder3.py", WITH_EXAMPLES)
    answer: Any = await asyncio.wait_for(forced_client.workspace_execute_command_async(types.ExecuteCommandParams(
        command=COMMAND, arguments=[uri, {"line": 0, "character": 4}])), 600)  # fmt: skip
    texts = [c["text"] for c in answer["candidates"]]
    assert LOOPS in texts and FORKS in texts, texts
    looped = answer["candidates"][texts.index(LOOPS)]
    assert looped["evidence"]["status"] == "timeout" and "time limit" in looped["title"], looped
    forked = answer["candidates"][texts.index(FORKS)]
    assert forked["evidence"]["examplesPassed"] == 0
    drawn = [c for c in answer["candidates"] if c["text"] not in (LOOPS, FORKS)]
    assert drawn, "the model's own candidates still ranked"
    assert set(texts[-2:]) == {LOOPS, FORKS}  # killed: they pass nothing and rank last
