"""VS Code, for real: code-server 4.100.3 in headless Debian chromium, the Ghostpilot .vsix,
the real ``ghostpilot serve`` and the embedded model.

One harness run (``tests/editors/vscode/run-vscode-test.mjs``, playwright-core) does what a
user does: open a Python file, type a signature and docstring, wait for ghost text, accept
a word with Ctrl+Right and the rest with Tab, open the log from the status bar, show the
over-reliance report, run "Ghostpilot: Generate docstring". It records what it saw (file
contents, ghost text, status bar texts, the extension's log with the LSP trace); each test
below checks one promise against that record. Screenshots: ``artifacts/vscode/*.png``.

Setup: ``bash scripts/setup-code-server.sh`` and
``(cd vscode-extension && npm ci && npm run package)``. Without them the tests skip, except
under ``CI=true``, where missing setup is a failure.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.editor, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "tests" / "editors" / "vscode"
EXTENSION = REPO / "vscode-extension"
ARTIFACTS = REPO / "artifacts" / "vscode"
CODE_SERVER_VERSION = "4.100.3"
HARNESS_TIMEOUT_S = 600


# -- prerequisites ---------------------------------------------------------------------


def _code_server() -> Path:
    explicit = os.environ.get("GHOSTPILOT_CODE_SERVER")
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("GHOSTPILOT_CACHE", Path.home() / ".cache" / "ghostpilot"))
    return cache / f"code-server-{CODE_SERVER_VERSION}" / "node_modules" / ".bin" / "code-server"


def _chromium() -> Path | None:
    candidates = (os.environ.get("CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _ghostpilot() -> Path | None:
    beside_python = Path(sys.executable).with_name("ghostpilot")
    if beside_python.is_file():
        return beside_python
    found = shutil.which("ghostpilot")
    return Path(found) if found else None


def _newest_source_mtime() -> float:
    sources = [EXTENSION / "package.json", *EXTENSION.glob("src/**/*.ts")]
    return max(path.stat().st_mtime for path in sources if path.exists())


def prerequisites() -> tuple[dict[str, str], list[str]]:
    """Paths the harness needs, and what is missing (each with the command that fixes it)."""
    problems: list[str] = []
    code_server = _code_server()
    if not code_server.exists():
        problems.append(f"code-server {CODE_SERVER_VERSION} not built at {code_server} "
                        "(bash scripts/setup-code-server.sh)")
    chromium = _chromium()
    if chromium is None:
        problems.append("chromium not installed (apt-get install chromium)")
    node = shutil.which("node")
    if node is None:
        problems.append("node not on PATH")
    if not (HARNESS / "node_modules" / "playwright-core" / "package.json").exists():
        problems.append("playwright-core not installed (cd tests/editors/vscode && npm ci)")
    vsix = EXTENSION / "ghostpilot.vsix"
    if not vsix.exists():
        problems.append("vscode-extension/ghostpilot.vsix not built "
                        "(cd vscode-extension && npm ci && npm run package)")
    elif vsix.stat().st_mtime < _newest_source_mtime():
        problems.append("vscode-extension/ghostpilot.vsix is older than its sources "
                        "(cd vscode-extension && npm run package)")
    ghostpilot = _ghostpilot()
    if ghostpilot is None:
        problems.append("the ghostpilot console script is not installed (pip install -e .)")
    paths = {
        "CODE_SERVER": str(code_server),
        "CHROMIUM": str(chromium),
        "VSIX": str(vsix),
        "GHOSTPILOT_CMD": json.dumps([str(ghostpilot), "serve"]),
        "NODE": str(node),
    }
    return paths, problems


# -- the extension's log: server stderr plus the LSP trace -----------------------------

_ENTRY = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \[(\w+)\] (.*)$", re.MULTILINE)
_HEADER = re.compile(
    r"^(Sending|Received) (request|response|notification) '([^']+?)(?: - \(([^)]+)\))?'"
)


@dataclass(frozen=True)
class TraceMessage:
    direction: str  # "Sending" | "Received"
    kind: str  # "request" | "response" | "notification"
    method: str
    id: str | None
    header: str
    body: Any  # parsed Params/Result JSON, or None


def parse_trace(log: str) -> list[TraceMessage]:
    """The LSP messages in the Ghostpilot output channel's log (``[trace]`` entries)."""
    entries = list(_ENTRY.finditer(log))
    messages = []
    for index, entry in enumerate(entries):
        if entry.group(2) != "trace":
            continue
        header = _HEADER.match(entry.group(3))
        if not header:
            continue
        end = entries[index + 1].start() if index + 1 < len(entries) else len(log)
        rest = log[entry.end():end].strip()
        body = None
        for prefix in ("Params: ", "Result: "):
            if rest.startswith(prefix):
                try:
                    body = json.loads(rest[len(prefix):])
                except json.JSONDecodeError:
                    body = None
        messages.append(TraceMessage(header.group(1), header.group(2), header.group(3),
                                     header.group(4), entry.group(3), body))
    return messages


