"""KV state of recently edited places, kept in RAM (sequence-state snapshots).

The llama.cpp context holds one token sequence: the last prompt and what was generated
after it. Typing in one place reuses it by longest common prefix, but moving to another
function replaces the function-specific tail, and coming back later would re-evaluate it
(about 800 prompt tokens/s on 2 cores). So before a request discards a long stretch of
the cached prompt, :class:`LlamaBackend` saves the sequence's state here
(``llama_state_seq_get_data``); a later request whose tokens share a longer prefix with
a saved state than with the live cache restores it (``llama_state_seq_set_data``) and
evaluates only the tokens after that prefix.

This module is the bookkeeping only (pure Python, no llama.cpp): entries keyed by their
token list, least recently used first out, bounded in bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from lsp_server.prefix import shared_prefix

DEFAULT_LIMIT_MB = 256


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences. A request while typing
    shares all but its last few tokens with the cache; turning both lists into arrays
    first cost 30 µs of its prompt evaluation's Python at 800 tokens."""
    left = a if isinstance(a, list) else list(a)
    right = b if isinstance(b, list) else list(b)
    return shared_prefix(left, right, min(len(left), len(right)), step=64)


@dataclass
class Snapshot:
    """The state of sequence 0 while it held ``tokens``."""

    tokens: tuple[int, ...]
    data: bytearray

    @property
    def size(self) -> int:
        return len(self.data)


class KvSnapshots:
    """Saved sequence states, least recently used evicted first, at most ``limit_bytes``.

    A state whose tokens extend another's makes the shorter one useless (any prompt
    shares at least as long a prefix with the longer one), so adding drops the states
    it extends, and a state already covered by a longer one is not added.
    """

    def __init__(self, limit_bytes: int = DEFAULT_LIMIT_MB << 20) -> None:
        self.limit_bytes = limit_bytes
        self._entries: OrderedDict[tuple[int, ...], Snapshot] = OrderedDict()
        self.bytes = 0
        self.saves = 0
        self.restores = 0
        self.restored_tokens = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def resize(self, limit_bytes: int) -> None:
        """A new bound (the setting changed); evicts until it holds."""
        self.limit_bytes = max(0, int(limit_bytes))
        self._evict(0)

    def covered(self, tokens: Sequence[int]) -> bool:
        """Whether a saved state already starts with all of ``tokens``."""
        wanted = tuple(tokens)
        return any(key[: len(wanted)] == wanted for key in self._entries)

    def add(self, tokens: Sequence[int], data: bytearray) -> bool:
        """Keep ``data`` (the state while the sequence held ``tokens``); False when it
        does not fit the bound at all or a saved state already covers it."""
        key = tuple(tokens)
        if not key or len(data) > self.limit_bytes or self.covered(key):
            return False
        for other in [other for other in self._entries if key[: len(other)] == other]:
            self.bytes -= self._entries.pop(other).size
        self._evict(len(data))
        self._entries[key] = Snapshot(key, data)
        self.bytes += len(data)
        self.saves += 1
        return True

    def best(self, tokens: Sequence[int]) -> tuple[Snapshot | None, int]:
        """The saved state sharing the longest prefix with ``tokens``, and that length."""
        found: Snapshot | None = None
        length = 0
        for snapshot in self._entries.values():
            shared = common_prefix(snapshot.tokens, tokens)
            if shared > length:
                found, length = snapshot, shared
        return found, length

    def used(self, snapshot: Snapshot, tokens: int) -> None:
        """``snapshot`` was restored to reuse ``tokens`` tokens: it is now the most recent."""
        if snapshot.tokens in self._entries:
            self._entries.move_to_end(snapshot.tokens)
        self.restores += 1
        self.restored_tokens += tokens

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def _evict(self, incoming: int) -> None:
        while self._entries and self.bytes + incoming > self.limit_bytes:
            _, oldest = self._entries.popitem(last=False)
            self.bytes -= oldest.size
            self.evictions += 1

    def stats(self) -> dict[str, int | float]:
        return {
            "limitMb": round(self.limit_bytes / (1 << 20), 1),
            "usedMb": round(self.bytes / (1 << 20), 1),
            "entries": len(self._entries),
            "tokens": sum(len(key) for key in self._entries),
            "saves": self.saves,
            "restores": self.restores,
            "restoredTokens": self.restored_tokens,
            "evictions": self.evictions,
        }
