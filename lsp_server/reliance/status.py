"""The status of every AI-written function, and the workspace report built from them.

Status, strongest first:
- ``reviewed``: a person marked all of its AI-written characters as reviewed;
- ``failing``: the last test run (still valid for this code) had a test fail that
  references the function or executed it;
- ``passing``: passing tests of the last valid run executed its AI-written lines;
- ``tested``: a test file references it by name (static, always on);
- ``untested``: none of the above.

A run result is valid while the function's source and the test files it ran are
unchanged (compared by hash); otherwise the static status applies again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from lsp_server.reliance import spans as sp
from lsp_server.reliance.spans import Span

UNTESTED = "untested"
TESTED = "tested"
PASSING = "passing"
FAILING = "failing"
REVIEWED = "reviewed"
STATUSES = (UNTESTED, TESTED, PASSING, FAILING, REVIEWED)
# Statuses that warrant a diagnostic.
FLAGGED = frozenset({UNTESTED, FAILING})


def run_key(path: str, qualname: str) -> str:
    return f"{path}::{qualname}"


@dataclass
class FunctionRun:
    """What one dynamic test run found about one function."""

    function_hash: str
    outcome: str  # "passing" | "failing" | "not-executed" | "error"
    tests: list[str] = field(default_factory=list)  # node ids that were selected
    failed: list[str] = field(default_factory=list)
    # Lines (relative to the function's first line) that passing tests executed.
    covered: list[int] = field(default_factory=list)
    # Digest of each test file the run used, to notice when they change.
    test_digests: dict[str, str] = field(default_factory=dict)
    ran_at: float = field(default_factory=time.time)
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> FunctionRun:
        if not isinstance(raw, dict):
            raise TypeError("not an object")
        run = cls(**{k: raw[k] for k in raw if k in cls.__dataclass_fields__})
        if not isinstance(run.function_hash, str) or not isinstance(run.outcome, str):
            raise ValueError("function_hash and outcome must be strings")
        return run


@dataclass(frozen=True)
class Entry:
    """One AI-written function (or the module's top level) and its status."""

    path: str
    qualname: str
    status: str
    start_line: int  # 0-based
    end_line: int
    ai_chars: int
    unreviewed_chars: int
    untested_chars: int
    share: float
    models: tuple[str, ...]
    last_accepted: float
    record_ids: tuple[str, ...]
    tests: tuple[str, ...] = ()
    detail: str = ""
    # Code-point range of the AI-written code inside the function (for diagnostics).
    ai_range: Span = (0, 0)
    name_range: Span = (0, 0)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["models"] = list(self.models)
        data["record_ids"] = list(self.record_ids)
        data["tests"] = list(self.tests)
        data["ai_range"] = list(self.ai_range)
        data["name_range"] = list(self.name_range)
        data["share"] = round(self.share, 4)
        return data


def decide(
    *,
    unreviewed_chars: int,
    static_tests: list[str],
    run: FunctionRun | None,
    run_valid: bool,
) -> tuple[str, str]:
    """Status and a short explanation, from what is known about one function."""
    if unreviewed_chars == 0:
        return REVIEWED, "marked as reviewed"
    if run is not None and run_valid:
        if run.outcome == FAILING:
            failed = ", ".join(run.failed[:3]) or "its tests"
            return FAILING, f"failing: {failed}"
        if run.outcome == PASSING:
            return PASSING, f"{len(run.tests)} test(s) passed and executed it"
        if run.outcome == "not-executed":
            return UNTESTED, "its tests ran but never executed it"
    if static_tests:
        shown = ", ".join(static_tests[:3]) + (" ..." if len(static_tests) > 3 else "")
        return TESTED, f"referenced by {shown}"
    return UNTESTED, "no test references it"


def evidence_note(evidence: list[dict[str, Any]], function_hash: str) -> str:
    """What the tested suggestion accepted here passed ("AI code, passes its 3 docstring
    examples"), while the function is the code it passed against; "" otherwise.

    Passing its examples does not clear the warning: see the README (Tested suggestions)."""
    valid = [e for e in evidence if e.get("function_hash") == function_hash]
    if not valid:
        return ""
    latest = valid[-1]
    examples = [bool(x) for x in latest.get("examples", [])]
    tests = dict(latest.get("tests", {}))
    parts = []
    if examples:
        passed = sum(examples)
        parts.append(f"passes its {len(examples)} docstring example{'s' if len(examples) != 1 else ''}"
                     if passed == len(examples) else f"passes {passed} of its {len(examples)} docstring examples")
    if tests:
        passed = sum(1 for v in tests.values() if v == "passed")
        parts.append(f"passed {passed}/{len(tests)} referencing tests when accepted")
    return "AI code, " + ", ".join(parts) if parts else ""


def untested_chars(
    status: str,
    text: str,
    unreviewed: Iterable[Span],
    function_start_line: int,
    run: FunctionRun | None,
) -> int:
    """AI characters neither reviewed nor shown to be exercised by a test.

    For a passing function only the lines its passing tests did not execute count;
    a statically tested one counts as exercised.
    """
    spans = list(unreviewed)
    if status in (TESTED, REVIEWED):
        return 0
    if status == PASSING and run is not None:
        covered = {function_start_line + line for line in run.covered}
        missing = 0
        for a, b in spans:
            line = text.count("\n", 0, a)
            for part in text[a:b].split("\n"):
                if line not in covered and part.strip():
                    missing += len(part)
                line += 1
        return missing
    return sp.size(spans)


@dataclass
class Report:
    """Every AI-written function of a workspace with its status, and totals."""

    workspace: str
    entries: list[Entry]
    detached: int = 0
    generated_at: float = field(default_factory=time.time)
    problems: list[str] = field(default_factory=list)

    @property
    def ai_chars(self) -> int:
        return sum(e.ai_chars for e in self.entries)

    @property
    def untested(self) -> int:
        return sum(e.untested_chars for e in self.entries)

    @property
    def untested_share(self) -> float:
        return self.untested / self.ai_chars if self.ai_chars else 0.0

    def counts(self) -> dict[str, int]:
        out = {status: 0 for status in STATUSES}
        for entry in self.entries:
            if entry.qualname != "<module>":
                out[entry.status] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "generated_at": self.generated_at,
            "functions": [e.to_json() for e in self.entries],
            "counts": self.counts(),
            "ai_chars": self.ai_chars,
            "untested_chars": self.untested,
            "untested_share": round(self.untested_share, 4),
            "detached_records": self.detached,
            "problems": list(self.problems),
        }

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False)


