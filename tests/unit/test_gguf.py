"""GGUF header reading and model registry checks, on real vocab files and tiny synthetic ones."""

from __future__ import annotations

import hashlib
import math
import re
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lsp_server.backends.gguf import (
    MAX_KV_COUNT,
    MAX_STRING_ARRAY_ITEMS,
    MAX_STRING_BYTES,
    GGUFError,
    read_header,
    sha256_of,
)
from lsp_server.backends.registry import ModelNotFound, resolve, verify
from tests.conftest import VOCAB_DIR, require_vocab
from tests.hostile_gguf import patched

# -- a small GGUF writer ----------------------------------------------------------------

U8, I32, U32, F32, BOOL, STRING, ARRAY, U64 = 0, 5, 4, 6, 7, 8, 9, 10
_PACK = {U8: "<B", I32: "<i", U32: "<I", F32: "<f", BOOL: "<?", U64: "<Q"}


def gstr(text: str | bytes) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str, type_id: int, value: Any) -> bytes:
    head = gstr(key) + struct.pack("<I", type_id)
    if type_id == STRING:
        return head + gstr(value)
    if type_id in _PACK:
        return head + struct.pack(_PACK[type_id], value)
    if type_id == ARRAY:
        item_type, items = value
        body = struct.pack("<IQ", item_type, len(items))
        if item_type == STRING:
            return head + body + b"".join(gstr(i) for i in items)
        return head + body + b"".join(struct.pack(_PACK[item_type], i) for i in items)
    raise AssertionError(type_id)


def tensor(name: str, dims: tuple[int, ...], type_id: int = 0, offset: int = 0) -> bytes:
    return (
        gstr(name)
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", type_id, offset)
    )


def gguf(
    kvs: list[bytes],
    tensors: Sequence[bytes] = (),
    data: bytes = b"",
    version: int = 3,
    magic: bytes = b"GGUF",
) -> bytes:
    head = (
        magic
        + struct.pack("<IQQ", version, len(tensors), len(kvs))
        + b"".join(kvs)
        + b"".join(tensors)
    )
    if tensors:
        head += b"\0" * (-len(head) % 32)
    return head + data


BASIC_KVS = [
    kv("general.architecture", STRING, "qwen2"),
    kv("general.name", STRING, "Tiny"),
    kv("qwen2.context_length", U32, 4096),
    kv(
        "tokenizer.ggml.tokens",
        ARRAY,
        (STRING, ["<|fim_prefix|>", "a", "<|fim_suffix|>", "<|fim_middle|>"]),
    ),
]


