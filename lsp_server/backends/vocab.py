"""A model with a smaller vocabulary: the same weights, only the tokens code uses.

Gemma 3's vocabulary has 262,144 tokens for 140 languages, and its output layer (tied to
the token embedding, Q8_0) is 178 of the embedded model's 247 MB. Every generated token
reads all of it, so on a CPU it bounds decoding. Code uses a small part of the
vocabulary: :func:`derive` writes a copy of a GGUF whose vocabulary keeps only the token
ids it is given (``models/vocab/*.npy``, built by ``python -m training.code_vocab``), with
their embedding rows; every other tensor and key is copied byte for byte. The
tokenizer stays SentencePiece with byte fallback, so any text still tokenizes (a word
whose token was dropped is spelt with smaller tokens), and the kept set is closed under
the tokenizer's merges, so text made of kept tokens tokenizes exactly as before.

The result is deterministic: the registry pins its sha256 like any other model's.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lsp_server.backends.gguf import _ARRAY, _SCALARS, _STRING, _TYPE_SIZES, MAGIC, GGUFError

# Per-token arrays of an SPM vocabulary, and the keys that hold token ids.
PER_TOKEN_KEYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type")
# Tensors with one row per token.
VOCAB_TENSORS = ("token_embd.weight", "output.weight")
DEFAULT_ALIGNMENT = 32

_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")


@dataclass
class _Field:
    key: str
    type_id: int
    raw: bytes  # the value as stored (type id excluded)
    value: Any  # decoded for scalars, strings and the per-token arrays; None otherwise


@dataclass
class _Tensor:
    name: str
    dims: tuple[int, ...]
    type_id: int
    offset: int  # within the data section

    @property
    def row_bytes(self) -> int:
        block_bytes, block_elements = _TYPE_SIZES[self.type_id]
        return self.dims[0] // block_elements * block_bytes

    @property
    def nbytes(self) -> int:
        rows = 1
        for dim in self.dims[1:]:
            rows *= dim
        return self.row_bytes * rows


class _Cursor:
    def __init__(self, data: mmap.mmap | bytes) -> None:
        self.data, self.at = data, 0

    def take(self, count: int) -> bytes:
        if self.at + count > len(self.data):
            raise GGUFError("truncated GGUF header")
        chunk = self.data[self.at : self.at + count]
        self.at += count
        return bytes(chunk)

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self.take(8))[0])

    def string(self) -> bytes:
        return self.take(self.u64())


def _read_value(cursor: _Cursor, type_id: int, decode: bool) -> Any:
    if type_id in _SCALARS:
        fmt, width = _SCALARS[type_id]
        return struct.unpack(fmt, cursor.take(width))[0]
    if type_id == _STRING:
        return cursor.string().decode("utf-8", errors="surrogateescape")
    if type_id == _ARRAY:
        item_type, count = cursor.u32(), cursor.u64()
        if item_type in _SCALARS:
            fmt, width = _SCALARS[item_type]
            raw = cursor.take(width * count)
            if not decode:
                return None
            return np.frombuffer(raw, dtype=np.dtype(fmt)).copy()
        if item_type == _STRING:
            items = [cursor.string() for _ in range(count)]
            return items if decode else None
        raise GGUFError(f"unsupported GGUF array of type {item_type}")
    raise GGUFError(f"unsupported GGUF value type {type_id}")


def _parse(data: mmap.mmap) -> tuple[list[_Field], list[_Tensor], int]:
    """The fields, tensors and data-section offset of a GGUF file."""
    cursor = _Cursor(data)
    if cursor.take(4) != MAGIC:
        raise GGUFError("not a GGUF file")
    if cursor.u32() != 3:
        raise GGUFError("only GGUF version 3 files can be given a smaller vocabulary")
    tensor_count, kv_count = cursor.u64(), cursor.u64()
    fields = []
    for _ in range(kv_count):
        key = cursor.string().decode()
        type_id = cursor.u32()
        start = cursor.at
        decode = key in PER_TOKEN_KEYS or type_id != _ARRAY
        value = _read_value(cursor, type_id, decode)
        fields.append(_Field(key, type_id, bytes(data[start : cursor.at]), value))
    tensors = []
    for _ in range(tensor_count):
        name = cursor.string().decode()
        dims = tuple(cursor.u64() for _ in range(cursor.u32()))
        type_id = cursor.u32()
        if type_id not in _TYPE_SIZES:
            raise GGUFError(f"tensor {name!r} has unknown ggml type {type_id}")
        tensors.append(_Tensor(name, dims, type_id, cursor.u64()))
    alignment = _alignment(fields)
    return fields, tensors, _aligned(cursor.at, alignment)


def _alignment(fields: list[_Field]) -> int:
    for entry in fields:
        if entry.key == "general.alignment" and isinstance(entry.value, int) and entry.value > 0:
            return entry.value
    return DEFAULT_ALIGNMENT


def _aligned(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) // alignment * alignment


def _string(value: bytes) -> bytes:
    return _U64.pack(len(value)) + value


def _array(item_type: int, items: list[bytes] | np.ndarray) -> bytes:
    if item_type == _STRING:
        return _U32.pack(_STRING) + _U64.pack(len(items)) + b"".join(_string(i) for i in items)
    array = np.asarray(items, dtype=np.dtype(_SCALARS[item_type][0]))
    return _U32.pack(item_type) + _U64.pack(len(array)) + array.tobytes()


@dataclass(frozen=True)
class Vocabulary:
    """An SPM vocabulary as stored: each token's text (bytes), score and type."""

    tokens: list[bytes]
    scores: np.ndarray
    types: np.ndarray
    model: str
    special_ids: frozenset[int] = frozenset()  # what the ``*_token_id`` keys name


