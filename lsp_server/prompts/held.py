"""What the editor's prompts hold still while the user types: the head of a document's
last clean parse (:class:`StableHeaders`) and the definitions each function uses
(:class:`HeldDefinitions`). Every change to the start of a prompt re-evaluates all of it
after that point.

The definitions a function uses, held per function while the user types in it:

A completion prompt names, above the current function, the file's top-level definitions
that its code so far uses (their signatures). Typing a word that names another one
changes that part of the prompt, and everything after it (the whole function) is
evaluated again: on argparse.py a return to a function cost ~280 prompt tokens for that
(issue 14's jump replay). So the editor's requests keep the definitions a function's
first request chose; when the code names other ones, the request still uses the held
set, and the engine brings the new set in once the user pauses (its prompt evaluated in
the background, then adopted: :meth:`CompletionEngine._refresh`). One-shot requests (the
CLI, evaluations) do not hold anything.

The class header the same way: the first requests in a class not met before fit its
header to a few tokens (``PromptContext.brief_header``: the class line, its docstring's
first line, the first members), and the whole header comes in at the next pause. A
large class's header is 300-400 of a prompt's tokens, all new to the KV cache in a class
not visited before: evaluating them took most of a second before the first suggestion
there (issue 14's jump replay).

Pure bookkeeping: no model, no threads.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import replace
from typing import Any, TypeVar

from lsp_server.prompts.context import KnownHead, PromptContext, class_line

K = TypeVar("K")
V = TypeVar("V")


def _store(entries: OrderedDict[K, V], key: K, value: V, size: int) -> None:
    """Put ``key`` last (most recently used); the least recently used go beyond ``size``."""
    entries[key] = value
    entries.move_to_end(key)
    while len(entries) > size:
        entries.popitem(last=False)


def _forget(entries: OrderedDict[tuple[str, Any], V], uri: str) -> None:
    """Drop ``uri``'s entries (keys ``(uri, ...)``). The keys are copied in one step first:
    this runs on the event loop (a closed document) while the worker may add entries."""
    for key in [key for key in list(entries) if key[0] == uri]:
        entries.pop(key, None)


class StableHeaders:
    """The class header of the last clean parse, per document and class.

    While a bracket is open at the cursor, tree-sitter can swallow the methods after the
    current one into an ERROR node, so they drop out of the class header and come back
    at the next keystroke; every flip re-evaluates the prompt from the header on (found
    by the latency replay; benchmarks/RESULTS.md has the figures). A header built while
    the document has errors is used only until a clean parse.
    """

    def __init__(self, size: int = 64) -> None:
        self._headers: OrderedDict[tuple[str, str], str] = OrderedDict()
        # Per document: the imports and outline of its last clean parse.
        self._files: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._size = size

    def settle(self, uri: str, context: PromptContext, *, clean: bool) -> PromptContext:
        context = self._settle_outline(uri, context, clean=clean)
        if not context.scope_header:
            return context
        # One header per class (it lists every member, the current method's too): a first
        # visit to another method of the class reuses the head that is in the KV cache.
        key = (uri, _class_key(context.scope_header))
        known = self._headers.get(key)
        if clean or known is None:
            _store(self._headers, key, context.scope_header, self._size)
            return context
        self._headers.move_to_end(key)
        return replace(context, scope_header=known)

    def _settle_outline(self, uri: str, context: PromptContext, *, clean: bool) -> PromptContext:
        """The file's imports and outline (in a function), as of its last clean parse: a
        body being typed elsewhere in the file can fold the definitions after it into an
        ERROR node, or open a ``try:`` that holds an import, and these pieces head every
        prompt of the file (found by the jump replay)."""
        if not context.in_function:
            return context
        known = self._files.get(uri)
        if clean or known is None:
            _store(self._files, uri, (context.imports, context.outline), self._size)
            return context
        self._files.move_to_end(uri)
        return replace(context, imports=known[0], outline=known[1])

    def known(self, uri: str) -> KnownHead:
        """What :meth:`settle` puts in place of what a request with errors in its tree
        builds, so that the request need not build it (the order of use is kept by
        :meth:`settle`, which still runs)."""
        headers = self._headers
        return KnownHead(self._files.get(uri), lambda line: headers.get((uri, line)))

    def forget(self, uri: str) -> None:
        self._files.pop(uri, None)
        _forget(self._headers, uri)


_DEF_LINE = re.compile(r"^[ \t]*(?:async[ \t]+)?def\b.*$", re.MULTILINE)


def _class_key(scope_header: str) -> str:
    """A class header's ``class`` line, below its decorators: two ``@dataclass`` classes
    of one file share their first line, and keyed on it one class's header stood in for
    the other's while the code had errors."""
    return class_line(scope_header) or scope_header.split("\n", 1)[0]


def function_key(uri: str, context: PromptContext) -> tuple[str, str] | None:
    """Which function ``context`` is in: its document and ``def`` line, below its class's
    ``class`` line for a method (None outside a function). Decorators are skipped: many
    methods share ``@property``; and many classes of a file have a ``def __init__(self):``,
    whose used definitions must not stand in for one another's."""
    if not context.in_function:
        return None
    found = _DEF_LINE.search(context.current)
    if not found:
        return None
    scope = _class_key(context.scope_header) + "\n" if context.scope_header else ""
    return uri, scope + found.group(0)


def class_key(uri: str, context: PromptContext) -> tuple[str, str] | None:
    """Which class ``context``'s function is in: its document and class line (None
    outside a class's method), as :class:`StableHeaders` keys it."""
    if not context.in_function or not context.scope_header:
        return None
    return uri, _class_key(context.scope_header)


class HeldDefinitions:
    """The used definitions last adopted for each function, and the classes whose whole
    header was adopted; least recently used first out."""

    def __init__(self, size: int = 256) -> None:
        self._held: OrderedDict[tuple[str, str], tuple[str, ...]] = OrderedDict()
        self._classes: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._size = size

    def hold(self, uri: str, context: PromptContext) -> tuple[PromptContext, PromptContext | None]:
        """(the context to prompt with now, the whole context where that one differs from
        it, else None). A function met for the first time adopts its definitions at
        once; a class met for the first time has a brief header until it is adopted."""
        key = function_key(uri, context)
        if key is None:
            return context, None
        now = context
        known = self._held.get(key)
        if known is None or known == context.definitions:
            _store(self._held, key, context.definitions, self._size)
        else:
            self._held.move_to_end(key)
            now = replace(now, definitions=known)
        scope = class_key(uri, context)
        if scope is not None:
            if scope in self._classes:
                self._classes.move_to_end(scope)
            else:
                now = replace(now, brief_header=True)
        return now, (None if now is context else context)

    def adopt(self, uri: str, context: PromptContext) -> None:
        """Hold ``context``'s definitions for its function, and its class's whole
        header, from now on."""
        key = function_key(uri, context)
        if key is not None:
            _store(self._held, key, context.definitions, self._size)
        scope = class_key(uri, context)
        if scope is not None:
            _store(self._classes, scope, None, self._size)

    def forget(self, uri: str) -> None:
        _forget(self._held, uri)
        _forget(self._classes, uri)
