"""Examples as token ids, packed into rows (torch-free, so it is unit-tested without torch).

Each example is BOS + prompt tokens, then body tokens + EOS; only the body and EOS carry
loss. Rows hold whole examples (none is cut), and an epoch's rows are a pure function of
(seed, epoch), so a resumed run continues at the exact row it stopped at.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Example:
    ids: list[int]
    n_prompt: int  # the first n_prompt ids carry no loss


def load_examples(path: Path, tokenizer: Any, max_len: int) -> tuple[list[Example], int]:
    """Tokenised examples (BOS + prompt, body + EOS); those over ``max_len`` are dropped
    (their count is returned)."""
    out, dropped = [], 0
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        prompt = [bos] + tokenizer.encode(row["prompt"], add_special_tokens=False)
        body = tokenizer.encode(row["body"], add_special_tokens=False) + [eos]
        if len(prompt) + len(body) > max_len:
            dropped += 1
            continue
        out.append(Example(prompt + body, len(prompt)))
    return out, dropped


def pack(examples: list[Example], max_len: int) -> list[list[Example]]:
    """Consecutive examples into rows of at most ``max_len`` tokens (order kept)."""
    rows: list[list[Example]] = []
    current: list[Example] = []
    used = 0
    for example in examples:
        if current and used + len(example.ids) > max_len:
            rows.append(current)
            current, used = [], 0
        current.append(example)
        used += len(example.ids)
    if current:
        rows.append(current)
    return rows


def epoch_rows(examples: list[Example], max_len: int, seed: int, epoch: int) -> list[list[Example]]:
    """The epoch's packed rows: examples shuffled by (seed, epoch), then packed; the same
    for the same arguments, so a resumed run skips to its exact position."""
    order = list(examples)
    random.Random(f"{seed}:{epoch}").shuffle(order)
    rows = pack(order, max_len)
    random.Random(f"{seed}:{epoch}:rows").shuffle(rows)
    return rows