def read_vocabulary(path: str | os.PathLike[str]) -> Vocabulary:
    with open(path, "rb") as stream, mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
        fields, _, _ = _parse(data)
    values = {entry.key: entry.value for entry in fields}
    missing = [key for key in PER_TOKEN_KEYS if values.get(key) is None]
    if missing:
        raise GGUFError(f"{path}: no {missing[0]} in the GGUF")
    special = frozenset(int(value) for key, value in values.items()
                        if key.startswith("tokenizer.ggml.") and key.endswith("_token_id")
                        and isinstance(value, int) and 0 <= value < len(values["tokenizer.ggml.tokens"]))
    return Vocabulary(values["tokenizer.ggml.tokens"], values["tokenizer.ggml.scores"],
                      values["tokenizer.ggml.token_type"], str(values.get("tokenizer.ggml.model", "")),
                      special)


def derive(source: str | os.PathLike[str], keep: np.ndarray, dest: str | os.PathLike[str]) -> None:
    """Write ``dest``: ``source`` with only the token ids in ``keep`` (ascending, unique).

    Token ids are renumbered in order, so special tokens below the first dropped id keep
    their ids; the ``*_token_id`` keys are renumbered too. The file is written beside
    ``dest`` and moved into place, so a reader never sees half of it. Raises
    :class:`GGUFError` where the source cannot be trimmed (not an SPM vocabulary, a kept
    id out of range, a special token not kept) and ``OSError`` where it cannot be written.
    """
    keep = np.asarray(keep, dtype=np.int64)
    if keep.ndim != 1 or len(keep) == 0 or np.any(np.diff(keep) <= 0):
        raise GGUFError("the token ids to keep must be ascending and unique")
    dest = Path(dest)
    with open(source, "rb") as stream, mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
        fields, tensors, data_offset = _parse(data)
        values = {entry.key: entry.value for entry in fields}
        if values.get("tokenizer.ggml.model") != "llama":
            raise GGUFError(f"{source}: only SentencePiece (llama) vocabularies can be trimmed")
        n_vocab = len(values["tokenizer.ggml.tokens"])
        if keep[0] < 0 or keep[-1] >= n_vocab:
            raise GGUFError(f"{source}: token ids to keep run past its {n_vocab} tokens")
        new_id = np.full(n_vocab, -1, dtype=np.int64)
        new_id[keep] = np.arange(len(keep))
        alignment = _alignment(fields)
        header = _header(fields, tensors, keep, new_id, n_vocab, alignment)
        dest.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(header)
                out.write(b"\0" * (_aligned(len(header), alignment) - len(header)))
                for tensor in tensors:
                    start = data_offset + tensor.offset
                    chunk = data[start : start + tensor.nbytes]
                    if _per_token(tensor, n_vocab):
                        rows = np.frombuffer(chunk, dtype=np.uint8).reshape(n_vocab, tensor.row_bytes)
                        chunk = rows[keep].tobytes()
                    out.write(chunk)
                    out.write(b"\0" * (_aligned(len(chunk), alignment) - len(chunk)))
            os.chmod(temporary, 0o644)
            os.replace(temporary, dest)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _per_token(tensor: _Tensor, n_vocab: int) -> bool:
    return tensor.name in VOCAB_TENSORS and len(tensor.dims) == 2 and tensor.dims[1] == n_vocab


