"""Choosing the next token from the logits: greedy, or top-p over a partial sort."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

# Top-p looks for the nucleus among this many most likely tokens first (a partial sort),
# and sorts the whole vocabulary only when the nucleus is wider.
NUCLEUS_CANDIDATES = 2048
# Before that, the tokens whose tempered weight is at least this share of the most likely
# one's are taken with one comparison pass (no partial sort): when they hold ``top_p`` of
# the mass, the nucleus is among them, since every other token weighs less than each.
CANDIDATE_SHARE = np.float32(1e-6)


@dataclass
class Sampler:
    temperature: float
    top_p: float
    rng: np.random.Generator

    def choose(self, logits: np.ndarray, *, logprob: bool = True) -> tuple[int, float]:
        """Pick the next token; returns it with its log-probability under the model.

        Greedy decoding without ``logprob`` skips the softmax over the vocabulary and
        returns 0.0. Everything is O(vocabulary) in float32 with float64 sums: a full
        sort of a large vocabulary's logits per token can cost more than decoding it.
        """
        if self.temperature <= 0.0 and not logprob:
            return int(np.argmax(logits)), 0.0
        shifted = logits - np.float32(logits.max())
        log_norm = float(np.log(np.exp(shifted).sum(dtype=np.float64)))
        if self.temperature <= 0.0:
            token = int(np.argmax(logits))
            return token, float(shifted[token]) - log_norm
        weights = np.exp(shifted / np.float32(self.temperature))
        total = float(weights.sum(dtype=np.float64))
        if self.top_p < 1.0:
            token = self._nucleus(weights, total)
        else:
            token = int(self.rng.choice(weights.size, p=weights.astype(np.float64) / total))
        return token, float(shifted[token]) - log_norm

    def _nucleus(self, weights: np.ndarray, total: float) -> int:
        """Sample among the fewest most likely tokens whose mass reaches ``top_p``.

        ``weights`` are ``exp((logit - max) / T)``: the most likely token weighs 1.
        """
        size = weights.size
        candidates = np.flatnonzero(weights >= CANDIDATE_SHARE)
        if not (candidates.size <= NUCLEUS_CANDIDATES
                and float(weights[candidates].sum(dtype=np.float64)) >= self.top_p * total):
            if size > NUCLEUS_CANDIDATES:
                candidates = np.argpartition(weights, size - NUCLEUS_CANDIDATES)[size - NUCLEUS_CANDIDATES :]
            else:
                candidates = np.arange(size)
        order = candidates[np.argsort(-weights[candidates], kind="stable")]
        cumulative = np.cumsum(weights[order], dtype=np.float64) / total
        if cumulative[-1] < self.top_p and order.size < size:  # a wider nucleus: sort it all
            order = np.argsort(-weights, kind="stable")
            cumulative = np.cumsum(weights[order], dtype=np.float64) / total
        keep = order[: int(np.searchsorted(cumulative, self.top_p)) + 1]
        kept = weights[keep].astype(np.float64)
        return int(keep[self.rng.choice(keep.size, p=kept / kept.sum())])


class LogitViews:
    """numpy views of llama.cpp's logits rows (no copy), one made per address: making one
    (``np.ctypeslib.as_array``) costs 25 us, more than the argmax over it, and a row moves
    only when llama.cpp reallocates its buffer. ``bound`` views are kept: a batch of
    sequences reads one row each."""

    def __init__(self, n_vocab: int, bound: int = 64) -> None:
        self.n_vocab, self.bound = n_vocab, bound
        self._views: dict[int, np.ndarray] = {}

    def of(self, pointer: Any) -> np.ndarray:
        """The row ``pointer`` (a ``llama_get_logits_ith`` result) points at."""
        address = ctypes.cast(pointer, ctypes.c_void_p).value
        if not address:
            raise RuntimeError("llama.cpp returned no logits for this row")
        view = self._views.get(address)
        if view is None:
            if len(self._views) >= self.bound:
                self._views.clear()
            view = self._views[address] = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        return view
