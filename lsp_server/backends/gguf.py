"""A small reader of GGUF headers: magic, version, metadata and tensor table.

It lets us refuse a missing, truncated, corrupt, hostile or non-GGUF file with a clear
message before llama.cpp sees it, and read the metadata that picks the FIM template
without loading any weights.

Nothing is allocated from a length the file claims before that length is checked against
a bound and against what is left of the file: long arrays and strings that are not needed
are skipped with a seek, never read whole. After the header, :func:`check_model` checks
the hyperparameters that llama.cpp trusts (it aborts the whole process, not just the load,
on ``GGML_ASSERT``), e.g. a negative RMS-norm epsilon or more layers than it supports.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

MAGIC = b"GGUF"

_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1),
    1: ("<b", 1),
    2: ("<H", 2),
    3: ("<h", 2),
    4: ("<I", 4),
    5: ("<i", 4),
    6: ("<f", 4),
    7: ("<?", 1),
    10: ("<Q", 8),
    11: ("<q", 8),
    12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9
_U32 = 4
_LENGTH = struct.Struct("<Q")
_CHUNK = 1 << 20

# ggml tensor types: (bytes per block, elements per block), as ggml's type traits say.
# Removed types (4, 5, 31-33, 36-38) and unknown ones are refused, as ggml refuses them.
_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (4, 1), 1: (2, 1), 2: (18, 32), 3: (20, 32), 6: (22, 32), 7: (24, 32), 8: (34, 32),
    9: (36, 32), 10: (84, 256), 11: (110, 256), 12: (144, 256), 13: (176, 256), 14: (210, 256),
    15: (292, 256), 16: (66, 256), 17: (74, 256), 18: (98, 256), 19: (50, 256), 20: (18, 32),
    21: (110, 256), 22: (82, 256), 23: (136, 256), 24: (1, 1), 25: (2, 1), 26: (4, 1),
    27: (8, 1), 28: (8, 1), 29: (56, 256), 30: (2, 1), 34: (54, 256), 35: (66, 256),
    39: (17, 32), 40: (36, 64), 41: (18, 128), 42: (18, 64),
}  # fmt: skip

# -- bounds on what a header may claim ---------------------------------------------------
# llama.cpp allows 1 GiB strings and 2^30-item arrays; real models need far less.
MAX_KV_COUNT = 1 << 12  # real models: 20 to 100 keys
MAX_TENSOR_COUNT = 1 << 18  # real models: a few hundred to ~50k (unmerged MoE experts)
MAX_STRING_BYTES = 1 << 24  # one string; chat templates, the longest, are ~100 KB
MAX_ARRAY_ITEMS = 1 << 24  # numeric arrays (scores, token types, charsmaps)
MAX_STRING_ARRAY_ITEMS = 1 << 21  # vocabularies and merges (real: up to ~500k)
MAX_KEY_BYTES = 1 << 12  # real keys: under 100 bytes
MAX_TENSOR_NAME_BYTES = 63  # GGML_MAX_NAME - 1
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_LAYERS = 512  # LLAMA_MAX_LAYERS
MAX_EXPERTS = 1024  # LLAMA_MAX_EXPERTS
MAX_EMBEDDING = 1 << 18
MAX_HEADS = 1 << 12
MAX_HEAD_DIM = 1 << 14
MAX_CONTEXT = 1 << 27
MAX_EPSILON = 0.1

# What is kept of the metadata for the rest of Ghostpilot: short strings, small arrays.
_MAX_KEPT_ARRAY = 64  # string arrays
_MAX_KEPT_NUMBERS = 2 * MAX_LAYERS  # numeric arrays (per-layer values)
_MAX_KEPT_STRING = 1 << 16
_MAX_KEPT_TOTAL = 1 << 20  # all kept strings and arrays together (8 bytes a number)
_MAX_SPECIALS = 1 << 14

_TOKENS_KEY = "tokenizer.ggml.tokens"
_ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")
_BLOCK_TENSOR = re.compile(r"blk\.(\d+)\.")


class GGUFError(ValueError):
    """The file is not a usable GGUF model; the message says what is wrong."""


@dataclass
class TensorSummary:
    """What :func:`check_model` needs of the tensor table (never the whole table)."""

    block_indices: set[int] = field(default_factory=set)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass
class GGUFHeader:
    path: str
    version: int
    tensor_count: int
    metadata: dict[str, Any]
    # Vocabulary entries that look like control tokens, e.g. "<fim_prefix>".
    special_tokens: frozenset[str] = field(default_factory=frozenset)
    vocab_size: int = 0
    data_offset: int = 0
    expected_size: int | None = None
    file_size: int = 0
    tensors: TensorSummary = field(default_factory=TensorSummary)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def block_count(self) -> int | None:
        """The model's repeating layers (``<arch>.block_count``), None where not given."""
        value = self.metadata.get(f"{self.architecture}.block_count")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name", ""))