def inline_items(trace: list[TraceMessage]) -> list[dict[str, Any]]:
    items = []
    for message in trace:
        if message.kind == "response" and message.method == "textDocument/inlineCompletion":
            body = message.body
            found = body.get("items", []) if isinstance(body, dict) else body or []
            items.extend(item for item in found if isinstance(item, dict))
    return items


def accept_requests(trace: list[TraceMessage]) -> list[TraceMessage]:
    return [m for m in trace if m.kind == "request" and m.direction == "Sending"
            and m.method == "workspace/executeCommand"
            and isinstance(m.body, dict) and m.body.get("command") == "ghostpilot.accept"]


def function_source(text: str, name: str) -> str:
    """The source of top-level function ``name`` (up to the next top-level statement)."""
    match = re.search(rf"^def {re.escape(name)}\(.*?(?=^\S|\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"function {name} not found in:\n{text}"
    return match.group(0).rstrip() + "\n"


_SAMPLE_LOG = """2026-11-21 11:42:33.509 [trace] Sending request 'workspace/executeCommand - (27)'.
Params: {
    "command": "ghostpilot.accept",
    "arguments": ["abc"]
}
2026-11-21 11:42:33.515 [trace] Received response 'workspace/executeCommand - (27)' in 6ms.
Result: {"accepted": "abc"}
2026-11-21 11:42:33.520 [info] 2026-11-21 11:42:33,519 INFO lsp_server.server: accepted abc
2026-11-21 11:42:33.553 [trace] Received notification 'ghostpilot/status'.
Params: {"state": "ready", "model": "m"}
2026-11-21 11:42:34.000 [trace] Received response 'shutdown - (3)' in 2ms.
No result returned.
"""


@pytest.mark.parametrize(
    ("index", "direction", "kind", "method", "message_id", "body"),
    [
        pytest.param(0, "Sending", "request", "workspace/executeCommand", "27",
                     {"command": "ghostpilot.accept", "arguments": ["abc"]}, id="request"),
        pytest.param(1, "Received", "response", "workspace/executeCommand", "27",
                     {"accepted": "abc"}, id="response"),
        pytest.param(2, "Received", "notification", "ghostpilot/status", None,
                     {"state": "ready", "model": "m"}, id="notification-after-server-log"),
        pytest.param(3, "Received", "response", "shutdown", "3", None, id="no-result"),
    ],
)
def test_parse_trace(index: int, direction: str, kind: str, method: str,
                     message_id: str | None, body: Any) -> None:
    messages = parse_trace(_SAMPLE_LOG)
    assert len(messages) == 4, "the server's own log line is not an LSP message"
    message = messages[index]
    assert (message.direction, message.kind, message.method, message.id, message.body) == (
        direction, kind, method, message_id, body)


# -- the one harness run ---------------------------------------------------------------

SELECT_MODEL = "gemma-standin"


@contextmanager
def model_hub(root: Path) -> Iterator[dict[str, str]]:
    """A loopback Hub serving the embedded GGUF as the registry model ``gemma-standin`` (the
    real registry plus that entry), for the "Select model" step; the server's environment."""
    from lsp_server.backends.registry import REGISTRY_PATH, embedded_model_path
    from tests.e2e.test_models_pull import GEMMA_FILE, GEMMA_REPO, registry_entry
    from tests.hub_standin import HubStandIn

    with HubStandIn() as hub:
        served = hub.add(GEMMA_REPO, GEMMA_FILE, embedded_model_path())
        registry = root / "registry.toml"
        registry.write_text(REGISTRY_PATH.read_text(encoding="utf-8") + "\n"
                            + registry_entry(SELECT_MODEL, GEMMA_REPO, GEMMA_FILE, served.sha256),
                            encoding="utf-8")  # fmt: skip
        yield {
            "SELECT_MODEL": SELECT_MODEL, "HF_ENDPOINT": hub.endpoint, "GHOSTPILOT_REGISTRY": str(registry),
            "GHOSTPILOT_MODELS_DIR": str(root / "models"), "HF_HOME": str(root / "hf-home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }  # fmt: skip



@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    paths, problems = prerequisites()
    if problems:
        message = "VS Code editor test not set up: " + "; ".join(problems)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    result_path = ARTIFACTS / "result.json"
    result_path.unlink(missing_ok=True)
    env = {**os.environ, **paths, "ARTIFACTS": str(ARTIFACTS), "RESULT_JSON": str(result_path)}
    started = time.monotonic()
    with model_hub(tmp_path_factory.mktemp("hub")) as hub_env:  # "Ghostpilot: Select model"
        completed = subprocess.run(
            [paths["NODE"], str(HARNESS / "run-vscode-test.mjs")],
            env={**env, **hub_env}, capture_output=True, text=True, timeout=HARNESS_TIMEOUT_S,
            check=False,
        )  # fmt: skip
    elapsed = time.monotonic() - started
    (ARTIFACTS / "harness.log").write_text(completed.stdout + completed.stderr)
    if not result_path.exists():
        pytest.fail(f"the harness wrote no result (exit {completed.returncode}):\n"
                    f"{completed.stderr[-4000:]}")
    result = json.loads(result_path.read_text())
    timings = ", ".join(f"{k} {v / 1000:.1f}s" for k, v in result["timings"].items())
    print(f"\nVS Code editor test: {elapsed:.1f}s in all ({timings}); "
          f"screenshots in {ARTIFACTS}")
    if not result["ok"]:
        pytest.fail(f"driving VS Code failed: {result['error']}\n"
                    f"notifications: {result['notifications']}\n"
                    f"status bar: {result['statusTexts']}\nsee {ARTIFACTS}")
    result["trace"] = parse_trace(result.get("extensionLog") or "")
    return result


# -- what the user was promised ----------------------------------------------------------


def test_ghost_text_comes_from_the_server(run: dict[str, Any]) -> None:
    ghost = run["ghost"]["initial"]
    assert ghost and ghost.strip(), "no ghost text was shown"
    first_line = ghost.splitlines()[0].strip()
    inserted = [item.get("insertText", "") for item in inline_items(run["trace"])]
    assert any(first_line in text for text in inserted), (
        f"ghost text {first_line!r} is not one of the server's items {inserted}")


def test_tab_accepts_the_suggestion_into_the_file(run: dict[str, Any]) -> None:
    text = run["fileAfterAccept"]
    assert text.startswith(run["sample"] + run["typed"].rstrip()), "the file lost what was typed"
    accepted = accept_requests(run["trace"])
    assert accepted, "Tab did not run the item's ghostpilot.accept command"
    accepted_id = accepted[-1].body["arguments"][0]
    items = [item for item in inline_items(run["trace"])
             if (item.get("command") or {}).get("arguments") == [accepted_id]]
    assert items, f"no inline item carries the accepted id {accepted_id}"
    insert_text = items[-1]["insertText"]
    assert insert_text.strip(), "the accepted suggestion is empty"
    assert insert_text.rstrip() in text, (
        f"accepted suggestion {insert_text!r} is not in the editor text:\n{text}")
    assert len(text.rstrip()) > len((run["sample"] + run["typed"]).rstrip())


def test_accept_command_reaches_the_server(run: dict[str, Any]) -> None:
    accepted = accept_requests(run["trace"])
    assert accepted, "no workspace/executeCommand ghostpilot.accept was sent"
    responses = [m for m in run["trace"] if m.kind == "response"
                 and m.method == "workspace/executeCommand" and m.id == accepted[-1].id]
    assert responses, "the server never answered ghostpilot.accept"
    assert "Request failed" not in responses[-1].header, responses[-1].header


def test_partial_accept_by_word(run: dict[str, Any]) -> None:
    initial, after = run["ghost"]["initial"], run["ghost"]["afterPartial"]
    if after is None:
        pytest.skip(f"the suggestion {initial!r} was a single word: nothing to accept partially")
    assert after, "Ctrl+Right accepted everything instead of one word"
    assert len(after) < len(initial) and initial.endswith(after), (
        f"after accepting one word the ghost text should be the rest: {initial!r} -> {after!r}")


def test_accepted_suggestion_leaves_the_file_parseable(run: dict[str, Any]) -> None:
    try:
        ast.parse(run["fileAfterAccept"])
    except SyntaxError as error:
        pytest.fail(f"after accepting the suggestion the file no longer parses ({error}):\n"
                    f"{function_source(run['fileAfterAccept'], 'is_palindrome')}")


def test_status_bar_shows_model_state_and_latency(run: dict[str, Any]) -> None:
    statuses = [m.body for m in run["trace"]
                if m.method == "ghostpilot/status" and isinstance(m.body, dict)]
    models = {status.get("model") for status in statuses} - {None}
    assert models, "the server sent no ghostpilot/status with a model"
    texts = run["statusTexts"]
    latency = re.compile(rf"^({'|'.join(map(re.escape, models))}): \d+(\.\d)? (ms|s)$")
    assert any(latency.match(text) for text in texts), (
        f"the status bar never showed model and latency: {texts}")
    assert any(re.search(r": (generating|loading)", text) for text in texts), (
        f"the status bar never showed work in progress: {texts}")


def test_status_item_opens_the_log_with_server_output_and_trace(run: dict[str, Any]) -> None:
    assert run["outputChannel"]["opened"], "clicking the status bar item opened no panel"
    assert "Ghostpilot" in (run["outputChannel"]["text"] or "")
    log = run["extensionLog"] or ""
    assert "[trace] Sending request 'initialize" in log, "the LSP trace is not in the channel"
    assert re.search(r"\[(info|warning|error|debug)\] .*\b(INFO|WARNING|ERROR)\b", log), (
        "the server's own log (stderr) is not in the channel")


def test_reliance_report_lists_the_accepted_code(run: dict[str, Any]) -> None:
    report = run["relianceReport"] or {}
    assert report.get("offered"), f"no over-reliance report: {report.get('text')}"
    assert "is_palindrome" in report["text"], report["text"]


def test_generate_docstring(run: dict[str, Any]) -> None:
    outcome = run["docstring"]
    assert outcome["offered"], (
        f'"Ghostpilot: Generate docstring" inserted nothing: {outcome["notification"]}')
    before = function_source(run["sample"], "count_vowels")
    after = function_source(outcome["fileAfter"], "count_vowels")
    tree = ast.parse(after)
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    docstring = ast.get_docstring(function)
    assert docstring and docstring.strip(), f"no docstring in:\n{after}"
    assert "word" in docstring, f"the docstring does not document the parameter:\n{docstring}"
    old_body = ast.parse(before).body[0].body  # type: ignore[attr-defined]
    assert ast.dump(ast.Module(function.body[1:], [])) == ast.dump(ast.Module(old_body, [])), (
        "generating the docstring changed the function's code")
    rest_before = run["fileAfterAccept"].replace(before, "")
    rest_after = outcome["fileAfter"].replace(after, "")
    assert rest_before == rest_after, "generating the docstring changed other code"


def test_toggle_inline_suggestions(run: dict[str, Any]) -> None:
    toggle = run["toggle"]
    assert toggle["settingOff"] is False, f"ghostpilot.enable after one toggle: {toggle}"
    assert toggle["statusOff"] and toggle["statusOff"].endswith(": off"), toggle
    assert toggle["settingOn"] is True, f"ghostpilot.enable after two toggles: {toggle}"
    assert toggle["statusOn"] and not toggle["statusOn"].endswith(": off"), toggle


def test_missing_server_gives_one_actionable_message(run: dict[str, Any]) -> None:
    missing = run["missingServer"]
    message = missing["notification"]
    assert message, f"no message when the server command does not exist: {missing}"
    assert "ghostpilot.server.command" in message and "not found" in message, message
    about_it = [text for text in missing.get("notifications") or [] if "no-such-ghostpilot" in text]
    assert len(about_it) == 1, f"expected one message, got {about_it}"
    assert missing["status"] and missing["status"].endswith("stopped"), missing["status"]


def test_restart_server(run: dict[str, Any]) -> None:
    restart = run["restart"]
    assert restart["ready"], f"the server did not come back after a restart: {restart}"
    initializations = [m for m in run["trace"] if m.kind == "request"
                       and m.direction == "Sending" and m.method == "initialize"]
    assert len(initializations) >= 2, "Restart server did not start a new server"


def test_select_model_lists_models_then_downloads_and_switches(run: dict[str, Any]) -> None:
    """"Ghostpilot: Select model": installed and downloadable models with size and the
    recommendation; picking one that is not installed writes ghostpilot.model, the server
    offers the download in a notification, and after "Download" the model serves."""
    pick = run["selectModel"]
    assert pick["error"] is None, pick
    items = pick["items"] or []
    gemma = next((item for item in items if item.startswith("Gemma 3 270M")), None)
    assert gemma and "253.1 MB" in gemma and "embedded" in gemma, items
    standin = pick["chosen"] or ""  # the row picked, read after filtering (the list is virtual)
    assert standin.startswith("Gemma-Standin") and "download" in standin and "HumanEval 4.0 %" in standin, pick
    qwen = next((item for item in items if item.startswith("Qwen2.5-Coder 1.5B")), None)
    assert qwen and "~1.6 GB" in qwen and "HumanEval 43.9 %" in qwen, items
    assert any("recommended" in item for item in items), items
    assert [s.strip() for s in pick["separators"] if s.strip()][:2] == ["Installed", "Download"], pick["separators"]
    assert pick["setting"] == SELECT_MODEL
    assert pick["offer"].startswith("Ghostpilot: Download Gemma-Standin (253.1 MB)?"), pick["offer"]
    assert pick["status"].endswith(f"{SELECT_MODEL}: ready") or re.search(rf"{SELECT_MODEL}: \d", pick["status"])
    ready = [m.body for m in run["trace"] if m.method == "ghostpilot/status" and isinstance(m.body, dict)
             and m.body.get("model") == SELECT_MODEL and m.body.get("state") == "ready"]  # fmt: skip
    assert ready, "the server never reported the selected model ready"


def test_tested_candidate_shows_its_pass_count_in_the_status_bar(run: dict[str, Any]) -> None:
    """Alt+\\ in the empty body of a function with examples: the inline items are ranked
    tested candidates, and the status bar names the one on screen with what it passed;
    Alt+] moves to the next and the line follows. Screenshot: 08-tested-candidate.png."""
    tested = run["tested"]
    assert tested["error"] is None, tested
    match = re.fullmatch(r".*candidate 1/(\d+) \u00b7 passes ([0-2])/2 examples.*", tested["status"] or "")
    assert match, tested
    count = int(match.group(1))
    assert (ARTIFACTS / "08-tested-candidate.png").is_file()
    items = [item for item in inline_items(run["trace"])
             if len((item.get("command") or {}).get("arguments") or []) == 2]
    assert len(items) >= count, "the tested items did not come from the server"
    if count > 1:
        assert re.fullmatch(r".*candidate 2/\d+ \u00b7 passes [0-2]/2 examples.*", tested["statusAfterNext"] or ""), tested