def write(tmp_path: Path, content: bytes, name: str = "model.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


# -- good files ---------------------------------------------------------------------------


def test_synthetic_header_parses(tmp_path: Path) -> None:
    data = b"\x01" * 32  # one F32 tensor of 8 elements
    path = write(tmp_path, gguf(BASIC_KVS, [tensor("w", (8,))], data))
    header = read_header(path)
    assert (header.version, header.tensor_count, header.architecture, header.name) == (
        3,
        1,
        "qwen2",
        "Tiny",
    )
    assert header.metadata["qwen2.context_length"] == 4096
    assert header.special_tokens == frozenset(
        {"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"}
    )
    assert header.vocab_size == 4
    assert header.data_offset % 32 == 0
    assert header.expected_size == header.data_offset + 32 == path.stat().st_size


def test_large_token_array_is_summarised_with_specials(tmp_path: Path) -> None:
    tokens = [f"t{i}" for i in range(100)] + ["<fim_prefix>", "▁<PRE>", "<not special", "x>"]
    path = write(tmp_path, gguf([kv("tokenizer.ggml.tokens", ARRAY, (STRING, tokens))]))
    header = read_header(path)
    assert header.metadata["tokenizer.ggml.tokens"] == {"type": STRING, "count": 104}
    assert header.vocab_size == 104
    assert header.special_tokens == frozenset({"<fim_prefix>", "▁<PRE>"})


def test_long_strings_are_summarised_not_kept(tmp_path: Path) -> None:
    long = "x" * 100_000
    path = write(tmp_path, gguf([
        kv("general.name", STRING, long),
        kv("tokenizer.chat_templates", ARRAY, (STRING, ["short", long])),
        kv("general.basename", STRING, "kept"),
    ]))  # fmt: skip
    metadata = read_header(path).metadata
    assert metadata["general.name"] == {"type": STRING, "bytes": 100_000}
    assert metadata["tokenizer.chat_templates"] == {"type": STRING, "count": 2}
    assert metadata["general.basename"] == "kept"


def test_kept_metadata_is_bounded_in_total(tmp_path: Path) -> None:
    """Many small arrays and strings: kept up to a total, then summarised."""
    kvs = [kv(f"layer.{i}.values", ARRAY, (F32, [0.5] * 1000)) for i in range(200)]
    kvs += [kv(f"text.{i}", STRING, "y" * 60_000) for i in range(40)]
    metadata = read_header(write(tmp_path, gguf(kvs))).metadata
    kept_arrays = [k for k, v in metadata.items() if k.startswith("layer.") and isinstance(v, list)]
    kept_strings = [k for k, v in metadata.items() if k.startswith("text.") and isinstance(v, str)]
    assert 0 < len(kept_arrays) < 200 and len(kept_strings) < 40
    assert metadata["layer.199.values"] == {"type": F32, "count": 1000}
    assert metadata["text.39"] == {"type": STRING, "bytes": 60_000}


@pytest.mark.parametrize(
    ("name", "architecture"),
    [
        pytest.param("ggml-vocab-deepseek-coder.gguf", "llama", id="deepseek"),
        pytest.param("ggml-vocab-starcoder.gguf", "starcoder2", id="starcoder"),
        pytest.param("ggml-vocab-refact.gguf", "refact", id="refact"),
        pytest.param("ggml-vocab-llama-spm.gguf", "llama", id="llama-spm"),
    ],
)
def test_real_vocab_files_parse(name: str, architecture: str) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    path = VOCAB_DIR / name
    require_vocab(path)
    header = read_header(path)
    assert (header.version, header.tensor_count, header.architecture) == (3, 0, architecture)
    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    assert header.vocab_size == llm.n_vocab()


# -- bad files: each a GGUFError with a message that says what is wrong --------------------


def _truncated_header() -> bytes:
    whole = gguf(BASIC_KVS)
    return whole[: len(whole) - 20]


BAD_FILES = [
    pytest.param(
        b"PK\x03\x04rest-of-a-zip",
        r"is not a GGUF model \(starts with b'PK\\x03\\x04', expected b'GGUF'\)",
        id="zip-magic",
    ),
    pytest.param(b"", r"is not a GGUF model \(starts with b''", id="empty-file"),
    pytest.param(b"GGU", r"is not a GGUF model \(starts with b'GGU'", id="shorter-than-magic"),
    pytest.param(
        gguf(BASIC_KVS, version=7),
        r"unsupported GGUF version 7 \(2 or 3 expected\)",
        id="bad-version",
    ),
    pytest.param(
        gguf(BASIC_KVS)[:6],
        r"file ends inside its header \(truncated download\?\)",
        id="cut-in-version",
    ),
    pytest.param(
        _truncated_header(),
        r"file ends inside its header \(truncated download\?\)",
        id="cut-in-metadata",
    ),
    pytest.param(
        gguf([kv("a", U32, 1)], [tensor("w", (1024,))], b"\0" * 100),
        r"is truncated: \d+ bytes, but its tensors need \d+ bytes \(download it again\)",
        id="tensor-data-past-eof",
    ),
    pytest.param(
        gguf([kv("a", U32, 1)], [tensor("w", (8,), offset=1 << 20)], b"\0" * 32),
        r"corrupt tensor table \(tensor 'w' claims data offset 1048576, expected 0\)",
        id="tensor-offset-past-eof",
    ),
    pytest.param(
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 40) + b"key",
        r"corrupt header: a string claims 1099511627776 bytes",
        id="corrupt-string-length",
    ),
    pytest.param(
        b"GGUF"
        + struct.pack("<IQQ", 3, 0, 1)
        + gstr("arr")
        + struct.pack("<IIQ", ARRAY, U32, 1 << 50),
        r"corrupt header: array 'arr' claims \d+ items",
        id="corrupt-array-count",
    ),
    pytest.param(
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gstr("k") + struct.pack("<I", 99) + b"\0" * 8,
        r"corrupt header: key 'k' has unknown value type 99",
        id="unknown-value-type",
    ),
    pytest.param(
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gstr("arr") + struct.pack("<IIQ", ARRAY, 77, 1),
        r"corrupt header: array 'arr' has item type 77",
        id="unknown-array-item-type",
    ),
    pytest.param(
        b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 0),
        r"corrupt header \(tensor or key count out of range: 1099511627776 tensors",
        id="absurd-tensor-count",
    ),
    pytest.param(
        gguf([], [gstr("w") + struct.pack("<I", 9) + b"\0" * 90]),
        r"corrupt tensor table \(9 dimensions for tensor 'w'; at most 4\)",
        id="too-many-dimensions",
    ),
    # Lengths and counts are checked before anything is allocated from them.
    pytest.param(
        b"GGUF" + struct.pack("<IQQ", 3, 0, MAX_KV_COUNT + 1),
        rf"tensor or key count out of range: 0 tensors, {MAX_KV_COUNT + 1} keys",
        id="too-many-keys",
    ),
    pytest.param(
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gstr("k" * 5000) + struct.pack("<IB", U8, 1),
        r"a string claims 5000 bytes \(name of key 0; at most 4096 allowed\)",
        id="key-name-too-long",
    ),
    pytest.param(
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gstr("k") + struct.pack("<IQ", STRING, 1 << 30),
        rf"a string claims 1073741824 bytes \(value of 'k'; at most {MAX_STRING_BYTES} allowed\)",
        id="huge-string-value",
    ),
    pytest.param(
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gstr("k") + struct.pack("<IQ", STRING, 4096),
        r"file ends inside its header \(truncated download\?\), in value of 'k'",
        id="string-past-end-of-file",
    ),
    pytest.param(
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gstr("merges")
        + struct.pack("<IIQ", ARRAY, STRING, MAX_STRING_ARRAY_ITEMS + 1),
        rf"array 'merges' claims {MAX_STRING_ARRAY_ITEMS + 1} items \(at most",
        id="huge-string-array",
    ),
    pytest.param(
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gstr("arr") + struct.pack("<IIQ", ARRAY, U32, 1000),
        r"file ends inside its header \(truncated download\?\), in array 'arr' claims 1000 items",
        id="array-past-end-of-file",
    ),
    pytest.param(
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gstr("arr")
        + struct.pack("<IIQ", ARRAY, STRING, 1) + struct.pack("<Q", 1 << 40),
        r"a string claims 1099511627776 bytes \(an item of 'arr'",
        id="huge-string-in-array",
    ),
    pytest.param(
        gguf([kv("a", U32, 1), kv("a", U32, 2)]),
        r"corrupt header \(key 'a' appears twice\)",
        id="duplicate-key",
    ),
    pytest.param(
        gguf([kv("general.alignment", U32, 24)], [tensor("w", (8,))], b"\0" * 32),
        r"general.alignment must be a power of two stored as uint32, got 24",
        id="alignment-not-power-of-two",
    ),
    pytest.param(
        gguf([], [tensor("t" * 64, (8,))], b"\0" * 32),
        r"a string claims 64 bytes \(name of tensor 0; at most 63 allowed\)",
        id="tensor-name-too-long",
    ),
    pytest.param(
        gguf([], [tensor("w", (8,)), tensor("w", (8,), offset=32)], b"\0" * 64),
        r"corrupt tensor table \(tensor 'w' appears twice\)",
        id="duplicate-tensor",
    ),
    pytest.param(
        gguf([], [tensor("w", (8,), type_id=4)], b"\0" * 32),
        r"tensor 'w' has unknown ggml type 4",
        id="removed-tensor-type",
    ),
    pytest.param(
        gguf([], [tensor("w", (8, 1 << 63))], b"\0" * 32),
        r"corrupt tensor table \(tensor 'w' has shape \(8, 9223372036854775808\)\)",
        id="negative-dimension",
    ),
    pytest.param(
        gguf([], [tensor("w", (1 << 32, 1 << 32))], b"\0" * 32),
        r"tensor 'w' has shape \(4294967296, 4294967296\)",
        id="element-count-overflow",
    ),
    pytest.param(
        gguf([], [tensor("w", (10,), type_id=8)], b"\0" * 64),
        r"tensor 'w' rows of 10 elements are not a multiple of its type's block of 32",
        id="row-not-whole-blocks",
    ),
    pytest.param(
        gguf([kv("tokenizer.ggml.tokens", ARRAY, (STRING, ["a", "b", "a"]))]),
        r"tokenizer.ggml.tokens lists 1 token\(s\) twice",
        id="duplicate-token",
    ),
    pytest.param(
        gguf([kv("tokenizer.ggml.tokens", ARRAY, (STRING, ["", "[EMPTY_0]"]))]),
        r"tokenizer.ggml.tokens lists 1 token\(s\) twice",
        id="empty-token-named-like-its-stand-in",
    ),
    pytest.param(
        gguf([
            kv("tokenizer.ggml.tokens", ARRAY, (STRING, ["a", "b", "c"])),
            kv("tokenizer.ggml.scores", ARRAY, (F32, [0.0, 0.0])),
        ]),
        r"tokenizer.ggml.scores has 2 entries for 3 tokens",
        id="scores-shorter-than-vocabulary",
    ),
]


