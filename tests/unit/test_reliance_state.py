"""Records, locating accepted text, persistence and re-anchoring after a restart."""

from __future__ import annotations

import json
import os

import pytest

from lsp_server.parsing.document import TextChange
from lsp_server.reliance import state as st
from lsp_server.reliance.records import Tracker, locate, new_record
from lsp_server.reliance.status import FunctionRun
from lsp_server.reliance.workspace import RelianceWorkspace

SOURCE = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


@pytest.mark.parametrize(
    ("text", "inserted", "near", "expected"),
    [
        pytest.param("x = 1\nx = 1\n", "x = 1", 6, (6, 11), id="nearest-of-two"),
        pytest.param("x = 1\nx = 1\n", "x = 1", 0, (0, 5), id="nearest-first"),
        pytest.param("a\r\nb\r\n", "a\nb", 0, (0, 4), id="crlf-variant"),
        pytest.param("    return 1\nz", "    return 1\n\n", 0, (0, 12), id="trailing-ws-dropped"),
        pytest.param("nothing here", "return 1", 0, None, id="absent"),
    ],
)
def test_locate(text, inserted, near, expected):
    assert locate(text, inserted, near) == expected


def test_share_counts_human_edits_inside():
    tracker = Tracker()
    text = "def f():\n" + "    return 1\n"
    record = new_record(9, "    return 1\n", "m")
    tracker.add("f.py", record, text)
    tracker.apply("f.py", [TextChange(19, 20, "100")], refine=False)  # "1" -> "100"
    (kept,) = tracker.records("f.py")
    assert kept.ai_chars == 12
    assert kept.end - kept.start == 15
    assert kept.share == pytest.approx(12 / 15)
    assert kept.retained == pytest.approx(12 / 13)


def test_new_acceptance_takes_over_overlapping_characters():
    tracker = Tracker()
    tracker.add("f.py", new_record(0, "abcdef", "m"), "abcdef")
    tracker.apply("f.py", [TextChange(2, 4, "XY")], refine=False)
    second = new_record(2, "XY", "m")
    tracker.add("f.py", second, "abXYef")
    first = next(r for r in tracker.records("f.py") if r.id != second.id)
    assert first.all_spans == [(0, 2), (4, 6)]
    assert second.all_spans == [(2, 4)]


def test_mark_reviewed_moves_characters():
    tracker = Tracker()
    tracker.add("f.py", new_record(0, "abcdef", "m"), "abcdef")
    assert tracker.mark_reviewed("f.py", 2, 4) == 2
    (record,) = tracker.records("f.py")
    assert record.spans == [(0, 2), (4, 6)]
    assert record.reviewed == [(2, 4)]
    tracker.apply("f.py", [TextChange(0, 0, "__")], refine=False)
    assert record.reviewed == [(4, 6)]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param("pkg/a.py", "pkg/b.py", {"pkg/b.py", "pkg/sub/c.py", "pkga.py"}, id="file"),
        pytest.param("pkg", "lib", {"lib/a.py", "lib/sub/c.py", "pkga.py"}, id="folder"),
        pytest.param("pkg/sub/", "pkg/deep/sub", {"pkg/a.py", "pkg/deep/sub/c.py", "pkga.py"}, id="subfolder"),
        pytest.param("nothing.py", "else.py", {"pkg/a.py", "pkg/sub/c.py", "pkga.py"}, id="untracked"),
    ],
)
def test_rename_moves_records_of_files_and_folders(old, new, expected):
    tracker = Tracker()
    for path in ("pkg/a.py", "pkg/sub/c.py", "pkga.py"):
        tracker.add(path, new_record(0, "x = 1", "m"), "x = 1")
    ids = {path: tracker.records(path)[0].id for path in tracker.paths()}
    moved = tracker.rename(old, new)
    assert set(tracker.paths()) == expected
    assert set(moved) == expected - set(ids)
    assert {r.id for _, r in tracker.all_records()} == set(ids.values())


def test_rename_after_the_deleted_event_still_finds_the_records():
    tracker = Tracker()
    record = new_record(0, "x = 1", "m")
    tracker.add("a.py", record, "x = 1")
    tracker.remove("a.py")  # the watcher's "deleted" came first
    assert tracker.paths() == []
    assert tracker.rename("a.py", "b.py") == ["b.py"]
    assert tracker.records("b.py") == [record]


def test_rename_onto_a_file_with_records_keeps_that_file_s_records():
    tracker = Tracker()
    tracker.add("a.py", new_record(0, "x = 1", "m"), "x = 1")
    kept = new_record(0, "y = 2", "m")
    tracker.add("b.py", kept, "y = 2")
    assert tracker.rename("a.py", "b.py") == []
    assert tracker.records("b.py") == [kept]


def make_workspace(tmp_path, location="workspace"):
    root = tmp_path / "ws"
    root.mkdir(exist_ok=True)
    (root / "calc.py").write_text(SOURCE)
    return RelianceWorkspace(root, location)


def accept_add_body(workspace):
    start = SOURCE.index("    return a + b")
    record = new_record(start, "    return a + b\n", "gemma-test")
    workspace.tracker.add("calc.py", record, SOURCE)
    workspace.tracker.detach("calc.py", SOURCE)
    return record


