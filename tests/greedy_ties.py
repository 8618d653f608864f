"""Comparing two greedy outputs of the same prompt that were computed with different
matrix shapes (a batch's rows and one row; a fresh prompt and a reused KV cache).

llama.cpp is not batch-invariant: other shapes take other kernels, which round
differently, and where the model is near a tie, greedy goes either way (on this project's
Xeon: ``if text`` or ``if len`` with logits 13.38 and 13.60). So such outputs must agree up
to the first token where they part, and there the two tokens must be a near tie: within
:data:`TIE_LOGITS` of each other and of the best logit, scored by one plain evaluation. A
real bug (a wrong row, a wrong position) parts on a token far from the best.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TIE_LOGITS = 0.5


def part_at_a_tie(model_path: Path, prompt: str, a: str, b: str) -> str | None:
    """None where ``a`` and ``b`` (continuations of ``prompt``) are equal, or part only
    at a near tie; else why not."""
    if a == b:
        return None
    from llama_cpp import Llama

    llm = Llama(model_path=str(model_path), n_ctx=1024, n_threads=2, logits_all=True, verbose=False)
    try:
        ta = llm.tokenize((prompt + a).encode("utf-8"))
        tb = llm.tokenize((prompt + b).encode("utf-8"))
        shared = next((i for i in range(min(len(ta), len(tb))) if ta[i] != tb[i]), None)
        if shared is None:  # one is the other plus more: they part at the shorter one's end
            return None if abs(len(ta) - len(tb)) <= 1 else f"one goes on {abs(len(ta) - len(tb))} tokens"
        llm.eval(ta[:shared])
        logits = np.asarray(llm.scores[shared - 1])
        best, la, lb = float(logits.max()), float(logits[ta[shared]]), float(logits[tb[shared]])
        if max(best - la, best - lb) <= TIE_LOGITS:
            return None
        return (f"they part at token {shared}: {llm.detokenize([ta[shared]])!r} ({la:.2f}) vs "
                f"{llm.detokenize([tb[shared]])!r} ({lb:.2f}), best {best:.2f}")
    finally:
        llm.close()