@pytest.mark.parametrize(("content", "message"), BAD_FILES)
def test_bad_files_raise_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(GGUFError, match=message):
        read_header(path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda p: p / "missing.gguf", "model file not found: ", id="missing"),
        pytest.param(lambda p: p, "model path is not a file: ", id="directory"),
    ],
)
def test_missing_or_not_a_file(tmp_path: Path, make: Any, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(GGUFError) as info:
        read_header(path)
    assert str(info.value) == message + str(path)


def test_truncated_header_message_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, _truncated_header())
    with pytest.raises(GGUFError, match=str(path)):
        read_header(path)


# -- hyperparameters that llama.cpp asserts on (an assert aborts the whole process) -------

MODEL_TOKENS = ["<s>", "</s>", "a", "b", "c", "d", "e", "f"]


def model_kvs(**overrides: tuple[int, Any] | None) -> list[bytes]:
    """A small but complete llama-style model header; ``overrides`` replace (or, with
    None, drop) keys, named without the ``llama.`` prefix."""
    values: dict[str, tuple[int, Any] | None] = {
        "block_count": (U32, 2),
        "context_length": (U32, 4096),
        "embedding_length": (U32, 64),
        "feed_forward_length": (U32, 128),
        "attention.head_count": (U32, 4),
        "attention.head_count_kv": (U32, 2),
        "attention.layer_norm_rms_epsilon": (F32, 1e-5),
        "rope.dimension_count": (U32, 16),
    }
    values.update(overrides)
    kvs = [kv("general.architecture", STRING, "llama")]
    kvs += [kv(f"llama.{key}", *value) for key, value in values.items() if value is not None]
    kvs.append(kv("tokenizer.ggml.tokens", ARRAY, (STRING, MODEL_TOKENS)))
    return kvs


