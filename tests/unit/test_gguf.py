"""GGUF header reading and model registry checks, on real vocab files and tiny synthetic ones."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lsp_server.backends.gguf import GGUFError, read_header, sha256_of
from lsp_server.backends.registry import ModelNotFound, resolve, verify
from tests.conftest import VOCAB_DIR, require_vocab

# -- a small GGUF writer ----------------------------------------------------------------

U8, I32, U32, F32, BOOL, STRING, ARRAY, U64 = 0, 5, 4, 6, 7, 8, 9, 10


def gstr(text: str | bytes) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str, type_id: int, value: Any) -> bytes:
    head = gstr(key) + struct.pack("<I", type_id)
    if type_id == STRING:
        return head + gstr(value)
    if type_id == U32:
        return head + struct.pack("<I", value)
    if type_id == F32:
        return head + struct.pack("<f", value)
    if type_id == BOOL:
        return head + struct.pack("<?", value)
    if type_id == ARRAY:
        item_type, items = value
        body = struct.pack("<IQ", item_type, len(items))
        if item_type == STRING:
            return head + body + b"".join(gstr(i) for i in items)
        return head + body + b"".join(struct.pack("<i", i) for i in items)
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
        r"is truncated: .* need \d+ bytes",
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
        r"corrupt header \(tensor or key count out of range\)",
        id="absurd-tensor-count",
    ),
    pytest.param(
        gguf([], [gstr("w") + struct.pack("<I", 9) + b"\0" * 90]),
        r"corrupt tensor table \(9 dimensions\)",
        id="too-many-dimensions",
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
