"""Region trees: a request parses only the top-level statements its edits touched."""

from __future__ import annotations

import argparse
import inspect
import random
from collections.abc import Iterator
from dataclasses import replace

import pytest

from lsp_server.engine import plan
from lsp_server.evaluation import typing_replay
from lsp_server.evaluation.latency import utf16_position
from lsp_server.parsing import syntax
from lsp_server.parsing.document import Document, RangeEdit, _widen
from lsp_server.parsing.region import RegionTree, plan_region
from lsp_server.prompts.context import build_context, outline
from lsp_server.prompts.snapshot import Snapshot

MODULE = '''import os
import sys


def first(x):
    """First."""
    return x + 1


class Box:
    """A box."""

    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


def second(items):
    total = 0
    for item in items:
        total += item
    return total


def third(name):
    return os.path.join(sys.prefix, name)
'''


def _opened(text: str = MODULE) -> Document:
    document = Document(uri="file:///m.py", text=text)
    assert document.tree is not None  # the first whole parse: the base of regions
    return document


def _insert(document: Document, text: str, anchor: str, new: str) -> str:
    """Insert ``new`` right after the first ``anchor`` in ``text``; the new text."""
    offset = text.index(anchor) + len(anchor)
    position = utf16_position(text, offset)
    document.apply(RangeEdit((position, position), new))
    return text[:offset] + new + text[offset:]


def _typed(
    document: Document, text: str, edits: list[typing_replay.Edit]
) -> Iterator[tuple[typing_replay.Edit, str]]:
    """Apply ``edits`` (a typing replay of ``text``) to ``document`` one by one, as an
    editor sends them; yields each edit with the text after it."""
    current = text
    for edit in edits:
        start, end = utf16_position(current, edit.start), utf16_position(current, edit.end)
        document.apply(RangeEdit((start, end), edit.new_text))
        current = typing_replay.apply(current, edit)
        yield edit, current


def _retyped(text: str, body: typing_replay.FunctionBody, keystrokes: int) -> list[typing_replay.Edit]:
    """``body`` deleted and typed back, its first ``keystrokes`` keystrokes."""
    edits = [typing_replay.Edit(body.start, body.end, "", request=True, kind="delete")]
    position = body.start
    for piece, request in typing_replay.keystrokes(text[body.start:body.end])[:keystrokes]:
        edits.append(typing_replay.Edit(position, position, piece, request=request))
        position += len(piece)
    return edits


def _plans(document: Document, cursor: int) -> tuple[object, object]:
    snapshot = Snapshot.of(document)
    whole = replace(snapshot, tree=syntax.parse(document.source))
    ours = plan(snapshot, cursor, explicit=False)
    theirs = plan(whole, cursor, explicit=False)
    return (ours.mode, ours.start, ours.context), (theirs.mode, theirs.start, theirs.context)


def test_typing_in_a_function_parses_only_that_function_and_plans_the_same() -> None:
    document = _opened()
    text = _insert(document, MODULE, "    for item in items:\n        total += item\n",
                   "        if total > 10:\n            break\n")
    tree = document.request_tree()
    assert isinstance(tree, RegionTree)
    inner = tree.inner.root_node
    # Only second() was parsed anew: from its def to third's.
    assert text[:inner.start_byte].endswith("\n\n\n")
    assert text[inner.start_byte:].startswith("def second(items):")
    assert inner.end_byte <= text.index("def third")
    cursor = text.index("break\n") + len("break")
    ours, theirs = _plans(document, cursor)
    assert ours == theirs


def test_nodes_after_the_region_keep_their_offsets() -> None:
    document = _opened()
    text = _insert(document, MODULE, "    total = 0\n", "    count = 0\n")
    tree = document.request_tree()
    assert isinstance(tree, RegionTree)
    names = [document.source[n.start_byte:n.end_byte].decode()
             for n in tree.root_node.named_children if n.type == "function_definition"]
    assert [name.split("(")[0] for name in names] == ["def first", "def second", "def third"]
    third = tree.root_node.descendant_for_byte_range(text.index("sys.prefix"), text.index("sys.prefix") + 3)
    assert third is not None and document.source[third.start_byte:third.end_byte] == b"sys"