def model_file(tmp_path: Path, kvs: list[bytes], layers: int = 2, vocab: int = 8) -> Path:
    tensors, offset = [], 0
    shapes = [("token_embd.weight", (64, vocab))] + [
        (f"blk.{i}.attn_norm.weight", (64,)) for i in range(layers)
    ]
    for name, dims in shapes:
        tensors.append(tensor(name, dims, offset=offset))
        offset += math.prod(dims) * 4
    return write(tmp_path, gguf(kvs, tensors, b"\0" * offset))


def test_valid_model_header_passes(tmp_path: Path) -> None:
    header = read_header(model_file(tmp_path, model_kvs()))
    assert header.tensors.block_indices == {0, 1}
    assert header.tensors.shapes["token_embd.weight"] == (64, 8)
    assert header.vocab_size == len(MODEL_TOKENS)


NAN, INF = float("nan"), float("inf")
EPS = "llama.attention.layer_norm_rms_epsilon"

BAD_HYPERPARAMETERS = [
    pytest.param({"attention.layer_norm_rms_epsilon": (F32, -1.0)}, rf"{EPS} = -1 \(a normalisation epsilon must be a finite number above 0", id="rms-eps-negative"),
    pytest.param({"attention.layer_norm_rms_epsilon": (F32, NAN)}, rf"{EPS} = nan", id="rms-eps-nan"),
    pytest.param({"attention.layer_norm_rms_epsilon": (F32, INF)}, rf"{EPS} = inf", id="rms-eps-inf"),
    pytest.param({"attention.layer_norm_rms_epsilon": (F32, 0.0)}, rf"{EPS} = 0 ", id="rms-eps-zero"),
    pytest.param({"attention.layer_norm_rms_epsilon": (F32, 0.5)}, rf"{EPS} = 0.5 .* at most 0.1", id="rms-eps-huge"),
    pytest.param({"attention.layer_norm_epsilon": (F32, -1e-5)}, r"llama.attention.layer_norm_epsilon = -1e-05", id="layer-norm-eps-negative"),
    pytest.param({"block_count": (U32, 1000)}, r"llama.block_count = 1000 is out of range \(1 to 512\)", id="block-count-1000"),
    pytest.param({"block_count": (U32, 0)}, r"llama.block_count = 0 is out of range", id="block-count-0"),
    pytest.param({"block_count": (U32, 3)}, r"llama.block_count = 3, but the tensor table has layers blk.0 to blk.1", id="block-count-vs-tensors"),
    pytest.param({"block_count": (STRING, "2")}, r"llama.block_count must be an integer, got '2'", id="block-count-string"),
    pytest.param({"context_length": (U32, 0)}, r"llama.context_length = 0 is out of range", id="context-length-0"),
    pytest.param({"embedding_length": (U32, 0)}, r"llama.embedding_length = 0 is out of range", id="embedding-length-0"),
    pytest.param({"embedding_length": (U64, 1 << 40)}, r"llama.embedding_length = 1099511627776 is out of range", id="embedding-length-huge"),
    pytest.param({"embedding_length": (U32, 66)}, r"llama.embedding_length = 66 is not divisible by llama.attention.head_count = 4", id="heads-do-not-divide-embedding"),
    pytest.param({"attention.head_count_kv": (U32, 3)}, r"llama.attention.head_count_kv = 3 does not divide llama.attention.head_count = 4", id="kv-heads-do-not-divide-heads"),
    pytest.param({"attention.head_count_kv": (U32, 8)}, r"head_count_kv = 8 does not divide", id="more-kv-heads-than-heads"),
    pytest.param({"attention.head_count": (ARRAY, (U32, [4, 4, 4]))}, r"llama.attention.head_count has 3 per-layer values for 2 layers", id="per-layer-heads-wrong-length"),
    pytest.param({"attention.head_count_kv": (ARRAY, (U32, [2, 3]))}, r"head_count_kv = 3 does not divide llama.attention.head_count = 4 \(layer 1\)", id="per-layer-kv-heads"),
    pytest.param({"attention.head_count": (U32, 100_000)}, r"llama.attention.head_count = 100000 is out of range", id="absurd-head-count"),
    pytest.param({"rope.dimension_count": (U32, 7)}, r"llama.rope.dimension_count = 7 must be even", id="rope-dims-odd"),
    pytest.param({"rope.dimension_count": (U32, 32)}, r"llama.rope.dimension_count = 32 exceeds the attention head size 16", id="rope-dims-past-head"),
    pytest.param({"rope.scaling.type": (STRING, "bogus")}, r"llama.rope.scaling.type = 'bogus' is not one of none, linear, yarn, longrope", id="rope-scaling-type"),
    pytest.param({"expert_count": (U32, 2000), "expert_used_count": (U32, 2)}, r"llama.expert_count = 2000 is out of range \(0 to 1024\)", id="too-many-experts"),
    pytest.param({"expert_count": (U32, 8), "expert_used_count": (U32, 9)}, r"llama.expert_used_count = 9 exceeds expert_count = 8", id="more-used-experts-than-experts"),
    pytest.param({"expert_count": (U32, 8)}, r"llama.expert_count = 8 but expert_used_count is 0", id="experts-none-used"),
    pytest.param({"expert_used_count": (U32, 2)}, r"llama.expert_used_count = 2 exceeds expert_count = 0", id="used-experts-without-experts"),
    pytest.param({"expert_count": (U32, 8), "expert_used_count": (U32, 2), "expert_group_count": (U32, 3), "expert_group_used_count": (U32, 1)}, r"expert_group_count = 3 and expert_group_used_count = 1 do not fit expert_count = 8", id="expert-groups"),
    pytest.param({"nextn_predict_layers": (U32, 5)}, r"llama.nextn_predict_layers = 5 exceeds block_count 2", id="nextn-layers"),
    pytest.param({"vocab_size": (U32, 9)}, r"llama.vocab_size = 9, but tokenizer.ggml.tokens has 8", id="vocab-size-vs-tokens"),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "message"), BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_raise_errors_naming_the_field(
    tmp_path: Path, overrides: dict[str, tuple[int, Any]], message: str
) -> None:
    path = model_file(tmp_path, model_kvs(**overrides))
    with pytest.raises(GGUFError, match=message):
        read_header(path)
    header = read_header(path, check=False)  # the header itself is well-formed
    assert header.tensor_count == 3