class _Reader:
    """Reads a GGUF header, refusing any length longer than what is left of the file."""

    def __init__(self, stream: BinaryIO, size: int, name: str = "") -> None:
        self.stream = stream
        self.size = size
        self.name = name
        self.position = stream.tell()
        self.kept_bytes = 0

    @property
    def remaining(self) -> int:
        return self.size - self.position

    def truncated(self, what: str = "") -> GGUFError:
        where = f", in {what}" if what else ""
        return GGUFError(f"{self.name}: file ends inside its header (truncated download?){where}")

    def read(self, count: int, what: str = "") -> bytes:
        if count > self.remaining:
            raise self.truncated(what)
        data = self.stream.read(count)
        self.position += len(data)
        if len(data) != count:
            raise self.truncated(what)
        return data

    def skip(self, count: int, what: str = "") -> None:
        if count > self.remaining:
            raise self.truncated(what)
        self.stream.seek(count, os.SEEK_CUR)
        self.position += count

    def scalar(self, type_id: int) -> Any:
        fmt, width = _SCALARS[type_id]
        return struct.unpack(fmt, self.read(width))[0]

    def u32(self) -> int:
        return int(self.scalar(4))

    def u64(self) -> int:
        return int(self.scalar(10))

    def string_length(self, what: str, limit: int = MAX_STRING_BYTES) -> int:
        length = self.u64()
        if length > limit:
            raise self.too_long(length, what, limit)
        if length > self.remaining:
            raise self.truncated(what)
        return length

    def too_long(self, length: int, what: str, limit: int) -> GGUFError:
        return GGUFError(
            f"{self.name}: corrupt header: a string claims {length} bytes "
            f"({what}; at most {limit} allowed)"
        )

    def string_bytes(self, what: str) -> bytes:
        return self.read(self.string_length(what), what)

    def string(self, what: str) -> str:
        return self.string_bytes(what).decode("utf-8", errors="replace")

    def _more(self, need: int, what: str) -> bytes:
        if need > self.remaining:
            raise self.truncated(what)
        data = self.stream.read(max(need, min(_CHUNK, self.remaining)))
        self.position += len(data)
        if len(data) < need:
            raise self.truncated(what)
        return data

    def strings(self, count: int, what: str, keep: bool = True) -> Iterator[bytes | None]:
        """``count`` strings, read in large chunks (a vocabulary is ~10^5 of them).

        Without ``keep``, a string longer than a chunk is skipped (None instead).
        """
        buffer, start = b"", 0
        for _ in range(count):
            if len(buffer) - start < 8:
                buffer, start = buffer[start:] + self._more(8 - (len(buffer) - start), what), 0
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length > MAX_STRING_BYTES:
                raise self.too_long(length, what, MAX_STRING_BYTES)
            start += 8
            end = start + length
            if end > len(buffer) and not keep and length > _CHUNK:
                self.skip(end - len(buffer), what)
                buffer, start = b"", 0
                yield None
                continue
            if end > len(buffer):
                buffer, start = buffer[start:] + self._more(end - len(buffer), what), 0
                end = length
            yield buffer[start:end]
            start = end
        unused = len(buffer) - start
        if unused:  # read ahead: give it back
            self.stream.seek(-unused, os.SEEK_CUR)
            self.position -= unused

    def keep(self, length: int) -> bool:
        """Whether a string of ``length`` bytes may be kept (short, and within the total)."""
        if length > _MAX_KEPT_STRING or self.kept_bytes + length > _MAX_KEPT_TOTAL:
            return False
        self.kept_bytes += length
        return True

    def value_string(self, key: str) -> str | dict[str, int]:
        """A metadata string: kept when short (and within the total), else skipped."""
        length = self.string_length(f"value of {key!r}")
        if not self.keep(length):
            self.skip(length, f"value of {key!r}")
            return {"type": _STRING, "bytes": length}
        return self.read(length).decode("utf-8", errors="replace")