def test_an_unclosed_triple_quote_stays_in_its_function() -> None:
    """The string runs to the end of the region, not of the file: every definition
    keeps its place in the outline (the prompt's head), and the cursor is in a string."""
    text = MODULE + "".join(f"\n\ndef filler_{n}(x):\n    return x * {n}\n" for n in range(4))
    document = _opened(text)
    text = _insert(document, text, "    total = 0\n", '    """Sum')
    cursor = text.index('"""Sum') + len('"""Sum')
    tree = document.request_tree()
    assert isinstance(tree, RegionTree)
    assert text[tree.inner.root_node.start_byte:].startswith("def second(items):")
    entries = outline(tree, document.source).splitlines()
    assert [entry.split("(")[0].split(":")[0] for entry in entries] == [
        "def first", "class Box", "def second", "def third",
        "def filler_0", "def filler_1", "def filler_2", "def filler_3"]
    assert plan(Snapshot.of(document), cursor, explicit=False).mode == "none"  # in a string


def test_half_typed_code_that_parses_as_one_error_takes_the_next_statement() -> None:
    document = _opened()
    text = _insert(document, MODULE, "    total = 0\n", "    if isinstance(items, (list,")
    cursor = text.index("(list,") + len("(list,")
    tree = document.request_tree()
    assert tree is not None
    context = build_context(tree, document.source, document.byte_offset(cursor))
    assert context.in_function and context.current.startswith("def second(items):")
    assert context.imports == "import os\nimport sys"


def test_edits_far_apart_parse_the_whole_file() -> None:
    text = MODULE + "".join(f"\n\ndef filler_{n}(x):\n    return x * {n}\n" for n in range(40))
    document = _opened(text)
    text = _insert(document, text, "    return x + 1\n", "    # first\n")
    assert isinstance(document.request_tree(), RegionTree)
    _insert(document, text, "return x * 39\n", "    # last\n")
    assert plan_region(document._base, document.source, document._dirty) is None  # type: ignore[arg-type]
    assert not isinstance(document.request_tree(), RegionTree)  # the whole file, parsed
    assert document.region() is None  # and the base is that parse: nothing dirty


def test_a_whole_document_change_drops_the_base() -> None:
    document = _opened()
    document.apply(RangeEdit(None, "def f():\n    return 1\n"))
    tree = document.request_tree()
    assert tree is not None and not isinstance(tree, RegionTree)
    assert document.source[tree.root_node.start_byte:].startswith(b"def f")


@pytest.mark.parametrize(("dirty", "edit", "expected"), [
    (None, (10, 10, 13), (10, 13)),      # the first edit: what it wrote
    ((10, 13), (13, 13, 14), (10, 14)),  # typing on
    ((10, 14), (2, 2, 5), (2, 17)),      # an insertion before: shifts and widens
    ((10, 14), (30, 32, 30), (10, 30)),  # a deletion after
    ((10, 14), (12, 20, 12), (10, 12)),  # a deletion over its end
])  # fmt: skip
def test_widen(dirty: tuple[int, int] | None, edit: tuple[int, int, int],
               expected: tuple[int, int]) -> None:
    start, old_end, new_end = edit
    found = _widen(dirty, {"start_byte": start, "old_end_byte": old_end, "new_end_byte": new_end})
    assert found == expected


def test_typing_replay_on_a_real_module_plans_as_a_whole_parse_does() -> None:
    """argparse's bodies typed back keystroke by keystroke: wherever the whole parse
    keeps the structure (its tree has no error), the region's plan is the same; and
    the region is what most requests use."""
    text = inspect.getsource(argparse)
    document = _opened(text)
    edits = typing_replay.session(text, functions=2, max_keystrokes=160)
    regions, compared = 0, 0
    for edit, current in _typed(document, text, edits):
        if not edit.request or edit.kind != "type":
            continue
        regions += isinstance(document.request_tree(), RegionTree)
        if syntax.parse(document.source).root_node.has_error:
            continue
        compared += 1
        ours, theirs = _plans(document, edit.start + len(edit.new_text))
        assert ours == theirs, current[edit.start - 80:edit.start + len(edit.new_text)]
    assert compared >= 10
    assert regions >= 0.8 * sum(e.request and e.kind == "type" for e in edits)


CODE_PIECES = ("def ", "class ", "    ", "\t", "\n", '"""', "'''", '"', "(", ")", "[", "]", ":",
               "\\\n", "#", "if x:", "return ", "self.", "é", "\U0001f600", "\r\n", "lambda: ",
               "@dec\n", "async def f():\n", 'f"{x', "x = [\n", "\n\n\nclass K:\n    x = 1\n")


