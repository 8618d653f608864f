"""Hostile GGUF files made from a real one: its header, with values patched in place.

A small parser of its own (not the product's reader) finds where each metadata value and
each tensor's type field lie; a patch overwrites them with a value of the same width, so
the rest of the file stays valid. A *sparse* copy keeps only the header (the weights read
as zeros): enough for header checks, cheap for the 250 MB embedded model.
"""

from __future__ import annotations

import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_WIDTHS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}  # fmt: skip
STRING, ARRAY = 8, 9
F32_TYPE, I32_TYPE = 0, 26


@dataclass
class Layout:
    kvs: dict[str, tuple[int, int]]  # key -> (value type, offset of the value)
    tensor_types: dict[str, int]  # tensor name -> offset of its ggml type field
    data_offset: int
    size: int


def _u32(stream: BinaryIO) -> int:
    return int(struct.unpack("<I", stream.read(4))[0])


def _u64(stream: BinaryIO) -> int:
    return int(struct.unpack("<Q", stream.read(8))[0])


def _string(stream: BinaryIO) -> bytes:
    return stream.read(_u64(stream))


def _skip_value(stream: BinaryIO, type_id: int) -> None:
    if type_id in _WIDTHS:
        stream.seek(_WIDTHS[type_id], 1)
    elif type_id == STRING:
        stream.seek(_u64(stream), 1)
    elif type_id == ARRAY:
        item, count = _u32(stream), _u64(stream)
        if item == STRING:
            for _ in range(count):
                stream.seek(_u64(stream), 1)
        else:
            stream.seek(_WIDTHS[item] * count, 1)
    else:
        raise ValueError(f"unknown GGUF value type {type_id}")


def layout(path: Path) -> Layout:
    with open(path, "rb") as stream:
        assert stream.read(4) == b"GGUF"
        _u32(stream)
        n_tensors, n_kv = _u64(stream), _u64(stream)
        kvs: dict[str, tuple[int, int]] = {}
        alignment = 32
        for _ in range(n_kv):
            key = _string(stream).decode()
            type_id = _u32(stream)
            kvs[key] = (type_id, stream.tell())
            if key == "general.alignment":
                alignment = _u32(stream)
                stream.seek(-4, 1)
            _skip_value(stream, type_id)
        tensor_types: dict[str, int] = {}
        for _ in range(n_tensors):
            name = _string(stream).decode()
            n_dims = _u32(stream)
            stream.seek(8 * n_dims, 1)
            tensor_types[name] = stream.tell()
            stream.seek(4 + 8, 1)
        end = stream.tell()
        size = stream.seek(0, 2)
    return Layout(kvs, tensor_types, (end + alignment - 1) // alignment * alignment, size)


def patched(
    source: Path,
    target: Path,
    values: dict[str, float | int] | None = None,
    tensor_types: dict[str, int] | None = None,
    *,
    sparse: bool = True,
) -> Path:
    """Copy ``source`` to ``target`` with metadata ``values`` and tensor types replaced."""
    found = layout(source)
    with open(source, "rb") as src, open(target, "wb") as dst:
        if sparse:
            dst.write(src.read(found.data_offset))
            dst.truncate(found.size)
        else:
            shutil.copyfileobj(src, dst, 1 << 24)
    with open(target, "r+b") as dst:
        for key, value in (values or {}).items():
            type_id, offset = found.kvs[key]
            dst.seek(offset)
            dst.write(struct.pack(_FORMATS[type_id], value))
        for name, type_id in (tensor_types or {}).items():
            dst.seek(found.tensor_types[name])
            dst.write(struct.pack("<I", type_id))
    return target


def value_type(path: Path, key: str) -> int:
    return layout(path).kvs[key][0]
