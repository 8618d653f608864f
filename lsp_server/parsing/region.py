"""A request's tree without reparsing the whole file.

tree-sitter's incremental reparse is fast while the code around an edit stays well
formed. While a body is being typed it rarely is, and then the reparse of a large module
can cost as much as a full parse, or more: 40 ms a keystroke on tkinter/__init__.py
(4,600 lines) while typing one of its functions, and 50-200 ms after an unclosed
``\"\"\"``, which makes the rest of the file a string. A completion waits for it.

Here only the top-level statements that the pending edits touched are parsed, with
tree-sitter's included ranges (so every node keeps its offsets in the whole file), and
the old tree, told of the edits (``Tree.edit``) but not reparsed, stands for the rest:
its nodes outside the edited statements are the same text at the right offsets. The
cost follows the size of the edited statement, not of the file; and where the last
request's region started at the same statement, its tree (told of the edits since) makes
the parse incremental, so typing in a method of a 1,000-line class costs a fraction of a
millisecond, not a parse of the class. An unclosed bracket or string stays inside its
statement instead of swallowing the file, which also keeps the prompt's head (imports,
outline) in place while the user types. Inside a large class the region ends after the
edited members (:func:`narrow_to_members`): the members after them are the old tree's,
and the class header gets them from :func:`members_after`.

:class:`RegionTree` has the part of tree-sitter's ``Tree`` and ``Node`` that the prompt
code reads from a root: ``root_node`` with ``children``, ``named_children``,
``has_error`` and ``descendant_for_byte_range``; every node below the root is a real
tree-sitter node.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tree_sitter import Node, Point, Range, Tree

from lsp_server.parsing import syntax

# Above this share of the file, the edited statements' first parse (with no earlier
# region at their statement to parse from incrementally) costs about what parsing the
# whole file does; :func:`region_tree` leaves it to a caller that can run it off the event
# loop (``large=True``). Later parses there are incremental and cheap at any size: a
# module that is one large class is the usual case.
MAX_SHARE = 0.5
# Regions smaller than this are parsed whole: narrowing a small class to its edited
# members saves less than it costs to find them.
NARROW_MIN_BYTES = 4096

class RegionRoot:
    """The module node of a :class:`RegionTree`: the outer tree's top-level statements
    with the edited ones replaced by those of the region's own parse."""

    type = "module"
    is_error = False
    is_missing = False
    parent = None

    def __init__(self, outer: Node, inner: Node, before: list[Node], after: list[Node]) -> None:
        self._outer, self._inner = outer, inner
        self.start_byte, self.end_byte = outer.start_byte, outer.end_byte
        self.start_point, self.end_point = outer.start_point, outer.end_point
        self.children = [*before, *inner.children, *after]
        self.named_children = [node for node in self.children if node.is_named]
        # The members after a narrowed region are no children here, and have no errors:
        # only a class without any is narrowed.
        self.has_error = inner.has_error or any(node.has_error for node in (*before, *after))

    @property
    def child_count(self) -> int:
        return len(self.children)

    @property
    def named_child_count(self) -> int:
        return len(self.named_children)

    def descendant_for_byte_range(self, start: int, end: int) -> Node | None:
        """The smallest node that spans the range: from the region's parse inside the
        region (its module node where no statement does), from the outer tree elsewhere."""
        inner = self._inner
        if inner.start_byte <= start and end <= inner.end_byte:
            return inner.descendant_for_byte_range(start, end)
        return self._outer.descendant_for_byte_range(start, end)


@dataclass(frozen=True)
class RegionTree:
    """A tree for the current text: a region parsed anew inside an edited old tree."""

    outer: Tree
    inner: Tree
    root_node: RegionRoot
    # Parsed incrementally, from the last region's tree.
    incremental: bool = False
    # Where the region ends inside a class (see :func:`narrow_to_members`): the class's
    # start byte, and the first of its members after the region, from the outer tree.
    class_start: int = -1
    tail: Node | None = None

    def copy(self) -> RegionTree:
        return self  # neither tree is edited again: the document edits its own copy


def members_after(tree: SyntaxTree, klass: Node) -> Iterator[Node]:
    """The members of class ``klass`` that follow the region of ``tree`` (nodes of the
    outer tree, at their places in the current text), one by one: ``klass`` is the
    region's own parse of the class, which ends where the region does. Nothing for any
    other class or tree."""
    if not isinstance(tree, RegionTree) or tree.tail is None or klass.start_byte != tree.class_start:
        return
    if klass.end_byte > tree.inner.included_ranges[0].end_byte:
        return  # the outer tree's class: it has them all
    first = tree.tail
    body = first.parent
    if body is None:
        return
    cursor = body.walk()
    if cursor.goto_first_child_for_byte(first.start_byte) is None:
        return
    while True:
        node = cursor.node
        if node is not None and node.start_byte >= first.start_byte:
            yield node
        if not cursor.goto_next_sibling():
            return