def test_embedding_rows_must_match_vocabulary(tmp_path: Path) -> None:
    path = model_file(tmp_path, model_kvs(), vocab=9)
    with pytest.raises(GGUFError, match="token_embd.weight has 9 rows, but tokenizer.ggml.tokens has 8"):
        read_header(path)


def test_vocabulary_only_files_skip_model_checks(tmp_path: Path) -> None:
    kvs = model_kvs(**{"attention.layer_norm_rms_epsilon": (F32, -1.0)})
    header = read_header(write(tmp_path, gguf(kvs)))  # llama.cpp reads no hparams for these
    assert header.vocab_size == len(MODEL_TOKENS)


# -- the real embedded model's header, patched --------------------------------------------------

GEMMA_EPS = "gemma3.attention.layer_norm_rms_epsilon"

REAL_HEADER_PATCHES = [
    pytest.param({GEMMA_EPS: -1.0}, rf"{GEMMA_EPS} = -1 ", id="rms-eps-negative"),
    pytest.param({GEMMA_EPS: NAN}, rf"{GEMMA_EPS} = nan", id="rms-eps-nan"),
    pytest.param({"gemma3.block_count": 1000}, r"gemma3.block_count = 1000 is out of range", id="block-count-1000"),
    pytest.param({"gemma3.block_count": 17}, r"gemma3.block_count = 17, but the tensor table has layers blk.0 to blk.17", id="block-count-17"),
    pytest.param({"gemma3.attention.head_count_kv": 3}, r"head_count_kv = 3 does not divide gemma3.attention.head_count = 4", id="kv-heads"),
    pytest.param({"gemma3.embedding_length": 0}, r"gemma3.embedding_length = 0 is out of range", id="embedding-0"),
    pytest.param({"gemma3.context_length": 0}, r"gemma3.context_length = 0 is out of range", id="context-0"),
]  # fmt: skip


