"""AI-written spans following edits: table tests and a property test against a
per-character reference model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsp_server.parsing.document import TextChange
from lsp_server.reliance import spans as sp
from lsp_server.reliance.records import Tracker, new_record


@pytest.mark.parametrize(
    ("spans", "change", "expected"),
    [
        pytest.param([(10, 20)], TextChange(0, 0, "abc"), [(13, 23)], id="insert-before-shifts"),
        pytest.param([(10, 20)], TextChange(10, 10, "ab"), [(12, 22)], id="insert-at-start-shifts"),
        pytest.param([(10, 20)], TextChange(20, 20, "ab"), [(10, 20)], id="insert-at-end-outside"),
        pytest.param([(10, 20)], TextChange(25, 30, ""), [(10, 20)], id="delete-after-untouched"),
        pytest.param(
            [(10, 20)], TextChange(15, 15, "xyz"), [(10, 15), (18, 23)], id="insert-inside-splits"
        ),
        pytest.param([(10, 20)], TextChange(12, 14, ""), [(10, 18)], id="delete-inside-shrinks"),
        pytest.param([(10, 20)], TextChange(5, 15, "q"), [(6, 11)], id="delete-over-start"),
        pytest.param([(10, 20)], TextChange(15, 30, ""), [(10, 15)], id="delete-over-end"),
        pytest.param([(10, 20)], TextChange(5, 25, "new"), [], id="delete-all"),
        pytest.param(
            [(0, 5), (8, 10)], TextChange(5, 8, ""), [(0, 7)], id="delete-gap-merges"
        ),
    ],
)
def test_follow(spans, change, expected):
    assert sp.follow(spans, change) == expected


@pytest.mark.parametrize(
    ("old", "start", "end", "new"),
    [
        pytest.param("a\nb\nc\n" * 30, 0, 180, "a\nb\nX\n" * 30, id="whole-buffer-reformat"),
        pytest.param("def f():\n    return 1\n" * 5, 0, 110, "", id="delete-everything"),
        pytest.param("x = 1\n" * 20, 6, 60, "y = 2\n" * 3 + "x = 1\n" * 6, id="partial"),
        pytest.param("same text " * 10, 0, 100, "same text " * 10, id="no-op"),
    ],
)
def test_refine_reproduces_the_same_text(old, start, end, new):
    direct = old[:start] + new + old[end:]
    text = old
    for change in sp.refine(old, TextChange(start, end, new)):
        text = text[: change.start] + change.new_text + text[change.end :]
    assert text == direct


def test_refine_keeps_unchanged_lines_attributed():
    old = "".join(f"line {i}\n" for i in range(20))
    new = old.replace("line 7\n", "line seven\n")
    spans = [(0, len(old))]
    for change in sp.refine(old, TextChange(0, len(old), new)):
        spans = sp.follow(spans, change)
    # Every character but the changed ones is still AI-written.
    assert sp.size(spans) == len(old) - len("7")


# -- property test --------------------------------------------------------------------

ALPHABET = "ab \n\té𝄞"
operation = st.one_of(
    st.tuples(
        st.just("accept"), st.floats(0, 1), st.text(ALPHABET, min_size=1, max_size=12)
    ),
    st.tuples(
        st.just("edit"),
        st.floats(0, 1),
        st.floats(0, 1),
        st.text(ALPHABET, max_size=8),
    ),
)


def reference_spans(labels: list[str | None], record_id: str) -> list[tuple[int, int]]:
    return sp.normalize((i, i + 1) for i, label in enumerate(labels) if label == record_id)


def apply_operations(operations, *, refine: bool):
    """Run ``operations`` on a tracker and on the reference; yield both after each step."""
    text = "def f():\n    pass\n"
    labels: list[str | None] = [None] * len(text)
    tracker = Tracker()
    for op in operations:
        if op[0] == "accept":
            _, where, inserted = op
            pos = round(where * len(text))
            change = TextChange(pos, pos, inserted)
            tracker.apply("f.py", [change], refine=refine)
            text = text[:pos] + inserted + text[pos:]
            record = new_record(pos, inserted, "test-model")
            tracker.add("f.py", record, text)
            labels[pos:pos] = [record.id] * len(inserted)
        else:
            _, a, b, new_text = op
            start, end = sorted((round(a * len(text)), round(b * len(text))))
            tracker.apply("f.py", [TextChange(start, end, new_text)], refine=refine)
            text = text[:start] + new_text + text[end:]
            labels[start:end] = [None] * len(new_text)
        yield tracker, text, labels


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, min_size=1, max_size=25))
def test_tracked_ranges_follow_random_edits_exactly(operations):
    for tracker, _text, labels in apply_operations(operations, refine=False):
        live = {record.id: record for record in tracker.records("f.py")}
        expected_ids = {label for label in labels if label is not None}
        assert set(live) == expected_ids  # deleted code removes its record
        for record_id, record in live.items():
            assert record.all_spans == reference_spans(labels, record_id)
            assert record.ai_chars == labels.count(record_id)
            assert record.start == labels.index(record_id)
            assert record.end == len(labels) - labels[::-1].index(record_id)


@settings(max_examples=150, deadline=None)
@given(st.lists(operation, min_size=1, max_size=25))
def test_refined_tracking_keeps_only_ai_characters(operations):
    for tracker, text, _labels in apply_operations(operations, refine=True):
        for record in tracker.records("f.py"):
            kept = "".join(text[a:b] for a, b in record.all_spans)
            # What is still attributed to the model is a subsequence of what it wrote.
            remaining = iter(record.text)
            assert all(char in remaining for char in kept)
