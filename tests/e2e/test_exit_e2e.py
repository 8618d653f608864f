"""End-to-end: the real server, with the real embedded model, ends cleanly while the model
is generating.

Before the model worker was stopped and the model closed at the end of the transport,
``exit`` (or the client going away) while a suggestion was being written killed the
process with SIGSEGV: the interpreter exited with the worker thread still inside
llama.cpp. Found by a hostile-traffic fuzz of the server.
"""

from __future__ import annotations

import time

import pytest

from lsp_server.evaluation.lsp_client import LspClient
from tests.conftest import SERVER_COMMAND

pytestmark = [pytest.mark.e2e]

URI = "file:///w/table.py"
# The model writes on ("4: 'four'", ...) until maxTokens: 256 tokens, over 5 s here.
TEXT = 'def table():\n    return {\n        1: "one",\n        2: "two",\n        3: "three",\n        '


def generating_client(tmp_path) -> LspClient:  # type: ignore[no-untyped-def]
    """A server writing a long suggestion: the request is in flight when this returns."""
    client = LspClient(SERVER_COMMAND, settings={"timeBudgetMs": 8000, "maxTokens": 256},
                       stderr_path=str(tmp_path / "server.err"))
    client.initialize()
    client.notify("textDocument/didOpen", {"textDocument": {
        "uri": URI, "languageId": "python", "version": 1, "text": TEXT}})
    client.wait_for(lambda method, params: method == "ghostpilot/status"
                    and params.get("state") == "ready", timeout=120)
    client.request_async("textDocument/inlineCompletion", {
        "textDocument": {"uri": URI}, "position": {"line": 5, "character": 8},
        "context": {"triggerKind": 1}})
    client.wait_for(lambda method, params: method == "ghostpilot/status"
                    and params.get("state") == "generating", timeout=30)
    time.sleep(0.2)  # a few tokens in
    return client


@pytest.mark.parametrize(("ending", "code"), [
    ("exit", 1),           # exit without shutdown: 1, as the LSP specification says
    ("shutdown+exit", 0),
    ("stdin closed", 0),  # the editor went away
])  # fmt: skip
def test_the_server_ends_cleanly_mid_generation(tmp_path, ending: str, code: int) -> None:  # type: ignore[no-untyped-def]
    client = generating_client(tmp_path)
    started = time.perf_counter()
    if ending == "shutdown+exit":
        assert client.request("shutdown", None, timeout=30) is None
        client.notify("exit", None)
    elif ending == "exit":
        client.notify("exit", None)
    else:
        assert client.process.stdin is not None
        client.process.stdin.close()
    assert client.process.wait(timeout=30) == code  # a signal would read as negative
    assert time.perf_counter() - started < 10  # the generation stopped, not ran out
    assert client.bad_output == []
    log = (tmp_path / "server.err").read_text(errors="replace")
    assert "did not stop" not in log
    # The mechanism, checked every run (the crash itself came 1 run in 3 to 1 in 18):
    # the model was closed on its own thread before the process ended.
    assert "model worker stopped, the model closed" in log