@dataclass
class _Vocab:
    """What the token list tells: its length, control-looking tokens, duplicate digests."""

    count: int = 0
    specials: set[str] = field(default_factory=set)
    digests: bytearray = field(default_factory=bytearray)

    def read(self, reader: _Reader, count: int, what: str) -> None:
        digests, specials = self.digests, self.specials
        for index, item in enumerate(reader.strings(count, what)):
            raw = item or f"[EMPTY_{index}]".encode()  # as llama.cpp renames empty tokens
            digests += hashlib.blake2b(raw, digest_size=16).digest()
            if raw[-1:] == b">" and len(raw) < 120 and len(specials) < _MAX_SPECIALS:
                text = raw.decode("utf-8", errors="replace")
                if len(text) < 40 and (text.startswith("<") or text.startswith("▁<")):
                    specials.add(text)
        self.count += count

    def duplicates(self) -> int:
        """How many tokens repeat an earlier one (llama.cpp asserts there are none)."""
        if self.count < 2:
            return 0
        pairs = np.frombuffer(bytes(self.digests), dtype="<u8").reshape(-1, 2)
        keys = np.sort(pairs[:, 0])  # 64 bits first (fast), all 128 where those clash
        clashing = keys[1:][keys[1:] == keys[:-1]]
        if clashing.size == 0:
            return 0
        candidates = pairs[np.isin(pairs[:, 0], clashing)]
        return len(candidates) - len({(int(a), int(b)) for a, b in candidates})


def _array(reader: _Reader, key: str, vocab: _Vocab) -> Any:
    item_type = reader.u32()
    count = reader.u64()
    if item_type in _SCALARS:
        fmt, width = _SCALARS[item_type]
        if count > MAX_ARRAY_ITEMS:
            raise GGUFError(
                f"{reader.name}: corrupt header: array {key!r} claims {count} items "
                f"(at most {MAX_ARRAY_ITEMS} allowed)"
            )
        if count * width > reader.remaining:
            raise reader.truncated(f"array {key!r} claims {count} items")
        if count > _MAX_KEPT_NUMBERS or not reader.keep(count * 8):
            reader.skip(count * width)
            return {"type": item_type, "count": count}
        raw = reader.read(width * count)
        return list(struct.unpack(f"<{count}{fmt[1]}", raw))
    if item_type == _STRING:
        if count > MAX_STRING_ARRAY_ITEMS:
            raise GGUFError(
                f"{reader.name}: corrupt header: array {key!r} claims {count} items "
                f"(at most {MAX_STRING_ARRAY_ITEMS} strings allowed)"
            )
        if count * 8 > reader.remaining:
            raise reader.truncated(f"array {key!r} claims {count} items")
        what = f"an item of {key!r}"
        if key == _TOKENS_KEY:
            vocab.read(reader, count, what)
            return {"type": item_type, "count": count}
        items: list[str] | None = [] if count <= _MAX_KEPT_ARRAY else None
        for item in reader.strings(count, what, keep=False):
            if items is None:
                continue
            if item is None or not reader.keep(len(item)):
                items = None  # too long to keep: summarised
            else:
                items.append(item.decode("utf-8", errors="replace"))
        return items if items is not None else {"type": item_type, "count": count}
    raise GGUFError(f"{reader.name}: corrupt header: array {key!r} has item type {item_type}")


