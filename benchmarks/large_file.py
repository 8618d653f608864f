"""Large files through the real server: memory, didOpen time and keystroke handling.

For each size, starts ``python -m lsp_server serve`` over stdio, waits for the embedded
model, then opens a generated Python file of that many MB, types ``--keystrokes``
characters into a function in the middle of it (one ``didChange`` each), asks for an
inline completion there before and after the typing, and closes it.
The time of a notification is measured as the round trip of the ``ghostpilot/stats``
request sent right after it (the server handles messages in order) less the round trip of
that request alone. RSS comes from ``/proc/<pid>/status`` of the server (VmRSS, and
VmHWM for the peak).

    .venv/bin/python benchmarks/large_file.py --sizes 5,20

Files above ``maxFileSizeKb`` (default 8192) are kept in sync but not parsed; pass
``--max-file-size-kb`` to move the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

BLOCK = '''

class Account{n}:
    """A ledger entry with a balance and its history."""

    def __init__(self, owner: str, balance: float = 0.0) -> None:
        self.owner = owner
        self.balance = balance
        self.history: list[tuple[str, float]] = []

    def deposit(self, amount: float) -> float:
        if amount <= 0:
            raise ValueError("amount must be positive")
        self.balance += amount
        self.history.append(("deposit", amount))
        return self.balance


def total_{n}(accounts: list[Account{n}]) -> float:
    """Sum of the balances, skipping empty accounts."""
    return sum(a.balance for a in accounts if a.balance)
'''


def generate(size_bytes: int) -> str:
    parts = ["import math\nimport os\n"]
    length = len(parts[0])
    n = 0
    while length < size_bytes:
        block = BLOCK.format(n=n)
        parts.append(block)
        length += len(block)
        n += 1
    return "".join(parts)


class Client:
    """A minimal JSON-RPC client over the server's stdio."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT
        )
        self.responses: queue.Queue[dict[str, Any]] = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            length = 0
            while True:
                line = stream.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("ascii").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            message = json.loads(stream.read(length))
            if "id" in message and "method" in message:  # a request from the server
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            elif "id" in message:
                self.responses.put(message)

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode("utf-8")
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def notify(self, method: str, params: Any) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: Any, timeout: float = 600) -> Any:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        while True:
            message = self.responses.get(timeout=timeout)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(message["error"])
                return message.get("result")

    def rss_mb(self, field: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")


def timed(client: Client, send: Any) -> float:
    """Seconds from sending a notification until the request after it is answered."""
    started = time.perf_counter()
    send()
    client.request("ghostpilot/stats", None)
    return time.perf_counter() - started


def completion(client: Client, uri: str, line: int, character: int) -> float:
    """Seconds an explicit inline completion at (line, character) takes (it parses the
    file first where the tree is out of date)."""
    started = time.perf_counter()
    client.request("textDocument/inlineCompletion", {
        "textDocument": {"uri": uri}, "position": {"line": line, "character": character},
        "context": {"triggerKind": 1}})  # fmt: skip
    return time.perf_counter() - started


def measure(client: Client, size_mb: float, keystrokes: int, baseline: float) -> dict[str, Any]:
    text = generate(int(size_mb * 1024 * 1024))
    uri = f"file:///tmp/ghostpilot-bench/large_{size_mb:g}mb.py"
    lines = text.split("\n")
    line = next(i for i in range(len(lines) // 2, len(lines)) if lines[i].startswith("        self.balance +="))
    column = len(lines[line])
    before = client.rss_mb()
    open_s = timed(client, lambda: client.notify("textDocument/didOpen", {
        "textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}}))  # fmt: skip
    after_open = client.rss_mb()
    completion_s = completion(client, uri, line, column)
    after_completion = client.rss_mb()
    times = []
    for number in range(keystrokes):
        position = {"line": line, "character": column + number}
        change = {"range": {"start": position, "end": position}, "text": "x"}
        times.append(timed(client, lambda change=change, number=number: client.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": number + 2}, "contentChanges": [change]})))  # fmt: skip
    completion_after_edits_s = completion(client, uri, line, column + keystrokes)
    state = client.request("ghostpilot/document", {"uri": uri})
    expected = "\n".join([*lines[:line], lines[line] + "x" * keystrokes, *lines[line + 1 :]])
    after_edits = client.rss_mb()
    client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    client.request("ghostpilot/stats", None)
    keystroke_ms = sorted(max(0.0, t - baseline) * 1000 for t in times)
    return {
        "size_mb": size_mb,
        "bytes": len(text.encode("utf-8")),
        "oversized": state["oversized"],
        "in_sync": state["text"] == expected,
        "open_s": max(0.0, open_s - baseline),
        "completion_s": completion_s,
        "completion_after_edits_s": completion_after_edits_s,
        "rss_completion_mb": after_completion,
        "keystroke_ms_p50": statistics.median(keystroke_ms),
        "keystroke_ms_p95": keystroke_ms[min(len(keystroke_ms) - 1, int(0.95 * len(keystroke_ms)))],
        "keystroke_ms_max": keystroke_ms[-1],
        "rss_before_mb": before,
        "rss_open_mb": after_open,
        "rss_edits_mb": after_edits,
        "rss_closed_mb": client.rss_mb(),
        "rss_peak_mb": client.rss_mb("VmHWM"),
    }


def run_one(size_mb: float, keystrokes: int, options: dict[str, Any]) -> dict[str, Any]:
    """One fresh server: load the model, then measure one file size."""
    client = Client([sys.executable, "-m", "lsp_server", "serve"])
    try:
        client.request("initialize", {"processId": os.getpid(), "rootUri": None,
                                      "capabilities": {}, "initializationOptions": options})  # fmt: skip
        client.notify("initialized", {})
        deadline = time.monotonic() + 300
        while client.request("ghostpilot/stats", None)["modelState"] != "ready":
            if time.monotonic() > deadline:
                raise SystemExit("the model did not load in 5 minutes")
            time.sleep(0.5)
        baseline = statistics.median(timed(client, lambda: None) for _ in range(20))
        result = measure(client, size_mb, keystrokes, baseline)
        client.request("shutdown", None)
        client.notify("exit", None)
    finally:
        try:
            client.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            client.process.kill()
    return {**result, "stats_round_trip_ms": baseline * 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5,20", help="file sizes in MB, comma-separated")
    parser.add_argument("--keystrokes", type=int, default=50)
    parser.add_argument("--max-file-size-kb", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    if args.max_file_size_kb is not None:
        options["maxFileSizeKb"] = args.max_file_size_kb
    results = [run_one(float(size), args.keystrokes, options) for size in args.sizes.split(",")]
    print("one server per size, with the model loaded; the stats round trip alone is subtracted")
    print(f"{'size':>7} {'parsed':>6} {'in sync':>7} {'didOpen':>8} {'1st compl':>9} {'key p50':>8} "
          f"{'key p95':>8} {'key max':>8} {'compl':>7} {'RSS before':>10} {'RSS open':>9} {'RSS compl':>9} "
          f"{'RSS edits':>9} {'RSS closed':>10} {'RSS peak':>9}")  # fmt: skip
    for r in results:
        print(f"{r['size_mb']:>5g}MB {str(not r['oversized']):>6} {str(r['in_sync']):>7} "
              f"{r['open_s']:>7.2f}s {r['completion_s']:>8.2f}s {r['keystroke_ms_p50']:>6.1f}ms "
              f"{r['keystroke_ms_p95']:>6.1f}ms {r['keystroke_ms_max']:>6.1f}ms "
              f"{r['completion_after_edits_s']:>6.2f}s {r['rss_before_mb']:>8.0f}MB {r['rss_open_mb']:>7.0f}MB "
              f"{r['rss_completion_mb']:>7.0f}MB {r['rss_edits_mb']:>7.0f}MB "
              f"{r['rss_closed_mb']:>8.0f}MB {r['rss_peak_mb']:>7.0f}MB")  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