def test_state_round_trip_and_atomic_file(tmp_path):
    workspace = make_workspace(tmp_path)
    record = accept_add_body(workspace)
    workspace.state.runs["calc.py::add"] = FunctionRun("h" * 64, "passing", ["t::x"], [], [1])
    workspace.save({})
    assert workspace.state_file == tmp_path / "ws" / ".ghostpilot" / "reliance.json"
    assert [p.name for p in workspace.state_file.parent.iterdir()] == ["reliance.json"]
    again = RelianceWorkspace(tmp_path / "ws", "workspace")
    assert again.load() is None
    (loaded,) = again.tracker.records("calc.py")
    assert (loaded.id, loaded.all_spans, loaded.text, loaded.model) == (
        record.id, record.all_spans, record.text, "gemma-test"
    )
    assert loaded.accepted_at == pytest.approx(record.accepted_at)
    assert again.state.runs["calc.py::add"].covered == [1]


def test_xdg_location(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    workspace = make_workspace(tmp_path, "xdg")
    accept_add_body(workspace)
    workspace.save({})
    assert workspace.state_file.parent == tmp_path / "state" / "ghostpilot" / "reliance"
    assert workspace.state_file.name.startswith("ws-")
    assert st.find_state(tmp_path / "ws") == workspace.state_file
    assert not (tmp_path / "ws" / ".ghostpilot").exists()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"\xff\xfe\x00", id="not-utf8"),
        pytest.param(b'{"format": "other", "version": 1}', id="wrong-format"),
        pytest.param(
            json.dumps({"format": st.FORMAT, "version": 1, "files": {"a.py": {"basis_hash": "x"}}}).encode(),
            id="bad-basis",
        ),
        pytest.param(
            json.dumps(
                {
                    "format": st.FORMAT,
                    "version": 1,
                    "files": {"a.py": {"basis_hash": "0" * 64, "records": [{"spans": [[5, 2]]}]}},
                }
            ).encode(),
            id="bad-span",
        ),
        pytest.param(json.dumps({"format": st.FORMAT, "version": 99}).encode(), id="future-version"),
    ],
)
def test_corrupt_state_warns_keeps_file_and_starts_fresh(tmp_path, content):
    workspace = make_workspace(tmp_path)
    workspace.state_file.parent.mkdir(parents=True)
    workspace.state_file.write_bytes(content)
    warning = workspace.load()
    assert warning is not None and "corrupt" in warning and "starting fresh" in warning
    assert workspace.tracker.paths() == []
    kept = list(workspace.state_file.parent.glob("reliance.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == content
    # The fresh state saves and loads again.
    accept_add_body(workspace)
    workspace.save({})
    assert RelianceWorkspace(workspace.root, "workspace").load() is None


def test_unreadable_state_is_a_warning(tmp_path):
    workspace = make_workspace(tmp_path)
    workspace.state_file.mkdir(parents=True)  # a directory where the file should be
    warning = workspace.load()
    assert warning is not None and "starting fresh" in warning


@pytest.mark.parametrize(
    ("edit", "expected_start_shift", "kept"),
    [
        pytest.param(lambda s: "# header line\n" + s, len("# header line\n"), True, id="lines-added-before"),
        pytest.param(lambda s: s + "\n\ndef mul(a, b):\n    return a * b\n", 0, True, id="appended"),
        pytest.param(lambda s: s.replace("return a + b", "return b + a"), None, False, id="code-changed"),
        pytest.param(lambda s: "", None, False, id="file-emptied"),
    ],
)
def test_reanchor_after_restart(tmp_path, edit, expected_start_shift, kept):
    workspace = make_workspace(tmp_path)
    start = accept_add_body(workspace).start
    workspace.save({})
    (tmp_path / "ws" / "calc.py").write_text(edit(SOURCE))
    again = RelianceWorkspace(tmp_path / "ws", "workspace")
    again.load()
    report = again.report()
    records = again.tracker.records("calc.py")
    if kept:
        assert [r.start for r in records] == [start + expected_start_shift]
        assert [e.qualname for e in report.entries] == ["add"]
    else:
        assert records == []
        assert report.detached == 1


def test_live_buffer_offsets_are_saved_with_their_text(tmp_path):
    workspace = make_workspace(tmp_path)
    start = accept_add_body(workspace).start
    buffer = "import os\n" + SOURCE
    workspace.tracker.attach("calc.py", buffer)  # unsaved edit before the code
    assert workspace.tracker.records("calc.py")[0].start == start + len("import os\n")
    workspace.save({"calc.py": buffer})
    again = RelianceWorkspace(tmp_path / "ws", "workspace")
    again.load()
    again.report()  # the disk file never got the import: re-anchored to it
    assert again.tracker.records("calc.py")[0].start == SOURCE.index("    return a + b")


def test_save_leaves_no_temporary_files_on_error(tmp_path, monkeypatch):
    workspace = make_workspace(tmp_path)
    accept_add_body(workspace)

    def broken_replace(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        workspace.save({})
    assert list(workspace.state_file.parent.iterdir()) == []