def _value(reader: _Reader, type_id: int, key: str, vocab: _Vocab) -> Any:
    if type_id in _SCALARS:
        return reader.scalar(type_id)
    if type_id == _STRING:
        return reader.value_string(key)
    if type_id == _ARRAY:
        return _array(reader, key, vocab)
    raise GGUFError(f"{reader.name}: corrupt header: key {key!r} has unknown value type {type_id}")


def _alignment(name: str, metadata: dict[str, Any], types: dict[str, int]) -> int:
    if "general.alignment" not in metadata:
        return 32
    value = metadata["general.alignment"]
    if types["general.alignment"] != _U32 or value <= 0 or value & (value - 1):
        raise GGUFError(
            f"{name}: general.alignment must be a power of two stored as uint32, got {value!r}"
        )
    return int(value)


def _tensor_table(reader: _Reader, count: int, alignment: int, summary: TensorSummary) -> int:
    """Check every tensor's name, shape, type and offset; returns the data section's size."""
    name_of_file = reader.name
    seen: set[bytes] = set()
    expected_offset = 0
    end_of_data = 0
    for index in range(count):
        length = reader.string_length(f"name of tensor {index}", MAX_TENSOR_NAME_BYTES)
        raw = reader.read(length, f"name of tensor {index}")
        name = raw.decode("utf-8", errors="replace")
        if raw in seen:
            raise GGUFError(f"{name_of_file}: corrupt tensor table (tensor {name!r} appears twice)")
        seen.add(raw)
        n_dims = reader.u32()
        if n_dims > MAX_DIMS:
            raise GGUFError(
                f"{name_of_file}: corrupt tensor table ({n_dims} dimensions for tensor {name!r}; "
                f"at most {MAX_DIMS})"
            )
        dims = tuple(reader.u64() for _ in range(n_dims))
        elements = 1
        for dim in dims:
            elements *= dim
        if any(dim >= 1 << 63 for dim in dims) or elements >= 1 << 63:
            raise GGUFError(
                f"{name_of_file}: corrupt tensor table (tensor {name!r} has shape {dims})"
            )
        type_id = reader.u32()
        block = _TYPE_SIZES.get(type_id)
        if block is None:
            raise GGUFError(
                f"{name_of_file}: corrupt tensor table (tensor {name!r} has unknown ggml type "
                f"{type_id})"
            )
        row = dims[0] if dims else 1
        if row % block[1]:
            raise GGUFError(
                f"{name_of_file}: corrupt tensor table (tensor {name!r} rows of {row} elements "
                f"are not a multiple of its type's block of {block[1]})"
            )
        nbytes = elements // block[1] * block[0]
        offset = reader.u64()
        if offset != expected_offset:
            raise GGUFError(
                f"{name_of_file}: corrupt tensor table (tensor {name!r} claims data offset "
                f"{offset}, expected {expected_offset})"
            )
        expected_offset += (nbytes + alignment - 1) // alignment * alignment
        end_of_data = max(end_of_data, offset + nbytes)
        match = _BLOCK_TENSOR.match(name)
        if match:
            summary.block_indices.add(int(match.group(1)))
        elif name in ("token_embd.weight", "output.weight"):
            summary.shapes[name] = dims
    return end_of_data