@pytest.mark.parametrize("seed", range(12))
def test_random_edits_on_real_modules_plan_as_a_whole_parse(seed: int) -> None:
    """Hostile random edits (every LSP line end, surrogates, ranges past the end, code
    pieces that open strings, brackets and blocks) on real stdlib modules: the document
    stays equal to the reference model, no request's planning raises, and wherever the
    whole parse keeps the structure the region's plan is the whole parse's. (1,500 seeds
    of 60 edits ran clean when this was written.)"""
    import ftplib
    import json.decoder
    import shlex
    import textwrap

    from tests import lsp_text_model as model

    rng = random.Random(seed)
    text = inspect.getsource(rng.choice([textwrap, shlex, ftplib, json.decoder]))
    document = _opened(text)
    for _ in range(60):
        if rng.random() < 0.5:
            change = model.random_change(rng, text)
        else:  # code typed at a real position
            line, column = model.position_of(text, rng.randint(0, len(text)))
            piece = "".join(rng.choice(CODE_PIECES) for _ in range(rng.randint(1, 4)))
            change = model.Change(((line, column), (line, column)), piece)
        document.apply(RangeEdit(change.range, change.text))
        text = model.apply(text, change)
        assert document.text == text
        cursor = rng.randint(0, len(text))
        ours = plan(Snapshot.of(document), cursor, explicit=rng.random() < 0.2)
        assert ours.mode in ("none", "line", "block")
        if not syntax.parse(document.source).root_node.has_error:
            mine, theirs = _plans(document, cursor)
            assert mine == theirs


def test_typing_in_a_large_class_parses_the_region_incrementally_as_a_fresh_parse_would() -> None:
    """argparse's methods (its classes run to 1,100 lines) typed back: after the first
    request in a method, each request's region is parsed from the last one's tree, and
    that tree is the one a fresh parse of the region makes."""
    from lsp_server.parsing.region import region_tree

    text = inspect.getsource(argparse)
    document = _opened(text)
    edits = typing_replay.session(text, functions=3, max_keystrokes=240)
    regions, incremental = 0, 0
    for edit, _ in _typed(document, text, edits):
        if not edit.request:
            continue
        found = document.region()
        if found is None:
            continue
        regions += 1
        if not found.incremental:
            continue
        incremental += 1
        assert document._base is not None and document._dirty is not None
        fresh = region_tree(document._base.copy(), document.source, document._dirty)
        assert fresh is not None and not fresh.incremental
        assert str(found.inner.root_node) == str(fresh.inner.root_node)
        assert [c.type for c in found.root_node.children] == [c.type for c in fresh.root_node.children]
    assert regions >= 20
    assert incremental >= 0.8 * regions


def test_the_kept_region_follows_edits_before_it_and_is_dropped_by_one_across_its_start() -> None:
    document = _opened()
    text = _insert(document, MODULE, "    def get(self):\n        return self.value", " + 1")
    assert document.region() is not None and document._kept is not None
    start = document._kept.start_byte
    assert document.source[start:].startswith(b"class Box:")
    assert document.tree is not None  # a whole parse: the new base, nothing dirty
    text = _insert(document, text, "import os", "\nimport re")  # before the region: it moves
    assert document._kept is not None and document._kept.start_byte == start + len("\nimport re")
    assert document.source[document._kept.start_byte:].startswith(b"class Box:")
    assert document.tree is not None
    text = _insert(document, text, "    def get(self):\n        return self.value + 1", "0")
    found = document.region()
    assert found is not None and found.incremental
    assert "(return_statement (binary_operator" in str(found.inner.root_node)
    position = utf16_position(text, text.index("class Box:") - 2)
    end = utf16_position(text, text.index("class Box:") + 3)
    document.apply(RangeEdit((position, end), ""))  # across the region's first byte
    assert document._kept is None