def render(report: Report) -> str:
    """The report as a plain-text table for a terminal."""
    lines = [f"Ghostpilot reliance report for {report.workspace}"]
    functions = [e for e in report.entries if e.qualname != "<module>"]
    module = [e for e in report.entries if e.qualname == "<module>"]
    if not report.entries:
        lines.append("No accepted AI suggestions are tracked in this workspace.")
    else:
        width = max((len(f"{e.path}:{e.start_line + 1}") for e in report.entries), default=10)
        qual = max((len(e.qualname) for e in report.entries), default=10)
        lines.append("")
        lines.append(f"{'STATUS':<9} {'LOCATION':<{width}} {'FUNCTION':<{qual}} {'AI':>5}  DETAIL")
        for entry in [*functions, *module]:
            location = f"{entry.path}:{entry.start_line + 1}"
            lines.append(
                f"{entry.status:<9} {location:<{width}} {entry.qualname:<{qual}} "
                f"{entry.share:>5.0%}  {entry.detail}"
            )
        counts = report.counts()
        summary = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])
        lines.append("")
        lines.append(f"AI-written functions: {len(functions)} ({summary or 'none'})")
        lines.append(
            f"Accepted AI characters still in the code: {report.ai_chars}; "
            f"untested: {report.untested} ({report.untested_share:.1%})"
        )
    if report.detached:
        lines.append(
            f"{report.detached} record(s) could not be re-anchored: their code changed "
            "outside the editor."
        )
    for problem in report.problems:
        lines.append(f"warning: {problem}")
    return "\n".join(lines)


def valid_run(run: FunctionRun | None, function_hash: str, digests: Mapping[str, str]) -> bool:
    """Whether ``run`` still describes the function and the tests as they are now."""
    if run is None or run.function_hash != function_hash:
        return False
    return all(digests.get(path) == digest for path, digest in run.test_digests.items())


def hull_within(spans: Iterable[Span]) -> Span:
    merged = sp.normalize(spans)
    return (merged[0][0], merged[-1][1]) if merged else (0, 0)