def read_header(path: str | os.PathLike[str], *, check: bool = True) -> GGUFHeader:
    """Read and check a GGUF file's header and tensor table. Raises :class:`GGUFError`.

    With ``check`` (the default), also :func:`check_model` on the hyperparameters.
    """
    file = Path(path)
    if not file.exists():
        raise GGUFError(f"model file not found: {file}")
    if not file.is_file():
        raise GGUFError(f"model path is not a file: {file}")
    size = file.stat().st_size
    try:
        stream = file.open("rb")
    except OSError as error:
        raise GGUFError(f"cannot read model file {file}: {error.strerror}") from error
    with stream:
        magic = stream.read(4)
        if magic != MAGIC:
            raise GGUFError(
                f"{file} is not a GGUF model (starts with {magic!r}, expected b'GGUF'); "
                "convert it with llama.cpp's convert_hf_to_gguf.py or download a .gguf file"
            )
        reader = _Reader(stream, size, str(file))
        version = reader.u32()
        if version not in (2, 3):
            raise GGUFError(f"{file}: unsupported GGUF version {version} (2 or 3 expected)")
        tensor_count = reader.u64()
        kv_count = reader.u64()
        if tensor_count > MAX_TENSOR_COUNT or kv_count > MAX_KV_COUNT:
            raise GGUFError(
                f"{file}: corrupt header (tensor or key count out of range: {tensor_count} "
                f"tensors, {kv_count} keys; at most {MAX_TENSOR_COUNT} and {MAX_KV_COUNT})"
            )
        metadata: dict[str, Any] = {}
        types: dict[str, int] = {}
        vocab = _Vocab()
        for index in range(kv_count):
            what = f"name of key {index}"
            key = reader.read(reader.string_length(what, MAX_KEY_BYTES), what).decode(
                "utf-8", errors="replace"
            )
            if key in metadata:
                raise GGUFError(f"{file}: corrupt header (key {key!r} appears twice)")
            type_id = reader.u32()
            types[key] = type_id
            metadata[key] = _value(reader, type_id, key, vocab)
        alignment = _alignment(str(file), metadata, types)
        summary = TensorSummary()
        end_of_data = _tensor_table(reader, tensor_count, alignment, summary)
        data_offset = (reader.position + alignment - 1) // alignment * alignment
    expected = data_offset + end_of_data if tensor_count else None
    header = GGUFHeader(
        path=str(file),
        version=version,
        tensor_count=tensor_count,
        metadata=metadata,
        special_tokens=frozenset(vocab.specials),
        vocab_size=vocab.count,
        data_offset=data_offset,
        expected_size=expected,
        file_size=size,
        tensors=summary,
    )
    if expected is not None and size < expected:
        raise GGUFError(
            f"{file} is truncated: {size} bytes, but its tensors need {expected} bytes "
            "(download it again)"
        )
    duplicates = vocab.duplicates()
    if duplicates:
        raise GGUFError(
            f"{file}: {_TOKENS_KEY} lists {duplicates} token(s) twice (a corrupt vocabulary; "
            "llama.cpp would abort on it)"
        )
    if check:
        check_model(header)
    return header


# -- hyperparameters -----------------------------------------------------------------------


def _integers(name: str, key: str, value: Any, per_layer: bool) -> list[int]:
    """An integer (or, where ``per_layer``, one per layer), or a GGUFError naming the key."""
    items = value if per_layer and isinstance(value, list) else [value]
    if not all(isinstance(item, int) and not isinstance(item, bool) for item in items):
        kind = "an integer (or one per layer)" if per_layer else "an integer"
        raise GGUFError(f"{name}: {key} must be {kind}, got {value!r}")
    return [int(item) for item in items]


def _bounded(
    name: str, metadata: dict[str, Any], key: str, low: int, high: int, per_layer: bool = False
) -> list[int] | None:
    if key not in metadata:
        return None
    values = _integers(name, key, metadata[key], per_layer)
    for value in values:
        if not low <= value <= high:
            raise GGUFError(f"{name}: {key} = {value} is out of range ({low} to {high})")
    return values


def _scalar(name: str, metadata: dict[str, Any], key: str, low: int, high: int) -> int | None:
    values = _bounded(name, metadata, key, low, high)
    return values[0] if values else None