def test_a_module_that_is_one_large_class_gets_its_region_off_the_loop_then_incrementally() -> None:
    """ftplib is one class over half of the file: the first request's region there is
    too large for the event loop (``region`` gives none and ``region_job`` gives its
    parse, for a thread); once adopted, each later request's region is parsed from the
    last one, and is what a fresh parse of the region makes."""
    import ftplib

    from lsp_server.parsing.region import MAX_SHARE, region_tree

    text = inspect.getsource(ftplib)
    document = _opened(text)
    assert document.tree is not None
    biggest = max(document.tree.root_node.children, key=lambda n: n.end_byte - n.start_byte)
    assert biggest.type == "class_definition"
    assert biggest.end_byte - biggest.start_byte > MAX_SHARE * len(document.source)
    # The class's last method: a region narrowed to the members up to the edits is the
    # whole class there (see test_typing_in_a_method_parses_the_class_up_to_it below).
    last = [body for body in typing_replay.function_bodies(text)
            if biggest.start_byte <= len(text[:body.start].encode()) < biggest.end_byte][-1]
    edits = _retyped(text, last, 200)
    jobs, incremental, requests = 0, 0, 0
    for edit, _ in _typed(document, text, edits):
        if not edit.request:
            continue
        requests += 1
        found = document.region()
        if found is None:
            job = document.region_job()
            if job is None:
                continue
            jobs += 1
            revision, parse = job
            made = parse()
            assert made is not None and not made.incremental
            document.adopt_region(made, revision)
            assert document.region() is made
            continue
        if not found.incremental:
            continue
        incremental += 1
        assert document._base is not None and document._dirty is not None
        fresh = region_tree(document._base.copy(), document.source, document._dirty, large=True)
        assert fresh is not None and not fresh.incremental
        assert str(found.inner.root_node) == str(fresh.inner.root_node)
        assert [c.type for c in found.root_node.children] == [c.type for c in fresh.root_node.children]
    assert jobs == 1  # once for the method typed
    assert incremental >= 0.8 * requests


def test_a_large_region_adopted_after_later_edits_is_told_of_them() -> None:
    """The thread's region was made for an older revision: it is not the region of the
    current text, but its tree (told of the edits since) is the next parse's old tree."""
    body = "".join(f"    def method_{n}(self, x):\n        return x * {n}\n\n" for n in range(60))
    text = "import os\n\n\nclass Big:\n" + body + "\ndef tail():\n    return 1\n"
    document = _opened(text)
    text = _insert(document, text, "return x * 30", " + 1")
    assert document.region() is None  # over half of the file, nothing to parse from
    job = document.region_job()
    assert job is not None
    revision, parse = job
    made = parse()
    text = _insert(document, text, "return x * 30 + 1", "0")  # typed while it parsed
    assert made is not None
    document.adopt_region(made, revision)
    assert document.revision == revision + 1
    found = document.region()
    assert found is not None and found.incremental
    assert b"return x * 30 + 10" in document.source[found.inner.root_node.start_byte:found.inner.root_node.end_byte]
    whole = syntax.parse(document.source)
    assert str(found.inner.root_node.children[0]) == str(whole.root_node.children[1])


def test_edits_in_two_statements_leave_a_large_region_to_the_whole_parse() -> None:
    body = "".join(f"    def method_{n}(self, x):\n        return x * {n}\n\n" for n in range(60))
    text = "import os\n\n\nclass Big:\n" + body + "\ndef tail():\n    return 1\n"
    document = _opened(text)
    text = _insert(document, text, "return x * 30", " + 1")
    _insert(document, text, "    return 1", " + 2")
    assert document.region() is None and document.region_job() is None


def test_the_kept_region_follows_edits_to_its_end() -> None:
    document = _opened()
    text = _insert(document, MODULE, "    def get(self):\n        return self.value", " + 1")
    assert document.region() is not None and document._kept is not None
    end = document._kept.end_byte
    assert document.source[:end].endswith(b"return self.value + 1\n\n\n")
    text = _insert(document, text, "return self.value + 1", "00")  # inside: the end moves
    assert document._kept is not None and document._kept.end_byte == end + 2
    _insert(document, text, "return total", " + 0")  # after it: the end stays
    assert document._kept is not None and document._kept.end_byte == end + 2


def test_a_request_in_a_large_class_parses_its_region_on_a_thread_not_the_whole_file() -> None:
    """What a completion request does (``parsed_cursor``, ``whole=False``): in a module
    that is one large class, the first request's region comes from a thread, the
    request after the next keystroke parses it incrementally, and neither leaves the
    whole file parsed (its tree stays stale)."""
    import asyncio

    from lsp_server.features._common import parsed_cursor
    from lsp_server.parsing.document import DocumentStore

    body = "".join(f"    def method_{n}(self, x):\n        return x * {n}\n\n" for n in range(60))
    text = "import os\n\n\nclass Big:\n" + body + "\ndef tail():\n    return 1\n"
    store = DocumentStore()
    document = store.open("file:///big.py", text, 1, "python")

    async def request(cursor: int) -> None:
        assert await parsed_cursor(store, document, cursor, whole=False) is not None

    asyncio.run(parsed_cursor(store, document, 0))  # the first whole parse
    anchor = text.index("return x * 30") + len("return x * 30")
    position = utf16_position(text, anchor)
    store.change(document.uri, 2, [RangeEdit((position, position), " + 1")])
    asyncio.run(request(anchor + 4))
    first = document.request_tree()
    assert isinstance(first, RegionTree) and not first.incremental
    assert document._stale  # the whole file was not parsed
    position = (position[0], position[1] + 4)
    store.change(document.uri, 3, [RangeEdit((position, position), "0")])
    asyncio.run(request(anchor + 5))
    second = document.request_tree()
    assert isinstance(second, RegionTree) and second.incremental
    assert document._stale