def test_real_embedded_header_passes(embedded_model_path: Path) -> None:
    header = read_header(embedded_model_path)
    assert header.architecture == "gemma3"
    assert header.tensors.block_indices == set(range(header.metadata["gemma3.block_count"]))
    assert header.vocab_size == header.tensors.shapes["token_embd.weight"][1]


@pytest.mark.parametrize(("values", "message"), REAL_HEADER_PATCHES)
def test_patched_real_header_is_refused(
    tmp_path: Path, embedded_model_path: Path, values: dict[str, float], message: str
) -> None:
    path = patched(embedded_model_path, tmp_path / "hostile.gguf", values)
    with pytest.raises(GGUFError, match=message):
        verify(path)


# -- memory: lengths within the file are skipped, not read whole -------------------------------

_PEAK_RSS = """
import resource, sys
from lsp_server.backends.gguf import GGUFError
from lsp_server.backends.registry import verify
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    verify(sys.argv[1])
    outcome = "ok"
except GGUFError as error:
    outcome = str(error)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024)
print(outcome)
"""

SPARSE_SIZE = 1_500_000_000


def _sparse(path: Path, pieces: list[bytes | int]) -> Path:
    """A file of SPARSE_SIZE bytes: ``pieces`` are bytes to write or lengths of holes."""
    with open(path, "wb") as stream:
        for piece in pieces:
            if isinstance(piece, int):
                stream.seek(piece, 1)
            else:
                stream.write(piece)
        stream.truncate(SPARSE_SIZE)
    return path


