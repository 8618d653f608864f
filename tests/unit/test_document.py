"""Documents: incremental edits keep text and tree equal to a fresh parse."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsp_server.parsing import syntax
from lsp_server.parsing.document import (
    HISTORY,
    ChangeFailed,
    Document,
    DocumentStore,
    PositionOutOfRange,
    RangeEdit,
    TextChange,
    UnknownDocument,
    clean_text,
    follow_range,
    language_of,
)

EMOJI = "\U0001f600"
URI = "file:///tmp/sample.py"

SAMPLE = "def f(x):\n    return x + 1\n\n\nclass A:\n    pass\n"


def fresh(text: str) -> str:
    return str(syntax.parse_text(text).root_node)


def edit(sl: int, sc: int, el: int, ec: int, text: str) -> RangeEdit:
    return RangeEdit(((sl, sc), (el, ec)), text)


@pytest.mark.parametrize(
    ("start", "edits", "expected"),
    [
        pytest.param(
            SAMPLE, [edit(1, 15, 1, 16, "2")], SAMPLE.replace("x + 1", "x + 2"), id="replace-char"
        ),
        pytest.param("x = 1\n", [edit(1, 0, 1, 0, "y = 2\n")], "x = 1\ny = 2\n", id="append-line"),
        pytest.param("x = 1\ny = 2\n", [edit(0, 0, 1, 0, "")], "y = 2\n", id="delete-line"),
        pytest.param(
            "s = ''\n",
            [edit(0, 5, 0, 5, EMOJI), edit(0, 7, 0, 7, "!")],
            f"s = '{EMOJI}!'\n",
            id="emoji-then-char-after-it-utf16",
        ),
        pytest.param(
            f"s = '{EMOJI}a'\nx = 1\n",
            [edit(0, 5, 0, 7, "")],
            "s = 'a'\nx = 1\n",
            id="delete-emoji-by-utf16-range",
        ),
        pytest.param(
            "a = 1\n",
            [edit(0, 0, 0, 0, "b = 2\n"), edit(1, 4, 1, 5, "9")],
            "b = 2\na = 9\n",
            id="multi-change-in-order",
        ),
        pytest.param(
            "a = 1\n",
            [RangeEdit(None, "def g():\n    pass\n")],
            "def g():\n    pass\n",
            id="full-replace",
        ),
        pytest.param(
            "a = 1\n",
            [RangeEdit(None, "b = 2\n"), edit(0, 0, 0, 1, "c")],
            "c = 2\n",
            id="full-replace-then-range",
        ),
        pytest.param(
            "a = 1\r\nb = 2\r\n",
            [edit(0, 5, 0, 5, "0")],
            "a = 10\r\nb = 2\r\n",
            id="crlf-insert-at-eol",
        ),
        pytest.param("ab\n", [edit(0, 2, 0, 0, "X")], "X\n", id="reversed-range-normalised"),
        pytest.param("ab\n", [edit(0, 1, 0, 99, "Z")], "aZ\n", id="end-clamped-to-line"),
        pytest.param("ab\n", [edit(5, 0, 6, 0, "c = 3\n")], "ab\nc = 3\n", id="past-end-appends"),
    ],
)
def test_apply_edits(start: str, edits: list[RangeEdit], expected: str) -> None:
    document = Document(URI, start)
    for change in edits:
        document.apply(change)
    assert document.text == expected
    assert document.source == expected.encode("utf-8")
    assert document.tree is not None
    assert str(document.tree.root_node) == fresh(expected)
    assert document.tree.root_node.end_byte == len(expected.encode("utf-8"))


@pytest.mark.parametrize(
    ("start", "edits", "changes"),
    [
        pytest.param(
            "a = 1\n",
            [edit(0, 4, 0, 5, "22")],
            [TextChange(4, 5, "22")],
            id="single",
        ),
        pytest.param(
            f"{EMOJI}x\n",
            [edit(0, 2, 0, 3, "yz")],
            [TextChange(1, 2, "yz")],
            id="code-points-not-utf16",
        ),
        pytest.param(
            "abc\n",
            [edit(0, 0, 0, 0, "XY"), edit(0, 5, 0, 5, "!")],
            [TextChange(0, 0, "XY"), TextChange(5, 5, "!")],
            id="second-in-text-after-first",
        ),
        pytest.param("abc\n", [RangeEdit(None, "z")], [TextChange(0, 4, "z")], id="full-document"),
    ],
)
def test_listener_gets_pre_change_offsets(
    start: str, edits: list[RangeEdit], changes: list[TextChange]
) -> None:
    store = DocumentStore()
    seen: list[tuple[str, list[TextChange], int]] = []
    store.add_listener(lambda document, got: seen.append((document.uri, got, document.version)))
    store.open(URI, start, version=1)
    store.change(URI, 7, edits)
    assert seen == [(URI, changes, 7)]


def test_listener_not_called_for_empty_change_list() -> None:
    store = DocumentStore()
    seen: list[object] = []
    store.add_listener(lambda document, got: seen.append(got))
    store.open(URI, "x\n")
    store.change(URI, 2, [])
    assert seen == []
    assert store.get(URI).version == 2


def test_unknown_document_message() -> None:
    store = DocumentStore()
    with pytest.raises(UnknownDocument) as info:
        store.get("file:///nope.py")
    assert str(info.value) == "document is not open: file:///nope.py"
    with pytest.raises(UnknownDocument):
        store.change("file:///nope.py", 1, [edit(0, 0, 0, 0, "x")])


def test_close_forgets_and_notifies() -> None:
    store = DocumentStore()
    closed: list[str] = []
    store.add_close_listener(closed.append)
    store.open(URI, "x\n")
    assert URI in store
    store.close(URI)
    assert URI not in store
    assert closed == [URI]
    assert store.uris() == []


@pytest.mark.parametrize(
    ("encoding", "line", "character", "expected"),
    [
        pytest.param("utf-16", 0, 3, 2, id="utf16"),
        pytest.param("utf-8", 0, 5, 2, id="utf8"),
        pytest.param("utf-32", 0, 2, 2, id="utf32"),
    ],
)
def test_store_encoding_reaches_documents(
    encoding: str, line: int, character: int, expected: int
) -> None:
    store = DocumentStore(encoding=encoding)
    document = store.open(URI, f"a{EMOJI}b\n")
    assert document.offset_at(line, character) == expected
    assert document.position_at(expected) == (line, character)


@pytest.mark.parametrize(
    ("line", "character"),
    [
        pytest.param(0, 5, id="past-line"),
        pytest.param(2, 0, id="past-document"),
    ],
)
def test_document_offset_strict(line: int, character: int) -> None:
    document = Document(URI, f"a{EMOJI}b\n")
    with pytest.raises(PositionOutOfRange):
        document.offset_at(line, character)


def test_non_python_document_has_no_tree() -> None:
    document = Document(URI, "fn main() {}\n", language_id="rust")
    document.apply(edit(0, 0, 0, 0, "// x\n"))
    assert document.tree is None
    assert document.text == "// x\nfn main() {}\n"


def test_char_offset_of_byte() -> None:
    document = Document(URI, f"é{EMOJI}x")
    assert document.byte_offset(2) == 6
    assert document.char_offset_of_byte(6) == 2


# -- property: any sequence of edits leaves the same tree as a fresh parse -------------

PIECES = [
    "", "x", " ", "\n", "\r\n", "    ", "\t", "def f(a, b):\n    ", "return a + b\n", "if x:\n",
    "class C:\n", "(", ")", "[1, 2]", "'s'", '"""doc"""', "# c\n", EMOJI, "é", "日本", "f'{x}'",
    "async def g():\n    await h()\n", "@dec\n", ":", "pass",
]  # fmt: skip


@st.composite
def edit_sequences(draw: st.DrawFn) -> tuple[str, list[RangeEdit]]:
    text = draw(st.lists(st.sampled_from(PIECES), max_size=8).map("".join))
    shadow = text
    edits: list[RangeEdit] = []
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.integers(0, 9)) == 0:
            new = draw(st.lists(st.sampled_from(PIECES), max_size=6).map("".join))
            edits.append(RangeEdit(None, new))
            shadow = new
            continue
        # Pick a range in code points and express it as (line, UTF-16 column).
        a = _not_inside_crlf(shadow, draw(st.integers(0, len(shadow))))
        b = _not_inside_crlf(shadow, draw(st.integers(a, len(shadow))))
        new = draw(st.lists(st.sampled_from(PIECES), max_size=3).map("".join))
        edits.append(RangeEdit((_lsp(shadow, a), _lsp(shadow, b)), new))
        shadow = shadow[:a] + new + shadow[b:]
    return text, edits


def _not_inside_crlf(text: str, offset: int) -> int:
    """Editors never put a position between the CR and LF of a CRLF line ending."""
    if 0 < offset < len(text) and text[offset - 1] == "\r" and text[offset] == "\n":
        return offset - 1
    return offset


def _lsp(text: str, offset: int) -> tuple[int, int]:
    """LSP position of a code-point offset, computed independently of the module."""
    before = text[:offset]
    line = before.count("\n")
    column_text = before.rsplit("\n", 1)[-1]
    return line, len(column_text.encode("utf-16-le")) // 2


def _expected(text: str, edits: list[RangeEdit]) -> str:
    for change in edits:
        if change.range is None:
            text = change.text
            continue
        lines = text.split("\n")
        offsets = []
        for line, column in change.range:
            start = sum(len(row) + 1 for row in lines[:line])
            units = 0
            index = 0
            row = lines[line]
            while units < column:
                units += 2 if ord(row[index]) > 0xFFFF else 1
                index += 1
            offsets.append(start + index)
        text = text[: offsets[0]] + change.text + text[offsets[1] :]
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edit_sequences())
def test_incremental_tree_equals_fresh_parse(case: tuple[str, list[RangeEdit]]) -> None:
    text, edits = case
    store = DocumentStore()
    seen: list[TextChange] = []
    store.add_listener(lambda document, changes: seen.extend(changes))
    store.open(URI, text)
    document = store.change(URI, 2, edits)
    expected = _expected(text, edits)
    assert document.text == expected
    assert document.source == expected.encode("utf-8")
    assert document.tree is not None
    assert str(document.tree.root_node) == fresh(expected)
    assert document.tree.root_node.end_byte == len(document.source)
    # Replaying the listener's changes on the old text gives the new text.
    replay = text
    for change in seen:
        replay = replay[: change.start] + change.new_text + replay[change.end :]
    assert replay == expected


def test_lone_cr_is_a_line_ending() -> None:
    document = Document(URI, "a = 1\rb = 2\r")
    assert document.offset_at(1, 1) == 7
    assert document.line_count == 3
    assert document.line(0) == "a = 1"


@pytest.mark.parametrize(
    ("text", "expected", "replaced"),
    [
        pytest.param("s = '\ud83d'", "s = '\ufffd'", 1, id="lone-high"),
        pytest.param("\ude00x\ud800", "\ufffdx\ufffd", 2, id="lone-low-and-high"),
        pytest.param("\ud83d\ude00", EMOJI, 0, id="pair-joined"),
        pytest.param("\ufffd\ud83d", "\ufffd\ufffd", 1, id="existing-fffd-not-counted"),
        pytest.param("plain", "plain", 0, id="ascii"),
    ],
)
def test_lone_surrogates_become_fffd(text: str, expected: str, replaced: int) -> None:
    assert clean_text(text) == (expected, replaced)
    document = Document(URI, text)
    assert (document.text, document.replaced_surrogates) == (expected, replaced)
    assert document.source == expected.encode("utf-8")


def test_fffd_keeps_utf16_columns_of_a_lone_surrogate() -> None:
    document = Document(URI, "a\ud83db\n")
    # The client counts the lone surrogate as one UTF-16 unit, as U+FFFD is.
    document.apply(edit(0, 2, 0, 2, "!"))
    assert document.text == "a\ufffd!b\n"


@pytest.mark.parametrize(
    ("uri", "language_id", "expected"),
    [
        pytest.param("file:///a/b.py", "", "python", id="empty-py"),
        pytest.param("file:///a/b.PYI", "  ", "python", id="blank-pyi"),
        pytest.param("file:///a/b.rs", "", "rust", id="empty-rs"),
        pytest.param("untitled:Untitled-1", "", "plaintext", id="untitled"),
        pytest.param("file:///a/b.txt", "python", "python", id="client-wins"),
        pytest.param("file:///a/my%20file.py", None, "python", id="quoted-none"),
    ],
)
def test_language_falls_back_to_extension(uri: str, language_id: str | None, expected: str) -> None:
    assert language_of(uri, language_id) == expected
    document = DocumentStore().open(uri, "x = 1\n", language_id=language_id)
    assert document.language_id == expected
    assert (document.tree is not None) == (expected == "python")


def test_change_history_and_follow_range() -> None:
    document = Document(URI, "abc\ndef\n")
    revision = document.revision
    document.apply(edit(0, 0, 0, 0, "XY"))  # before: shifts by 2
    document.apply(edit(2, 0, 2, 0, "tail"))  # after: no shift
    changes = document.changes_since(revision)
    assert changes == [(0, 0, 2), (10, 10, 4)]
    assert follow_range(5, 7, changes) == (7, 9)
    assert follow_range(0, 1, changes) is None  # touched by the insertion at 0
    assert follow_range(7, 10, changes) is None  # touches the insertion at 10
    assert document.changes_since(document.revision) == []
    assert document.changes_since(document.revision + 1) is None


def test_history_is_bounded() -> None:
    document = Document(URI, "")
    for _ in range(HISTORY + 5):
        document.apply(edit(0, 0, 0, 0, "x"))
    assert document.changes_since(0) is None
    assert len(document.changes_since(5) or []) == HISTORY


def test_store_reports_a_failed_change_and_keeps_what_landed() -> None:
    store = DocumentStore()
    seen: list[list[TextChange]] = []
    store.add_listener(lambda document, changes: seen.append(changes))
    store.open(URI, "ab\n")
    with pytest.raises(ChangeFailed) as info:
        store.change(URI, 9, [edit(0, 0, 0, 0, "1"), edit(-1, 0, 0, 0, "2"), edit(0, 0, 0, 0, "3")])
    assert "change 2 of 3" in str(info.value)
    assert store.get(URI).text == "1ab\n" and store.get(URI).version == 9
    assert seen == [[TextChange(0, 0, "1")]]
    assert store.out_of_sync(URI) == str(info.value)
    store.open(URI, "new\n")
    assert store.out_of_sync(URI) is None
    assert store.mark_out_of_sync(URI, "a didChange failed validation")
    assert store.out_of_sync(URI) == "a didChange failed validation"
    assert not store.mark_out_of_sync("file:///not-open.py", "x")


def test_max_bytes_turns_parsing_off_and_on() -> None:
    store = DocumentStore(max_bytes=10)
    document = store.open(URI, "x = 1\ny = 2\n")  # 12 bytes
    assert document.oversized and document.tree is None and not document.parsed
    store.change(URI, 2, [edit(1, 0, 2, 0, "")])
    assert not document.oversized and document.tree is not None
    store.max_bytes = 4
    store.change(URI, 3, [])
    assert document.oversized and document.tree is None


def test_tree_is_parsed_on_first_use_and_reuses_edits() -> None:
    document = Document(URI, SAMPLE)
    job = document.parse_job()
    assert job is not None
    revision, parse = job
    tree = parse()  # as on a thread, while two edits land
    document.apply(edit(0, 0, 0, 0, "import os\n"))
    document.apply(edit(2, 4, 2, 10, "yield"))
    assert document.adopt_tree(tree, revision)
    assert str(document.tree.root_node) == fresh(document.text)
    assert document.parse_job() is None  # fresh now
    document.apply(edit(0, 0, 0, 0, "#\n"))
    assert document.parse_job() is not None


def test_tree_from_before_a_whole_document_change_is_not_adopted() -> None:
    document = Document(URI, SAMPLE)
    job = document.parse_job()
    assert job is not None
    document.apply(RangeEdit(None, "x = 1\n"))
    assert not document.adopt_tree(job[1](), job[0])
    assert str(document.tree.root_node) == fresh("x = 1\n")


def test_a_failing_listener_costs_no_edit_and_no_other_listener() -> None:
    store = DocumentStore()
    failures: list[str] = []
    heard: list[str] = []
    store.listener_failed = lambda listener, error: failures.append(str(error))

    def broken(*_: object) -> None:
        raise RuntimeError("feature bug")

    for add in (store.add_open_listener, store.add_listener, store.add_close_listener):
        add(broken)
    store.add_open_listener(lambda document: heard.append("open"))
    store.add_listener(lambda document, changes: heard.append("change"))
    store.add_close_listener(lambda uri: heard.append("close"))
    uri = "file:///tmp/listeners.py"
    store.open(uri, "a\n", 1)
    store.change(uri, 2, [RangeEdit(((0, 1), (0, 1)), "b"), RangeEdit(((1, 0), (1, 0)), "c")])
    assert store.get(uri).text == "ab\nc" and store.get(uri).version == 2
    store.close(uri)
    assert heard == ["open", "change", "close"]
    assert failures == ["feature bug"] * 3


def _naive_common_ends(old: str, new: str) -> tuple[int, int]:
    prefix, limit = 0, min(len(old), len(new))
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    return prefix, suffix


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab\n", max_size=600), st.text(alphabet="ab\n", max_size=40),
       st.integers(0, 600), st.integers(0, 600))
def test_common_ends_is_the_character_by_character_answer(base: str, piece: str, at: int, cut: int) -> None:
    from lsp_server.parsing.document import common_ends

    at = min(at, len(base))
    new = base[:at] + piece + base[min(len(base), at + cut % 50):]
    assert common_ends(base, new) == _naive_common_ends(base, new)
    assert common_ends(new, base) == _naive_common_ends(new, base)


def test_common_ends_of_a_large_file_edited_in_the_middle() -> None:
    import argparse
    import inspect

    from lsp_server.parsing.document import common_ends

    text = inspect.getsource(argparse)
    middle = len(text) // 2
    for new in (text[:middle] + "x" + text[middle:], text[:middle] + text[middle + 7:], text, text + "\n", ""):
        assert common_ends(text, new) == _naive_common_ends(text, new)