def test_typing_in_a_method_parses_the_class_up_to_it() -> None:
    """ftplib's FTP class (700 lines): typing in one of its first methods parses the class
    from its line to the end of that method; the members after it come from the outer
    tree into the class header, and every plan is the whole parse's wherever that has no
    error. Later requests parse the narrowed region from the last one's tree, as a fresh
    parse of it would."""
    import ftplib

    from lsp_server.parsing.region import members_after, region_tree
    from lsp_server.prompts.context import enclosing_definitions

    text = inspect.getsource(ftplib)
    document = _opened(text)
    assert document.tree is not None
    klass = max(document.tree.root_node.children, key=lambda n: n.end_byte - n.start_byte)
    assert klass.type == "class_definition"
    methods = [body for body in typing_replay.function_bodies(text)
               if klass.start_byte <= len(text[:body.start].encode()) < klass.end_byte]
    edits = _retyped(text, methods[2], 120)
    narrowed, compared, incremental, in_class = 0, 0, 0, 0
    for edit, current in _typed(document, text, edits):
        if not edit.request:
            continue
        tree = document.request_tree()
        assert isinstance(tree, RegionTree)
        cursor = len(current[: edit.start + len(edit.new_text)].encode())
        end = tree.inner.included_ranges[0].end_byte
        assert tree.tail is not None and cursor < end <= tree.tail.start_byte
        assert not document.source[end:tree.tail.start_byte].strip()
        narrowed += 1
        if tree.incremental:
            incremental += 1
            assert document._base is not None and document._dirty is not None
            fresh = region_tree(document._base.copy(), document.source, document._dirty)
            assert fresh is not None and str(fresh.inner.root_node) == str(tree.inner.root_node)
        chain = enclosing_definitions(tree, document.source, cursor)
        classes = [node for node in chain if node.type == "class_definition"]
        if classes:  # the prompt code's class: the region's parse of it, with the rest after
            after = [n.start_byte for n in members_after(tree, classes[0])]
            whole_class = syntax.parse(document.source).root_node.descendant_for_byte_range(klass.start_byte, klass.start_byte)
            while whole_class is not None and whole_class.type != "class_definition":
                whole_class = whole_class.parent
            assert whole_class is not None
            body = whole_class.child_by_field_name("body")
            assert body is not None
            assert after == [n.start_byte for n in body.children if n.start_byte >= end]
            in_class += 1
        if syntax.parse(document.source).root_node.has_error:
            continue
        compared += 1
        ours, theirs = _plans(document, edit.start + len(edit.new_text))
        assert ours == theirs
        assert f"def {methods[6].name}(" in ours[2].scope_header  # a member after the region
    assert narrowed >= 20 and compared >= 10 and incremental >= 0.8 * narrowed and in_class >= 0.8 * narrowed