def _epsilons(metadata: dict[str, Any], prefix: str) -> Iterable[tuple[str, Any]]:
    for key, value in metadata.items():
        if key.startswith(prefix) and key.endswith("epsilon"):
            yield key, value


def check_model(header: GGUFHeader) -> None:
    """Check the hyperparameters llama.cpp asserts on (an assert aborts the process).

    Only keys that are present are checked (llama.cpp refuses missing required keys with
    an ordinary error); vocabulary-only files (no tensors) skip the model's keys.
    """
    name = header.path
    metadata = header.metadata
    tokens = metadata.get(_TOKENS_KEY)
    if tokens is not None:
        for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            count = _array_length(metadata.get(key))
            if count is not None and count < header.vocab_size:
                raise GGUFError(f"{name}: {key} has {count} entries for {header.vocab_size} tokens")
    if header.tensor_count == 0:
        return
    arch = header.architecture
    prefix = f"{arch}." if arch else "\0"
    _check_epsilons(name, metadata, prefix)
    n_layer = _scalar(name, metadata, prefix + "block_count", 1, MAX_LAYERS)
    blocks = header.tensors.block_indices
    if n_layer is not None and blocks and max(blocks) + 1 != n_layer:
        raise GGUFError(
            f"{name}: {prefix}block_count = {n_layer}, but the tensor table has layers "
            f"blk.0 to blk.{max(blocks)}"
        )
    _scalar(name, metadata, prefix + "context_length", 1, MAX_CONTEXT)
    n_embd = _scalar(name, metadata, prefix + "embedding_length", 1, MAX_EMBEDDING)
    nextn = _scalar(name, metadata, prefix + "nextn_predict_layers", 0, MAX_LAYERS)
    if nextn and n_layer is not None and nextn > n_layer:
        raise GGUFError(
            f"{name}: {prefix}nextn_predict_layers = {nextn} exceeds block_count {n_layer}"
        )
    _check_heads(name, metadata, prefix, n_layer, n_embd)
    _check_experts(name, metadata, prefix, arch)
    rope_type = metadata.get(prefix + "rope.scaling.type")
    if rope_type is not None and rope_type not in _ROPE_SCALING_TYPES:
        raise GGUFError(
            f"{name}: {prefix}rope.scaling.type = {rope_type!r} is not one of "
            f"{', '.join(_ROPE_SCALING_TYPES)}"
        )
    vocab_key = prefix + "vocab_size"
    if tokens is not None and vocab_key in metadata:
        declared = _integers(name, vocab_key, metadata[vocab_key], per_layer=False)[0]
        if declared != header.vocab_size:
            raise GGUFError(
                f"{name}: {vocab_key} = {declared}, but {_TOKENS_KEY} has {header.vocab_size}"
            )
    embd_shape = header.tensors.shapes.get("token_embd.weight")
    if tokens is not None and embd_shape and len(embd_shape) >= 2:
        if embd_shape[1] != header.vocab_size:
            raise GGUFError(
                f"{name}: tensor token_embd.weight has {embd_shape[1]} rows, but "
                f"{_TOKENS_KEY} has {header.vocab_size} tokens"
            )


def _array_length(value: Any) -> int | None:
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict) and "count" in value:
        return int(value["count"])
    return None


def _check_epsilons(name: str, metadata: dict[str, Any], prefix: str) -> None:
    for key, value in _epsilons(metadata, prefix):
        for item in value if isinstance(value, list) else [value]:
            if (
                not isinstance(item, (int, float))
                or not math.isfinite(item)
                or not 0.0 < item <= MAX_EPSILON
            ):
                shown = f"{item:.6g}" if isinstance(item, float) else repr(item)
                raise GGUFError(
                    f"{name}: {key} = {shown} (a normalisation epsilon must be a finite "
                    f"number above 0 and at most {MAX_EPSILON})"
                )