def _header(fields: list[_Field], tensors: list[_Tensor], keep: np.ndarray, new_id: np.ndarray,
            n_vocab: int, alignment: int) -> bytes:
    parts = [MAGIC, _U32.pack(3), _U64.pack(len(tensors)), _U64.pack(len(fields))]
    for entry in fields:
        raw = entry.raw
        if entry.key in PER_TOKEN_KEYS:
            value = entry.value
            kept = [value[i] for i in keep] if isinstance(value, list) else value[keep]
            item_type = struct.unpack("<I", entry.raw[:4])[0]
            raw = _array(item_type, kept)
        elif entry.key.startswith("tokenizer.ggml.") and entry.key.endswith("_token_id"):
            if entry.type_id in (4, 5):  # u32, i32
                raw = struct.pack(_SCALARS[entry.type_id][0], _renumbered(entry, new_id))
        parts += [_string(entry.key.encode()), _U32.pack(entry.type_id), raw]
    offset = 0
    for tensor in tensors:
        dims = tensor.dims
        if _per_token(tensor, n_vocab):
            dims = (dims[0], len(keep))
        size = tensor.row_bytes * int(np.prod(dims[1:], dtype=np.int64))
        parts += [_string(tensor.name.encode()), _U32.pack(len(dims)),
                  b"".join(_U64.pack(d) for d in dims), _U32.pack(tensor.type_id), _U64.pack(offset)]
        offset += _aligned(size, alignment)
    return b"".join(parts)


def _renumbered(entry: _Field, new_id: np.ndarray) -> int:
    old = int(entry.value)
    if not 0 <= old < len(new_id) or new_id[old] < 0:
        raise GGUFError(f"{entry.key} ({old}) is not among the tokens kept")
    return int(new_id[old])


# -- the kept set: SentencePiece merges ------------------------------------------------------


def spm_merges(text: str, lookup: Callable[[str], tuple[int, float] | None]) -> list[int]:
    """The token ids SentencePiece's merge loop (as llama.cpp runs it) forms while
    tokenizing ``text``: repeatedly merge the adjacent pair whose concatenation is a token
    with the highest score, the leftmost on ties. A vocabulary that keeps a token but not
    these would tokenize its text differently."""
    symbols = list(text)
    formed = []
    while len(symbols) > 1:
        best: tuple[float, int, int] | None = None
        for index in range(len(symbols) - 1):
            found = lookup(symbols[index] + symbols[index + 1])
            if found is not None and (best is None or found[1] > best[0]):
                best = (found[1], index, found[0])
        if best is None:
            break
        _, index, token = best
        symbols[index : index + 2] = [symbols[index] + symbols[index + 1]]
        formed.append(token)
    return formed


def closed_under_merges(keep: set[int], vocabulary: Vocabulary) -> set[int]:
    """``keep`` plus every token that SentencePiece forms on the way to a kept one."""
    normal = 1  # llama.cpp's LLAMA_TOKEN_TYPE_NORMAL
    index: dict[str, int] = {}
    for token, raw in enumerate(vocabulary.tokens):
        index.setdefault(raw.decode("utf-8", errors="surrogateescape"), token)

    def lookup(text: str) -> tuple[int, float] | None:
        token = index.get(text)
        return None if token is None else (token, float(vocabulary.scores[token]))

    closed = set(keep)
    todo = list(closed)
    while todo:
        token = todo.pop()
        if int(vocabulary.types[token]) != normal:
            continue
        text = vocabulary.tokens[token].decode("utf-8", errors="surrogateescape")
        for formed in spm_merges(text, lookup):
            if formed not in closed:
                closed.add(formed)
                todo.append(formed)
    return closed