SPARSE_FILES = [
    pytest.param(
        [b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gstr("blob") + struct.pack("<IIQ", ARRAY, U8, SPARSE_SIZE - 64)],
        r"array 'blob' claims 1499999936 items \(at most",
        id="byte-array-the-size-of-the-file",
    ),
    pytest.param(
        [b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + gstr("numbers") + struct.pack("<IIQ", ARRAY, U64, 1 << 24),
         8 << 24, gstr("text") + struct.pack("<IQ", STRING, MAX_STRING_BYTES)],
        "ok",
        id="128-MiB-array-and-16-MiB-string-skipped",
    ),
    pytest.param(
        [b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gstr("merges") + struct.pack("<IIQ", ARRAY, STRING, 80)]
        + [piece for _ in range(80) for piece in (struct.pack("<Q", MAX_STRING_BYTES), MAX_STRING_BYTES)],
        "ok",
        id="80-strings-of-16-MiB-not-kept",
    ),
    pytest.param(
        [b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gstr("text") + struct.pack("<IQ", STRING, SPARSE_SIZE - 64)],
        r"a string claims 1499999936 bytes \(value of 'text'; at most",
        id="string-the-size-of-the-file",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("pieces", "outcome"), SPARSE_FILES)
def test_sparse_file_verify_peak_memory_stays_small(
    tmp_path: Path, pieces: list[bytes | int], outcome: str
) -> None:
    path = _sparse(tmp_path / "sparse.gguf", pieces)
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(path)], capture_output=True, text=True, check=True
    )
    grown_mb, said = result.stdout.splitlines()[:2]
    print(f"{path.stat().st_size} byte sparse file: verify's peak RSS grew {grown_mb} MB ({said})")
    assert int(grown_mb) < 64, result.stdout  # was 2.8 GB before lengths were capped
    if outcome == "ok":
        assert said == "ok"
    else:
        assert re.search(outcome, said), said