# What the prompt code reads a document's structure from.
SyntaxTree = Tree | RegionTree


def _line_start(source: bytes, offset: int) -> int:
    return source.rfind(b"\n", 0, offset) + 1


@dataclass(frozen=True)
class Region:
    """The edited top-level statements: a byte range and the statements around it."""

    start_byte: int
    end_byte: int
    start_point: Point
    end_point: Point
    before: list[Node]
    after: list[Node]
    # Narrowed to the edited members of a class (:func:`narrow_to_members`): the class's
    # start and the first of its members after the region.
    class_start: int = -1
    tail: Node | None = None


def plan_region(
    stale: Tree, source: bytes, dirty: tuple[int, int], *, extra: int = 0,
    max_share: float | None = MAX_SHARE,
) -> Region | None:
    """Where to parse ``source`` anew, given ``stale`` (a tree of an older text, told of
    every edit since) and ``dirty`` (the byte span of the current text those edits wrote).

    The region runs from the last of the stale tree's top-level statements that starts
    at or before the line of the span's start up to the first one at column 0 that
    starts after the span's end (or to the end of the file), and ``extra`` statements
    more. None where that does not hold the span, or where it is most of the file:
    parse it all then."""
    low, high = dirty
    children = stale.root_node.children
    if not children:
        return None
    first_line = _line_start(source, low)
    before = [node for node in children if node.start_byte <= first_line]
    # The region opens with a statement at column 0; a comment after code on its line
    # is a statement of the module too, and goes into the region.
    while before and before[-1].start_point.column != 0:
        before.pop()
    if not before or before[-1].type == "ERROR":
        return None
    start_node = before.pop()
    after = [node for node in children if node.start_byte > high]
    # The rest opens with a statement at column 0 (a comment or an ERROR node can start
    # anywhere); what comes before it is parsed with the region.
    while after and (after[0].start_point.column != 0 or after[0].type == "ERROR"):
        after.pop(0)
    del after[:extra]
    while after and after[0].start_point.column != 0:
        after.pop(0)
    if any(node.type == "ERROR" for node in after):
        return None
    end_byte = after[0].start_byte if after else len(source)
    end_point = after[0].start_point if after else _end_point(source)
    start_byte = start_node.start_byte
    too_large = max_share is not None and end_byte - start_byte > max_share * len(source)
    if too_large or not start_byte <= low <= high <= end_byte:
        return None
    return Region(start_byte, end_byte, start_node.start_point, end_point, before, after)


def narrow_to_members(stale: Tree, source: bytes, region: Region, dirty: tuple[int, int]) -> Region:
    """``region`` up to the end of the edited members where it is one class (decorated or
    not) without errors: typing in a method of a large class then parses the class up to
    that method, not the methods after it (3-4 times faster incrementally on ftplib's FTP
    class, and a half-typed method cannot swallow them). Those members stay the outer
    tree's, told of the edits, which all lie before them; the region's tree hands them to
    the class's readers (:func:`members_after`). ``region`` itself otherwise.

    The region takes one whole statement after the edits too (a comment is none):
    tree-sitter gives a comment or a line continuation at the very end of its input to
    the module, not to the block it ends, which is the cursor's method where the user has
    just typed one there. Found with tree-sitter's own walks, not lists of every member
    or statement: this runs at every request."""
    low, high = dirty
    if region.end_byte - region.start_byte < NARROW_MIN_BYTES:
        return region
    statement = stale.root_node.first_child_for_byte(region.start_byte)
    if statement is None or statement.start_byte != region.start_byte:
        return region
    following = statement.next_sibling
    if following is not None and following.start_byte < region.end_byte:
        return region  # the class and more (comments after it, other statements)
    klass = statement.child_by_field_name("definition") if statement.type == "decorated_definition" else statement
    if klass is None or klass.type != "class_definition" or klass.has_error:
        return region
    body = klass.child_by_field_name("body")
    if body is None or body.child_count == 0 or body.start_point.row == klass.start_point.row:
        return region
    first = body.child(0)
    if first is None or low < first.start_byte:
        return region  # the class's own line was edited
    column = first.start_point.column
    # The first member that starts on a line after the edits, then the first statement
    # from it on, and the member after that: where the region ends.
    cursor = body.walk()
    if cursor.goto_first_child_for_byte(high) is None:
        return region
    while True:  # to the first statement on a line after the edits
        member = cursor.node
        if member is None:
            return region
        if member.start_byte > high and member.type != "comment" and source.find(b"\n", high, member.start_byte) >= 0:
            break
        if not cursor.goto_next_sibling():
            return region
    if member.start_point.column != column or not cursor.goto_next_sibling() or cursor.node is None:
        return region
    member = cursor.node  # the member after it: where the region ends
    end = _line_start(source, member.start_byte)
    if member.start_point.column != column or source[end : member.start_byte].strip():
        return region  # not a statement of the body at the start of its line
    return Region(region.start_byte, end, region.start_point, Point(member.start_point.row, 0), region.before,
                  region.after, class_start=klass.start_byte, tail=member)


