"""Persistence of the reliance state of one workspace.

The state lives either in the XDG state directory
(``$XDG_STATE_HOME/ghostpilot/reliance/<name>-<hash>.json``) or in the workspace
(``.ghostpilot/reliance.json``), as the ``reliance.stateLocation`` setting says. Writes
are atomic (temporary file, fsync, rename). A state file that cannot be read or parsed
is moved aside (never deleted) and the workspace starts fresh with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsp_server.reliance.records import AIRecord, Detached, TrackedFile, Tracker
from lsp_server.reliance.status import FunctionRun

FORMAT = "ghostpilot-reliance"
VERSION = 1
LOCATIONS = ("xdg", "workspace")
WORKSPACE_FILE = Path(".ghostpilot") / "reliance.json"


class StateError(ValueError):
    """The state file is not valid; the message says where."""


def xdg_state_home() -> Path:
    raw = os.environ.get("XDG_STATE_HOME", "")
    if raw and os.path.isabs(raw):
        return Path(raw)
    return Path.home() / ".local" / "state"


def state_path(root: Path | None, location: str = "xdg") -> Path:
    """Where the state of workspace ``root`` lives (``root`` None: files outside any)."""
    if location == "workspace" and root is not None:
        return root / WORKSPACE_FILE
    base = xdg_state_home() / "ghostpilot" / "reliance"
    if root is None:
        return base / "no-workspace.json"
    resolved = str(root.resolve())
    digest = hashlib.sha256(resolved.encode("utf-8", errors="surrogatepass")).hexdigest()[:16]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in root.name)[:40] or "root"
    return base / f"{name}-{digest}.json"


def find_state(root: Path) -> Path | None:
    """The state file of ``root`` in either location, the newer if both exist."""
    found = [p for p in (state_path(root, loc) for loc in LOCATIONS) if p.is_file()]
    if not found:
        return None
    return max(found, key=lambda p: p.stat().st_mtime_ns)


@dataclass
class State:
    tracker: Tracker = field(default_factory=Tracker)
    # Results of the last dynamic test run, by "path::qualname".
    runs: dict[str, FunctionRun] = field(default_factory=dict)
    workspace: str = ""


@dataclass
class Loaded:
    state: State
    warning: str | None = None


def load(path: Path, *, move_aside: bool = True) -> Loaded:
    """Read the state at ``path``; a missing file is a fresh state, a bad one a warning.

    A bad file is renamed aside (kept, never deleted) unless ``move_aside`` is False
    (read-only callers such as the report command).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Loaded(State())
    except OSError as error:
        return Loaded(State(), f"could not read the reliance state {path}: {error}; starting fresh")
    try:
        return Loaded(decode(json.loads(raw.decode("utf-8"))))
    except (UnicodeDecodeError, json.JSONDecodeError, StateError) as error:
        aside = _move_aside(path) if move_aside else None
        kept = f"; the old file was kept as {aside}" if aside else ""
        return Loaded(
            State(), f"the reliance state {path} is corrupt ({error}); starting fresh{kept}"
        )


def _move_aside(path: Path) -> Path | None:
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        os.replace(path, aside)
    except OSError:
        return None
    return aside


def save(path: Path, state: State, texts: dict[str, str] | None = None) -> None:
    """Write ``state`` atomically. ``texts`` holds the current text of live files."""
    payload = json.dumps(encode(state, texts or {}), indent=1, ensure_ascii=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", errors="surrogatepass") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    try:
        directory = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory)
    except OSError:
        pass
    finally:
        os.close(directory)


# -- encoding -----------------------------------------------------------------------------


def encode(state: State, texts: dict[str, str]) -> dict[str, Any]:
    from lsp_server.reliance.records import content_hash, refresh_anchors

    files: dict[str, Any] = {}
    for path, tracked in state.tracker.files.items():
        records = [r for r in tracked.records if r.alive]
        if not records:
            continue
        basis = tracked.basis_hash
        if basis is None:
            text = texts.get(path, tracked.shadow)
            if text is None:
                continue
            refresh_anchors(records, text)
            basis = content_hash(text)
        files[path] = {"basis_hash": basis, "records": [_encode_record(r) for r in records]}
    return {
        "format": FORMAT,
        "version": VERSION,
        "workspace": state.workspace,
        "saved_at": time.time(),
        "files": files,
        "runs": {key: run.to_json() for key, run in state.runs.items()},
        "detached": [
            {"path": d.path, "reason": d.reason, "record": _encode_record(d.record)}
            for d in state.tracker.detached[-200:]
        ],
    }


