"""The definitions a function uses, held per function while the user types in it.

A completion prompt names, above the current function, the file's top-level definitions
that its code so far uses (their signatures). Typing a word that names another one
changes that part of the prompt, and everything after it (the whole function) is
evaluated again: on argparse.py a return to a function cost ~280 prompt tokens for that
(issue 14's jump replay). So the editor's requests keep the definitions a function's
first request chose; when the code names other ones, the request still uses the held
set, and the engine brings the new set in once the user pauses (its prompt evaluated in
the background, then adopted: :meth:`CompletionEngine._refresh`). One-shot requests (the
CLI, evaluations) do not hold anything.

Pure bookkeeping: no model, no threads.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import replace

from lsp_server.prompts.context import PromptContext

_DEF_LINE = re.compile(r"^[ \t]*(?:async[ \t]+)?def\b.*$", re.MULTILINE)


def function_key(uri: str, context: PromptContext) -> tuple[str, str] | None:
    """Which function ``context`` is in: its document and ``def`` line (None outside a
    function). Decorators are skipped: many methods share ``@property``."""
    if not context.in_function:
        return None
    found = _DEF_LINE.search(context.current)
    return (uri, found.group(0)) if found else None


class HeldDefinitions:
    """The used definitions last adopted for each function, least recently used first
    out."""

    def __init__(self, size: int = 256) -> None:
        self._held: OrderedDict[tuple[str, str], tuple[str, ...]] = OrderedDict()
        self._size = size

    def hold(self, uri: str, context: PromptContext) -> tuple[PromptContext, PromptContext | None]:
        """(the context to prompt with now, the context with the new definitions where
        they differ from the held ones, else None). A function met for the first time
        adopts its definitions at once."""
        key = function_key(uri, context)
        if key is None:
            return context, None
        known = self._held.get(key)
        if known is None or known == context.definitions:
            self._store(key, context.definitions)
            return context, None
        self._held.move_to_end(key)
        return replace(context, definitions=known), context

    def adopt(self, uri: str, context: PromptContext) -> None:
        """Hold ``context``'s definitions for its function from now on."""
        key = function_key(uri, context)
        if key is not None:
            self._store(key, context.definitions)

    def forget(self, uri: str) -> None:
        for key in [key for key in self._held if key[0] == uri]:
            del self._held[key]

    def _store(self, key: tuple[str, str], definitions: tuple[str, ...]) -> None:
        self._held[key] = definitions
        self._held.move_to_end(key)
        while len(self._held) > self._size:
            self._held.popitem(last=False)