def _per_layer(
    name: str, metadata: dict[str, Any], key: str, n_layer: int | None, high: int
) -> list[int] | None:
    values = _bounded(name, metadata, key, 0, high, per_layer=True)
    if values is not None and isinstance(metadata[key], list) and n_layer is not None:
        if len(values) != n_layer:
            raise GGUFError(
                f"{name}: {key} has {len(values)} per-layer values for {n_layer} layers"
            )
    return values


def _check_heads(
    name: str, metadata: dict[str, Any], prefix: str, n_layer: int | None, n_embd: int | None
) -> None:
    head_key, kv_key = prefix + "attention.head_count", prefix + "attention.head_count_kv"
    heads = _per_layer(name, metadata, head_key, n_layer, MAX_HEADS)
    kv_heads = _per_layer(name, metadata, kv_key, n_layer, MAX_HEADS)
    if heads is None:
        return
    if kv_heads is not None:
        layers = max(len(heads), len(kv_heads))
        for layer in range(layers):
            head = heads[min(layer, len(heads) - 1)]
            kv = kv_heads[min(layer, len(kv_heads) - 1)]
            if kv and (kv > head or head % kv):
                raise GGUFError(
                    f"{name}: {kv_key} = {kv} does not divide {head_key} = {head}"
                    + (f" (layer {layer})" if layers > 1 else "")
                )
    key_length = _scalar(name, metadata, prefix + "attention.key_length", 1, MAX_HEAD_DIM)
    _scalar(name, metadata, prefix + "attention.value_length", 1, MAX_HEAD_DIM)
    head_dims: list[int] = []
    if key_length:
        head_dims = [key_length]
    elif n_embd is not None:
        for head in set(heads):
            if head and n_embd % head:
                raise GGUFError(
                    f"{name}: {prefix}embedding_length = {n_embd} is not divisible by "
                    f"{head_key} = {head} (and no attention.key_length is given)"
                )
            if head:
                head_dims.append(n_embd // head)
    rope_key = prefix + "rope.dimension_count"
    rope = _scalar(name, metadata, rope_key, 0, MAX_HEAD_DIM)
    if rope is not None:
        if rope % 2:
            raise GGUFError(f"{name}: {rope_key} = {rope} must be even")
        if head_dims and rope > min(head_dims):
            raise GGUFError(
                f"{name}: {rope_key} = {rope} exceeds the attention head size {min(head_dims)}"
            )


def _check_experts(name: str, metadata: dict[str, Any], prefix: str, arch: str) -> None:
    experts = _scalar(name, metadata, prefix + "expert_count", 0, MAX_EXPERTS) or 0
    if experts <= 1 and arch.startswith("hunyuan"):
        return  # llama.cpp turns a single expert into a dense model for these
    used_key = prefix + "expert_used_count"
    used = max(_bounded(name, metadata, used_key, 0, MAX_EXPERTS, per_layer=True) or [0])
    groups = _scalar(name, metadata, prefix + "expert_group_count", 0, MAX_EXPERTS) or 0
    group_used = _scalar(name, metadata, prefix + "expert_group_used_count", 0, MAX_EXPERTS) or 0
    problem = ""
    if used > experts:
        problem = f"expert_used_count = {used} exceeds expert_count = {experts}"
    elif experts > 0 and used == 0:
        problem = f"expert_count = {experts} but expert_used_count is 0"
    elif experts > 0 and groups >= experts:
        problem = f"expert_group_count = {groups} is not below expert_count = {experts}"
    elif experts > 0 and groups > 1 and (experts % groups or not 0 < group_used < groups):
        problem = (
            f"expert_group_count = {groups} and expert_group_used_count = {group_used} "
            f"do not fit expert_count = {experts}"
        )
    elif experts == 0 and groups:
        problem = f"expert_group_count = {groups} without experts"
    if problem:
        raise GGUFError(f"{name}: {prefix}{problem}")


def sha256_of(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()