def _encode_record(record: AIRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "spans": [list(s) for s in record.spans],
        "reviewed": [list(s) for s in record.reviewed],
        "text": record.text,
        "text_hash": record.text_hash,
        "model": record.model,
        "accepted_at": record.accepted_at,
        "reviewed_at": record.reviewed_at,
        "anchor": record.anchor,
        **({"evidence": record.evidence} if record.evidence is not None else {}),
    }


def decode(data: Any) -> State:
    """Build a state from parsed JSON, or raise :class:`StateError` saying what is wrong."""
    _expect(isinstance(data, dict), "the top level is not an object")
    _expect(data.get("format") == FORMAT, f"format is not {FORMAT!r}")
    version = data.get("version")
    _expect(version == VERSION, f"unsupported version {version!r}")
    files = data.get("files", {})
    _expect(isinstance(files, dict), "'files' is not an object")
    tracker = Tracker()
    for path, entry in files.items():
        where = f"files[{path!r}]"
        _expect(isinstance(entry, dict), f"{where} is not an object")
        basis = entry.get("basis_hash")
        _expect(isinstance(basis, str) and len(basis) == 64, f"{where}.basis_hash is invalid")
        raw_records = entry.get("records")
        _expect(isinstance(raw_records, list), f"{where}.records is not a list")
        records = [_decode_record(r, f"{where}.records[{i}]") for i, r in enumerate(raw_records)]
        tracker.files[path] = TrackedFile(records=[r for r in records if r.alive], basis_hash=basis)
    runs_raw = data.get("runs", {})
    _expect(isinstance(runs_raw, dict), "'runs' is not an object")
    runs: dict[str, FunctionRun] = {}
    for key, value in runs_raw.items():
        try:
            runs[key] = FunctionRun.from_json(value)
        except (KeyError, TypeError, ValueError) as error:
            raise StateError(f"runs[{key!r}] is invalid: {error}") from None
    detached_raw = data.get("detached", [])
    _expect(isinstance(detached_raw, list), "'detached' is not a list")
    for i, item in enumerate(detached_raw):
        _expect(isinstance(item, dict), f"detached[{i}] is not an object")
        record = _decode_record(item.get("record"), f"detached[{i}].record")
        tracker.detached.append(Detached(str(item.get("path", "")), record, str(item.get("reason", ""))))
    workspace = data.get("workspace", "")
    return State(tracker=tracker, runs=runs, workspace=workspace if isinstance(workspace, str) else "")


def _decode_record(raw: Any, where: str) -> AIRecord:
    _expect(isinstance(raw, dict), f"{where} is not an object")
    spans = _decode_spans(raw.get("spans"), f"{where}.spans")
    reviewed = _decode_spans(raw.get("reviewed", []), f"{where}.reviewed")
    for name in ("id", "text", "model", "anchor"):
        _expect(isinstance(raw.get(name), str), f"{where}.{name} is not a string")
    accepted = raw.get("accepted_at")
    _expect(isinstance(accepted, (int, float)), f"{where}.accepted_at is not a number")
    reviewed_at = raw.get("reviewed_at")
    _expect(reviewed_at is None or isinstance(reviewed_at, (int, float)), f"{where}.reviewed_at")
    evidence = raw.get("evidence")
    _expect(evidence is None or isinstance(evidence, dict), f"{where}.evidence is not an object")
    return AIRecord(
        id=raw["id"],
        spans=spans,
        reviewed=reviewed,
        text=raw["text"],
        model=raw["model"],
        accepted_at=float(accepted),
        reviewed_at=None if reviewed_at is None else float(reviewed_at),
        anchor=raw["anchor"],
        evidence=evidence,
    )


def _decode_spans(raw: Any, where: str) -> list[tuple[int, int]]:
    _expect(isinstance(raw, list), f"{where} is not a list")
    out: list[tuple[int, int]] = []
    previous = -1
    for item in raw:
        ok = (
            isinstance(item, list)
            and len(item) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in item)
            and previous <= item[0] < item[1]
        )
        _expect(ok, f"{where} holds an invalid span {item!r}")
        out.append((item[0], item[1]))
        previous = item[1]
    return out


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise StateError(message)
