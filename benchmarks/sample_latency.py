"""Keystroke latency on examples/sample.py through the real server (stdio).

Prints, for the body of ``mean()``: the first completion after opening the file (the
whole prompt evaluated), then a one-character edit that the last suggestion predicted
(served from memory), then one it did not (the model runs again on the reused KV cache),
with prompt tokens evaluated against reused for each.

    .venv/bin/python benchmarks/sample_latency.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lsp_server.evaluation.lsp_client import LspClient

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample.py"


def main() -> int:
    text = SAMPLE.read_text()
    uri = SAMPLE.as_uri()
    line = text.count("\n", 0, text.rindex("    \n") + 4)
    client = LspClient([sys.executable, "-m", "lsp_server", "serve"])
    try:
        client.initialize()
        started = time.perf_counter()
        client.wait_for(lambda m, p: m == "ghostpilot/status" and p.get("state") == "ready", 120)
        print(f"model ready after {time.perf_counter() - started:.2f} s")
        client.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "python", "version": 1, "text": text}})
        version = 1

        def request(column: int, label: str) -> str:
            started = time.perf_counter()
            result = client.request("textDocument/inlineCompletion", {
                "textDocument": {"uri": uri}, "position": {"line": line, "character": column},
                "context": {"triggerKind": 2}})
            elapsed = (time.perf_counter() - started) * 1000
            stats = client.request("ghostpilot/stats", None)["last"] or {}
            items = result["items"] if result else []
            suggestion = items[0]["insertText"] if items else ""
            print(f"{label:<44} {elapsed:8.1f} ms  prompt {stats.get('promptTokens', 0):4d}  "
                  f"evaluated {stats.get('evaluatedTokens', 0):4d}  reused {stats.get('reusedTokens', 0):4d}"
                  f"  cached={stats.get('cached')}  -> {suggestion.strip()[:40]!r}")
            return suggestion

        def type_char(column: int, char: str) -> None:
            nonlocal version
            version += 1
            position = {"line": line, "character": column}
            client.notify("textDocument/didChange", {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"range": {"start": position, "end": position}, "text": char}]})

        first = request(4, "first completion (cold prompt)")
        request(4, "same position again (nothing typed)")
        predicted = first.lstrip()[:1] or "r"
        type_char(4, predicted)
        request(5, f"typed {predicted!r}, as suggested")
        type_char(5, "_")
        request(6, "typed '_', not suggested (model runs)")
        type_char(6, "x")
        request(7, "typed 'x', not suggested (model runs)")
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