# -- registry: sha256 and resolution ---------------------------------------------------------


def registry_file(
    tmp_path: Path, file: str, sha: str, name: str = "tiny", embedded: bool = False
) -> Path:
    path = tmp_path / "registry.toml"
    path.write_text(
        "[[model]]\n"
        f'name = "{name}"\ndescription = "test"\nsource = "https://example.invalid/tiny"\n'
        f'file = "{file}"\nsha256 = "{sha}"\nfim = "qwen"\nn_ctx = 4096\nlicense = "MIT"\n'
        f"embedded = {'true' if embedded else 'false'}\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    return write(models, gguf(BASIC_KVS), "tiny-q8_0.gguf")


def test_verify_sha_mismatch(tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GHOSTPILOT_REGISTRY", str(registry_file(tmp_path, tiny.name, "0" * 64)))
    actual = hashlib.sha256(tiny.read_bytes()).hexdigest()
    with pytest.raises(GGUFError) as info:
        verify(tiny)
    assert f"sha256 {actual} does not match the registry's {'0' * 64}" in str(info.value)


def test_verify_sha_match(tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = hashlib.sha256(tiny.read_bytes()).hexdigest()
    monkeypatch.setenv("GHOSTPILOT_REGISTRY", str(registry_file(tmp_path, tiny.name, digest)))
    result = verify(tiny)
    assert (result.sha256, result.expected_sha256, result.sha_ok) == (digest, digest, True)
    assert sha256_of(tiny) == digest


def test_verify_unknown_file_skips_sha(
    tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GHOSTPILOT_REGISTRY", str(registry_file(tmp_path, "other.gguf", "0" * 64)))
    result = verify(tiny)
    assert (result.sha256, result.expected_sha256, result.sha_ok) == (None, None, None)


def test_verify_bad_file_is_a_gguf_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GHOSTPILOT_REGISTRY", str(registry_file(tmp_path, "x.gguf", "0" * 64)))
    path = write(tmp_path, b"not a model at all", "x.gguf")
    with pytest.raises(GGUFError, match="is not a GGUF model"):
        verify(path)


def test_resolve_path(tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GHOSTPILOT_REGISTRY", str(registry_file(tmp_path, tiny.name, "0" * 64)))
    resolved = resolve(str(tiny))
    assert (resolved.name, resolved.path) == ("tiny-q8_0.gguf", tiny)
    assert resolved.entry is not None and resolved.entry.name == "tiny"


def test_resolve_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=f"model file not found: {tmp_path / 'nope.gguf'}"):
        resolve(str(tmp_path / "nope.gguf"))


def test_resolve_name_downloaded(
    tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GHOSTPILOT_REGISTRY", str(registry_file(tmp_path, tiny.name, "0" * 64)))
    monkeypatch.setenv("GHOSTPILOT_MODELS_DIR", str(tiny.parent))
    monkeypatch.chdir(tmp_path)
    resolved = resolve("tiny")
    assert (resolved.name, resolved.path) == ("tiny", tiny)


def test_resolve_name_not_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GHOSTPILOT_REGISTRY", str(registry_file(tmp_path, "tiny-q8_0.gguf", "0" * 64))
    )
    monkeypatch.setenv("GHOSTPILOT_MODELS_DIR", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFound) as info:
        resolve("tiny")
    assert str(info.value) == (
        "model 'tiny' is not downloaded: fetch tiny-q8_0.gguf from https://example.invalid/tiny "
        f"into {tmp_path / 'empty'} (or set the model setting to the file's path)"
    )


def test_resolve_unknown_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GHOSTPILOT_REGISTRY", str(registry_file(tmp_path, "tiny-q8_0.gguf", "0" * 64))
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFound) as info:
        resolve("gpt-5")
    assert str(info.value) == "unknown model 'gpt-5': give a .gguf path or one of: tiny"