def parse_region(
    stale: Tree, source: bytes, region: Region, old: Tree | None = None
) -> RegionTree | None:
    """Parse ``region`` of ``source`` on its own, inside ``stale``; with ``old`` (an
    earlier region's tree, told of every edit since), incrementally. None where the
    region as a whole is one ERROR node: the half-typed code needs what follows it to
    be told apart (an unclosed bracket at the region's end, say)."""
    parser = syntax.parser("region")
    parser.included_ranges = [
        Range(region.start_point, region.end_point, region.start_byte, region.end_byte)
    ]
    try:
        inner = parser.parse(source) if old is None else parser.parse(source, old)
    finally:
        parser.included_ranges = []
    if inner.root_node.type == "ERROR":
        return None
    root = RegionRoot(stale.root_node, inner.root_node, region.before, region.after)
    return RegionTree(stale, inner, root, incremental=old is not None, class_start=region.class_start,
                      tail=region.tail)


def over_share(size: int, source: bytes) -> bool:
    return size > MAX_SHARE * len(source)


def region_tree(
    stale: Tree, source: bytes, dirty: tuple[int, int], previous: KeptRegion | None = None,
    *, large: bool = False,
) -> RegionTree | None:
    """The tree of ``source`` with only the edited statements parsed anew (see
    :func:`plan_region`); where they parse as one ERROR node, once more with the next
    statement too, which gives tree-sitter's error recovery what it would have seen in
    the whole file. None where neither works: parse the whole file then. A ``previous``
    region that starts where this one does is the old tree of an incremental parse
    (tree-sitter treats the span between the old and new region ends as changed).
    Statements over :data:`MAX_SHARE` of the file are parsed only incrementally that
    way, or with ``large`` (for a caller off the event loop)."""
    for extra in (0, 1):
        region = plan_region(stale, source, dirty, extra=extra, max_share=None)
        if region is None:
            return None
        if extra == 0:
            region = narrow_to_members(stale, source, region, dirty)
        from_previous = previous is not None and previous.start_byte == region.start_byte
        # What is parsed afresh: the region, or what it has beyond the previous one.
        fresh = region.end_byte - (previous.end_byte if from_previous else region.start_byte)  # type: ignore[union-attr]
        if not large and over_share(fresh, source):
            return None
        old = previous.tree if from_previous else None  # type: ignore[union-attr]
        found = parse_region(stale, source, region, old)
        if found is not None:
            return found
    return None


class KeptRegion:
    """The last region's tree, kept by the document as the old tree of the next
    request's parse: told of every edit since (:meth:`edit`, which answers None, drop
    it, for an edit across the region's first byte)."""

    __slots__ = ("end_byte", "start_byte", "tree")

    def __init__(self, found: RegionTree) -> None:
        self.tree = found.inner.copy()  # the request's tree is not edited; this one is
        self.start_byte = found.inner.included_ranges[0].start_byte
        self.end_byte = found.inner.included_ranges[0].end_byte

    def edit(self, edit: dict[str, Any]) -> KeptRegion | None:
        shift = edit["new_end_byte"] - edit["old_end_byte"]
        if edit["start_byte"] < self.start_byte:
            if edit["old_end_byte"] > self.start_byte:
                return None
            self.start_byte += shift
        if edit["start_byte"] < self.end_byte:
            self.end_byte = self.end_byte + shift if edit["old_end_byte"] <= self.end_byte else edit["new_end_byte"]
        self.tree.edit(**edit)
        return self


def _end_point(source: bytes) -> Point:
    row = source.count(b"\n")
    return Point(row, len(source) - _line_start(source, len(source)))


__all__ = [
    "KeptRegion", "Region", "members_after", "narrow_to_members", "over_share", "SyntaxTree", "RegionRoot",
    "RegionTree", "parse_region", "plan_region", "region_tree",
]
