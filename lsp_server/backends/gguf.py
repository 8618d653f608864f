"""A small reader of GGUF headers: magic, version, metadata and tensor table.

It lets us refuse a missing, truncated, corrupt or non-GGUF file with a clear message
before llama.cpp sees it, and read the metadata that picks the FIM template without
loading any weights.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

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

# ggml tensor types: (bytes per block, elements per block). Unknown types skip the size check.
_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (4, 1), 1: (2, 1), 2: (18, 32), 3: (20, 32), 6: (22, 32), 7: (24, 32), 8: (34, 32),
    9: (36, 32), 10: (84, 256), 11: (110, 256), 12: (144, 256), 13: (176, 256), 14: (210, 256),
    15: (292, 256), 16: (66, 256), 17: (74, 256), 18: (98, 256), 19: (50, 256), 20: (18, 32),
    21: (110, 256), 22: (82, 256), 23: (136, 256), 24: (1, 1), 25: (2, 1), 26: (4, 1),
    27: (8, 1), 28: (8, 1), 29: (56, 256), 30: (2, 1), 34: (54, 256), 35: (66, 256),
}  # fmt: skip

# Arrays longer than this are summarised, not kept (the vocabulary has 10^5 entries).
_MAX_KEPT_ARRAY = 64


class GGUFError(ValueError):
    """The file is not a usable GGUF model; the message says what is wrong."""


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

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name", ""))


class _Reader:
    def __init__(self, stream: BinaryIO, size: int, name: str = "") -> None:
        self.stream = stream
        self.size = size
        self.name = name

    def read(self, count: int) -> bytes:
        data = self.stream.read(count)
        if len(data) != count:
            raise GGUFError(f"{self.name}: file ends inside its header (truncated download?)")
        return data

    def scalar(self, type_id: int) -> Any:
        fmt, width = _SCALARS[type_id]
        return struct.unpack(fmt, self.read(width))[0]

    def u32(self) -> int:
        return int(self.scalar(4))

    def u64(self) -> int:
        return int(self.scalar(10))

    def string(self) -> str:
        length = self.u64()
        if length > self.size:
            raise GGUFError(f"corrupt header: a string claims {length} bytes")
        return self.read(length).decode("utf-8", errors="replace")


def _value(reader: _Reader, type_id: int, key: str, specials: set[str]) -> Any:
    if type_id in _SCALARS:
        return reader.scalar(type_id)
    if type_id == _STRING:
        return reader.string()
    if type_id == _ARRAY:
        item_type = reader.u32()
        count = reader.u64()
        if count > reader.size:
            raise GGUFError(f"corrupt header: array {key!r} claims {count} items")
        if item_type in _SCALARS:
            fmt, width = _SCALARS[item_type]
            raw = reader.read(width * count)
            if count > _MAX_KEPT_ARRAY:
                return {"type": item_type, "count": count}
            return list(struct.unpack(f"<{count}{fmt[1]}", raw))
        if item_type == _STRING:
            keep = count <= _MAX_KEPT_ARRAY
            items = []
            for _ in range(count):
                item = reader.string()
                if keep:
                    items.append(item)
                elif key == "tokenizer.ggml.tokens" and len(item) < 40 and item.endswith(">"):
                    if item.startswith("<") or item.startswith("▁<"):
                        specials.add(item)
            return items if keep else {"type": item_type, "count": count}
        raise GGUFError(f"corrupt header: array {key!r} has item type {item_type}")
    raise GGUFError(f"corrupt header: key {key!r} has unknown value type {type_id}")


def read_header(path: str | os.PathLike[str]) -> GGUFHeader:
    """Read and check a GGUF file's header and tensor table. Raises :class:`GGUFError`."""
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
        reader = _Reader(stream, size, str(file))
        magic = stream.read(4)
        if magic != MAGIC:
            raise GGUFError(
                f"{file} is not a GGUF model (starts with {magic!r}, expected b'GGUF'); "
                "convert it with llama.cpp's convert_hf_to_gguf.py or download a .gguf file"
            )
        version = reader.u32()
        if version not in (2, 3):
            raise GGUFError(f"{file}: unsupported GGUF version {version} (2 or 3 expected)")
        tensor_count = reader.u64()
        kv_count = reader.u64()
        if tensor_count > 1_000_000 or kv_count > 1_000_000:
            raise GGUFError(f"{file}: corrupt header (tensor or key count out of range)")
        metadata: dict[str, Any] = {}
        specials: set[str] = set()
        for _ in range(kv_count):
            key = reader.string()
            metadata[key] = _value(reader, reader.u32(), key, specials)
        tokens = metadata.get("tokenizer.ggml.tokens")
        vocab_size = (
            tokens["count"] if isinstance(tokens, dict) else len(tokens) if tokens else 0
        )
        if isinstance(tokens, list):
            specials.update(t for t in tokens if t.startswith("<") and t.endswith(">"))
        end_of_data = 0
        for _ in range(tensor_count):
            reader.string()
            n_dims = reader.u32()
            if n_dims > 8:
                raise GGUFError(f"{file}: corrupt tensor table ({n_dims} dimensions)")
            elements = 1
            for _ in range(n_dims):
                elements *= reader.u64()
            type_id = reader.u32()
            offset = reader.u64()
            block = _TYPE_SIZES.get(type_id)
            nbytes = (elements // block[1]) * block[0] if block else 0
            end_of_data = max(end_of_data, offset + nbytes)
        alignment = int(metadata.get("general.alignment", 32) or 32)
        position = stream.tell()
        data_offset = (position + alignment - 1) // alignment * alignment
    expected = data_offset + end_of_data if tensor_count else None
    header = GGUFHeader(
        path=str(file),
        version=version,
        tensor_count=tensor_count,
        metadata=metadata,
        special_tokens=frozenset(specials),
        vocab_size=vocab_size,
        data_offset=data_offset,
        expected_size=expected,
        file_size=size,
    )
    if expected is not None and size < expected:
        raise GGUFError(
            f"{file} is truncated: {size} bytes, but its tensors need {expected} bytes "
            "(download it again)"
        )
    return header


def sha256_of(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()
