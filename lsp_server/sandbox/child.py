"""Pieces of the programs that run inside the sandbox, as text, and reading their result.

A sandboxed child runs under ``python -I`` with none of this package importable, so the
parts its drivers share are pasted into their text rather than imported.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

# The start of a driver that reads ``plan.json`` beside it and reports through
# ``finish(payload)``: argv = [marker]. It defines HERE, PLAN, MARKER and MAIN_PID, puts
# ``PLAN["paths"]`` first on ``sys.path``, and points fd 1 at stderr so that whatever the
# code under test prints cannot pass for the result. ``finish`` writes the payload as one
# JSON line tagged with the marker to the real stdout (flushing the code's buffered output
# to stderr first, and pointing fd 1 back at stderr after); a forked child calling it exits 70.
PLAN_AND_FINISH = r'''
import json, os, sys
HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "plan.json"), encoding="utf-8") as fh:
    PLAN = json.load(fh)
MARKER = sys.argv[1]
MAIN_PID = os.getpid()
for entry in reversed(PLAN["paths"]):
    sys.path.insert(0, entry)
real_stdout = os.dup(1)
os.dup2(2, 1)


def finish(payload):
    if os.getpid() != MAIN_PID:
        os._exit(70)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # what the code printed goes to stderr now, not after the result
        except Exception:
            pass
    os.dup2(real_stdout, 1)
    with os.fdopen(1, "w", encoding="utf-8", closefd=False) as out:
        out.write("\n" + MARKER + json.dumps(payload) + "\n")
        out.flush()
    os.dup2(2, 1)  # and whatever runs after (atexit, finalizers) cannot follow it
'''

# A doctest output checker (needs ``ast`` and ``doctest`` imported) and the flags the
# docstring examples run with.
VALUE_CHECKER = r'''
class ValueChecker(doctest.OutputChecker):
    # Accept output equal by value when both sides are literals ("21" vs '21').
    def check_output(self, want, got, optionflags):
        if super().check_output(want, got, optionflags):
            return True
        try:
            return ast.literal_eval(want.strip()) == ast.literal_eval(got.strip())
        except Exception:
            return False


EXAMPLE_FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
'''


def new_marker() -> str:
    """A fresh random marker for a driver's argv (what code under test cannot guess)."""
    return f"@@ghostpilot-{secrets.token_hex(8)}@@"


def marked_payload(stdout: str, marker: str) -> Any:
    """The JSON that ``finish`` wrote: the last stdout line starting with ``marker``,
    decoded; None when there is no such line or it does not decode (pure)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(marker):
            try:
                return json.loads(line[len(marker):])
            except json.JSONDecodeError:
                return None
    return None
