"""Prompt tokens, cached line by line: a keystroke re-tokenizes only the line it edits.

Tokenizing a 1,000-token prompt with llama.cpp takes milliseconds, and the prompt
builder used to do it several times per request (counting for the budget, then again
in the backend). Most tokenizers never merge across a newline that follows a
non-space character (byte-level BPE pre-tokenizers split there; Gemma's SentencePiece
vocabulary has no such merges), so a prompt's tokens are the concatenation of its
pieces' tokens, and each piece is tokenized once while it stays unchanged.

Whether that holds is checked per model on load (:func:`splits_exactly`); where it does
not (SentencePiece with a word-start space added to every piece, as in Llama 2), every
text is tokenized whole, cached by its text.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Sequence

Tokenize = Callable[[str], Sequence[int]]

# A piece ends before a newline that follows a non-space character; blank lines and
# indentation stay with the line that follows them.
_BOUNDARY = re.compile(r"(?<=\S)\n")

# Code that covers the shapes a boundary can sit next to: blank lines, indentation,
# tabs, trailing spaces, strings, comments, non-ASCII text, closing brackets.
PROBES = (
    "import os\n\n\ndef f(x):\n    if x:\n        return [1, 2]  # done\n\n    return None\n",
    'class A:\n\t"""Doc."""\n\tname = "é ü 中文"\n\n\t@property\n\tdef v(self):\n\t\treturn {\n\t\t}\n',
    "x = 1 \ny = (\n    2,\n)\nz = '''\nline\n'''\n\n\n\nprint(x)\n",
)


def split_pieces(text: str) -> list[str]:
    """``text`` cut before every newline that follows a non-space character."""
    pieces = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        pieces.append(text[start : match.start()])
        start = match.start()
    pieces.append(text[start:])
    return [piece for piece in pieces if piece]


def splits_exactly(tokenize: Tokenize, probes: Sequence[str] = PROBES) -> bool:
    """Whether tokenizing the pieces of a text gives the text's own tokens."""
    for probe in probes:
        joined: list[int] = []
        for piece in split_pieces(probe):
            joined.extend(tokenize(piece))
        if joined != list(tokenize(probe)):
            return False
    return True


class PromptTokenizer:
    """Tokens and token counts of prompt text with a model's tokenizer, cached.

    Calling it counts tokens, so it serves as the budget's counter.
    """

    def __init__(self, tokenize: Tokenize, size: int = 8192, *, by_pieces: bool | None = None) -> None:
        self._tokenize = tokenize
        self._cache: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._size = size
        # Counts of whole texts: the budget asks again for the same context pieces.
        self._counts: OrderedDict[str, int] = OrderedDict()
        self.by_pieces = splits_exactly(tokenize) if by_pieces is None else by_pieces

    def _cached(self, text: str) -> tuple[int, ...]:
        found = self._cache.get(text)
        if found is not None:
            self._cache.move_to_end(text)
            return found
        tokens = tuple(self._tokenize(text))
        self._cache[text] = tokens
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return tokens

    def tokens(self, text: str) -> list[int]:
        if not self.by_pieces:
            return list(self._cached(text))
        result: list[int] = []
        for piece in split_pieces(text):
            result.extend(self._cached(piece))
        return result

    def __call__(self, text: str) -> int:
        if not self.by_pieces:
            return len(self._cached(text))
        found = self._counts.get(text)
        if found is not None:
            self._counts.move_to_end(text)
            return found
        count = sum(len(self._cached(piece)) for piece in split_pieces(text))
        self._counts[text] = count
        if len(self._counts) > 256:
            self._counts.popitem(last=False)
        return count