def test_a_region_is_not_narrowed_where_its_class_is_small_or_its_line_was_edited() -> None:
    from lsp_server.parsing.region import NARROW_MIN_BYTES, members_after, region_tree

    methods = "".join(f"    def method_{n}(self, x):\n        return x * {n}\n\n" for n in range(3))
    filler = "".join(f"\n\ndef filler_{n}(x):\n    return x * {n}\n" for n in range(8))
    small = "import os\n\n\nclass Small:\n" + methods + "\ndef tail():\n    return 1\n" + filler
    assert len(small) < NARROW_MIN_BYTES
    document = _opened(small)
    text = _insert(document, small, "return x * 0", " + 1")
    tree = document.request_tree()
    assert isinstance(tree, RegionTree) and tree.tail is None
    assert text[tree.inner.included_ranges[0].start_byte:].startswith("class Small")
    assert tree.inner.included_ranges[0].end_byte == text.index("def tail")
    klass = tree.root_node.named_children[1]
    assert klass.type == "class_definition" and list(members_after(tree, klass)) == []

    large = "import os\n\n\nclass Large(object):\n" + "".join(
        f"    def method_{n}(self, x):\n        return x * {n}\n\n" for n in range(200)) + "\ndef tail():\n    return 1\n"
    document = _opened(large)
    _insert(document, large, "class Large", "r")
    assert document._base is not None and document._dirty is not None
    tree = region_tree(document._base.copy(), document.source, document._dirty, large=True)
    assert tree is not None and tree.tail is None  # the class line: no narrowing
    document = _opened(large)
    text = _insert(document, large, "return x * 5\n", "        y = 1\n")
    tree = document.request_tree()
    assert isinstance(tree, RegionTree) and tree.tail is not None
    # Up to the end of method_5 and one whole member more (see the test below).
    assert tree.inner.included_ranges[0].end_byte == len(text[: text.index("    def method_7")].encode())
    assert document.source[tree.tail.start_byte:].startswith(b"def method_7")
    klass = next(node for node in tree.root_node.named_children if node.type == "class_definition")
    after = list(members_after(tree, klass))
    assert len(after) == 193 and document.source[after[-1].start_byte:].startswith(b"def method_199")


LARGE_CLASS = "import os\n\n\nclass Large(object):\n" + "".join(
    f"    def method_{n}(self, x):\n        return x * {n}\n\n" for n in range(200)) + "\ndef tail():\n    return 1\n" + "".join(
    f"\n\ndef f{n}(x):\n    return x\n" for n in range(900))


@pytest.mark.parametrize("typed", [
    "        # note", "        # note\n", "        y = 1  # c", "        z = 2 \\\n", "        z = 2 \\\n            + 3",
    '        """doc"""\n        # c\n        ', "        if x:\n            # later\n", "\n    # a comment between methods\n",
])
def test_what_ends_a_method_being_typed_plans_as_in_the_whole_file(typed: str) -> None:
    """A comment or a line continuation at the end of tree-sitter's input belongs to the
    module, not to the block it ends: the narrowed region takes one whole member after
    the edited one, so the cursor's method keeps what the user just typed at its end."""
    document = _opened(LARGE_CLASS)
    text = _insert(document, LARGE_CLASS, "return x * 5\n", typed)
    tree = document.request_tree()
    assert isinstance(tree, RegionTree) and tree.tail is not None
    cursor = text.index("return x * 5\n") + len("return x * 5\n") + len(typed)
    assert not syntax.parse(document.source).root_node.has_error
    ours, theirs = _plans(document, cursor)
    assert ours == theirs


def test_edits_in_two_statements_ask_for_a_whole_parse_that_makes_the_next_region_small() -> None:
    """The user typed in one function, then in a method of a large class: the region
    spans both, until a whole parse (started after the request, off the loop) becomes
    the base; the next keystroke's region is the method's class up to the method."""
    import asyncio

    from lsp_server.features._common import parse_off_the_loop

    document = _opened(LARGE_CLASS)
    text = _insert(document, LARGE_CLASS, "def tail():\n    return 1", " + 1")
    assert isinstance(document.request_tree(), RegionTree)
    assert not document.wants_whole_parse()  # one statement: nothing to gain
    text = _insert(document, text, "return x * 5\n", "        y = 1\n")
    tree = document.request_tree()
    assert isinstance(tree, RegionTree) and tree.tail is None  # the class and tail()
    assert document.wants_whole_parse()
    asyncio.run(parse_off_the_loop(document, whole=True))
    assert document._dirty is None and not document.wants_whole_parse()
    text = _insert(document, text, "        y = 1\n", "        z = 2\n")
    tree = document.request_tree()
    assert isinstance(tree, RegionTree) and tree.tail is not None and not document.wants_whole_parse()
    assert document.source[tree.tail.start_byte:].startswith(b"def method_7")


def test_a_region_with_an_error_asks_for_no_whole_parse() -> None:
    """A whole parse of text with an error may not become the base (a top-level ERROR
    node); none is started for it."""
    document = _opened(LARGE_CLASS)
    text = _insert(document, LARGE_CLASS, "def tail():\n    return 1", " + 1")
    _insert(document, text, "return x * 5\n", "        y = (1,\n")
    tree = document.request_tree()
    assert isinstance(tree, RegionTree) and tree.inner.root_node.has_error
    assert not document.wants_whole_parse()
