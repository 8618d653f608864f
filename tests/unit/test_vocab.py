"""A model with a smaller vocabulary (backends/vocab.py): the GGUF rewrite on tiny synthetic
files, SentencePiece's merge closure, and the registry's code-vocabulary model, derived from
the real embedded model and checked against the tokenizer of the full one."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from lsp_server.backends import vocab
from lsp_server.backends.gguf import GGUFError, read_header
from lsp_server.backends.registry import ModelNotFound, find_entry, installed_path, resolve
from lsp_server.backends.vocab import (
    Vocabulary,
    closed_under_merges,
    derive,
    read_vocabulary,
    spm_merges,
)
from lsp_server.config import DEFAULT_MODEL
from tests.unit.test_gguf import ARRAY, F32, I32, STRING, U32, gguf, kv, tensor

Q8_0 = 8  # 34 bytes per block of 32
TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "a", "b", "ab", "c", "abc", "zz"]
SCORES = [0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -0.5, -3.0, -0.2, -9.0]
TYPES = [3, 3, 3, 2, 1, 1, 1, 1, 1, 1]


def tiny(tmp_path: Path, *, model: str = "llama", eos: int = 1, alignment: int | None = None) -> Path:
    """A GGUF with a 10-token SPM vocabulary, a Q8_0 token embedding (one block per row,
    each row's bytes its token id) and one other tensor."""
    kvs = [
        kv("general.architecture", STRING, "gemma3"),
        kv("tokenizer.ggml.model", STRING, model),
        kv("tokenizer.ggml.tokens", ARRAY, (STRING, TOKENS)),
        kv("tokenizer.ggml.scores", ARRAY, (F32, SCORES)),
        kv("tokenizer.ggml.token_type", ARRAY, (I32, TYPES)),
        kv("tokenizer.ggml.eos_token_id", U32, eos),
        kv("tokenizer.ggml.bos_token_id", U32, 2),
    ]
    if alignment:
        kvs.append(kv("general.alignment", U32, alignment))
    align = alignment or 32
    embd = b"".join(bytes([row]) * 34 for row in range(len(TOKENS)))
    other = struct.pack("<8f", *range(8))
    padded = embd + b"\0" * (-len(embd) % align)
    tensors = [tensor("token_embd.weight", (32, len(TOKENS)), Q8_0, 0),
               tensor("blk.0.w", (8,), 0, len(padded))]
    head = gguf(kvs, tensors)
    head += b"\0" * (-len(head) % align)
    path = tmp_path / "full.gguf"
    path.write_bytes(head + padded + other)
    return path


def test_derive_keeps_the_chosen_tokens_and_their_rows(tmp_path: Path) -> None:
    source = tiny(tmp_path)
    out = tmp_path / "small.gguf"
    derive(source, np.array([0, 1, 2, 3, 4, 6, 8]), out)
    header = read_header(out)  # the strict reader: offsets, sizes, alignment
    vocabulary = read_vocabulary(out)
    assert [t.decode() for t in vocabulary.tokens] == ["<pad>", "<eos>", "<bos>", "<unk>", "a", "ab", "abc"]
    assert vocabulary.scores.tolist() == pytest.approx([0, 0, 0, 0, -1.0, -0.5, -0.2])
    assert vocabulary.types.tolist() == [3, 3, 3, 2, 1, 1, 1]
    assert header.metadata["tokenizer.ggml.eos_token_id"] == 1
    data = out.read_bytes()
    start = header.data_offset
    rows = data[start : start + 7 * 34]
    assert [rows[i * 34] for i in range(7)] == [0, 1, 2, 3, 4, 6, 8]
    assert rows == b"".join(bytes([r]) * 34 for r in (0, 1, 2, 3, 4, 6, 8))
    assert data.endswith(struct.pack("<8f", *range(8)))


def test_special_ids_are_renumbered_and_a_dropped_one_is_refused(tmp_path: Path) -> None:
    source = tiny(tmp_path, eos=8)
    out = tmp_path / "small.gguf"
    derive(source, np.array([0, 2, 3, 4, 8]), out)
    assert read_header(out).metadata["tokenizer.ggml.eos_token_id"] == 4
    with pytest.raises(GGUFError, match="eos_token_id .8. is not among the tokens kept"):
        derive(source, np.array([0, 2, 3, 4]), tmp_path / "other.gguf")
    assert not (tmp_path / "other.gguf").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers


@pytest.mark.parametrize("keep, message", [
    ([3, 1, 2], "ascending and unique"),
    ([0, 1, 1], "ascending and unique"),
    ([], "ascending and unique"),
    ([0, 1, 2, 10], "run past its 10 tokens"),
])  # fmt: skip
def test_bad_token_lists_are_refused(tmp_path: Path, keep: list[int], message: str) -> None:
    with pytest.raises(GGUFError, match=message):
        derive(tiny(tmp_path), np.array(keep, dtype=np.int64), tmp_path / "small.gguf")


def test_only_sentencepiece_vocabularies_are_trimmed(tmp_path: Path) -> None:
    with pytest.raises(GGUFError, match="only SentencePiece"):
        derive(tiny(tmp_path, model="gpt2"), np.arange(10), tmp_path / "small.gguf")


def test_alignment_is_respected_and_the_output_is_deterministic(tmp_path: Path) -> None:
    source = tiny(tmp_path, alignment=64)
    first, second = tmp_path / "one.gguf", tmp_path / "two.gguf"
    derive(source, np.array([0, 1, 2, 3, 5]), first)
    derive(source, np.array([0, 1, 2, 3, 5]), second)
    assert read_header(first).data_offset % 64 == 0
    assert first.read_bytes() == second.read_bytes()


def toy() -> Vocabulary:
    return Vocabulary([t.encode() for t in TOKENS], np.array(SCORES, dtype=np.float32),
                      np.array(TYPES, dtype=np.int32), "llama")


def test_spm_merges_follow_the_scores() -> None:
    vocabulary = toy()
    index = {t.decode(): i for i, t in enumerate(vocabulary.tokens)}

    def lookup(text: str) -> tuple[int, float] | None:
        return (index[text], float(vocabulary.scores[index[text]])) if text in index else None

    assert spm_merges("abc", lookup) == [index["ab"], index["abc"]]
    assert spm_merges("ca", lookup) == []


def test_the_closure_adds_what_the_tokenizer_forms_on_the_way() -> None:
    vocabulary = toy()
    closed = closed_under_merges({0, 1, 2, 3, 8}, vocabulary)  # "abc" is formed through "ab"
    assert closed == {0, 1, 2, 3, 6, 8}


# -- the registry's code-vocabulary model, from the real embedded one ----------------------


@pytest.fixture(scope="module")
def derived(tmp_path_factory: pytest.TempPathFactory, embedded_model_path: Path) -> Path:
    models = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GHOSTPILOT_MODELS_DIR", str(models))
        resolved = resolve(DEFAULT_MODEL)
    assert resolved.path.parent == models and resolved.entry is not None
    return resolved.path


def test_the_default_model_is_written_from_the_embedded_one_as_the_registry_pins(derived: Path) -> None:
    entry = find_entry(DEFAULT_MODEL)
    assert entry is not None and entry.derived_from == "gemma3-270m"
    assert hashlib.sha256(derived.read_bytes()).hexdigest() == entry.sha256
    assert derived.stat().st_size == entry.size_bytes


CODE = '''import os
from collections import defaultdict


class Cache(dict):
    """Keep the last ``limit`` values; évite les doublons (non-ASCII text too: 速い)."""

    def __missing__(self, key):
        value = self[key] = os.path.join("/tmp", str(key))
        return value
'''


def test_code_tokenizes_as_with_the_full_vocabulary(derived: Path, embedded_model_path: Path) -> None:
    from llama_cpp import Llama

    full = Llama(str(embedded_model_path), vocab_only=True, verbose=False)
    small = Llama(str(derived), vocab_only=True, verbose=False)
    keep = np.load(Path(__file__).resolve().parents[2] / "models" / "vocab" / f"{DEFAULT_MODEL}.npy")
    renumber = {int(old): new for new, old in enumerate(keep)}
    code = "".join(line for line in CODE.splitlines(keepends=True) if '"""' not in line).encode()
    ids = full.tokenize(code, add_bos=True)
    assert all(token in renumber for token in ids)  # plain code: every token is kept...
    assert small.tokenize(code, add_bos=True) == [renumber[t] for t in ids]  # ...and the same
    # Words in other scripts may be spelt with smaller tokens, but every text round-trips.
    text = CODE.encode()
    assert len(small.tokenize(text, add_bos=False)) >= len(full.tokenize(text, add_bos=False))
    assert small.detokenize(small.tokenize(text, add_bos=False)) == text
    assert small.token_bos() == full.token_bos() and small.token_eos() == full.token_eos()


# -- resolving a derived registry entry ------------------------------------------------------


@pytest.fixture
def derived_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A registry with a tiny full model in the models directory and an entry derived from it."""
    models = tmp_path / "models"
    models.mkdir()
    source = tiny(models)
    keep = tmp_path / "small.npy"
    np.save(keep, np.array([0, 1, 2, 3, 4, 6, 8], dtype=np.uint32))
    expected = tmp_path / "expected.gguf"
    derive(source, np.load(keep), expected)
    registry = tmp_path / "registry.toml"
    registry.write_text(f'''
[[model]]
name = "full"
description = "d"
source = "s"
file = "full.gguf"
sha256 = "{hashlib.sha256(source.read_bytes()).hexdigest()}"
fim = "none"
n_ctx = 512
license = "MIT"

[[model]]
name = "small"
description = "d"
source = "s"
file = "small.gguf"
sha256 = "{hashlib.sha256(expected.read_bytes()).hexdigest()}"
size_bytes = {expected.stat().st_size}
derived_from = "full"
base_sha256 = "{hashlib.sha256(source.read_bytes()).hexdigest()}"
vocab = "{keep}"
fim = "none"
n_ctx = 512
license = "MIT"
''')
    monkeypatch.setenv("GHOSTPILOT_REGISTRY", str(registry))
    monkeypatch.setenv("GHOSTPILOT_MODELS_DIR", str(models))
    return {"models": models, "source": source, "expected": expected, "registry": registry}


def test_a_derived_entry_is_written_once_and_rewritten_when_damaged(derived_registry: dict[str, Path]) -> None:
    path = derived_registry["models"] / "small.gguf"
    assert installed_path(find_entry("small")) == path and not path.exists()  # type: ignore[arg-type]
    resolved = resolve("small")
    assert resolved.path == path and resolved.entry is not None and resolved.entry.name == "small"
    assert path.read_bytes() == derived_registry["expected"].read_bytes()
    written = path.stat().st_mtime_ns
    assert resolve("small").path == path and path.stat().st_mtime_ns == written  # not again
    path.write_bytes(path.read_bytes()[:100])  # truncated
    resolve("small")
    assert path.read_bytes() == derived_registry["expected"].read_bytes()


def test_a_source_with_other_bytes_is_refused(derived_registry: dict[str, Path]) -> None:
    source = derived_registry["source"]
    source.write_bytes(source.read_bytes()[:-4] + b"\x00\x00\x80\x3f")  # one weight changed
    with pytest.raises(ModelNotFound, match=r"derived from a file with sha256 .* differs \(reinstall it\)"):
        resolve("small")
    assert not (derived_registry["models"] / "small.gguf").exists()


def test_a_result_that_differs_from_the_registry_is_deleted(derived_registry: dict[str, Path]) -> None:
    registry = derived_registry["registry"]
    text = registry.read_text()
    wrong = hashlib.sha256(derived_registry["expected"].read_bytes()).hexdigest()
    registry.write_text(text.replace(wrong, "0" * 64))
    with pytest.raises(ModelNotFound, match="not the registry's 0000"):
        resolve("small")
    assert not (derived_registry["models"] / "small.gguf").exists()


def test_an_unwritable_models_directory_falls_back_to_the_full_model(
    derived_registry: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vocab, "derive", full_disk)
    resolved = resolve("small")
    assert resolved.name == "full" and resolved.path == derived_registry["source"]
    assert "No space left on device" in caplog.text and "the full vocabulary" in caplog.text


def test_the_kept_list_is_what_code_uses_plus_specials_and_merges() -> None:
    from training.code_vocab import kept

    vocabulary = Vocabulary([t.encode() for t in TOKENS], np.array(SCORES, dtype=np.float32),
                            np.array([3, 3, 3, 2, 1, 6, 1, 4, 1, 1], dtype=np.int32), "llama",
                            frozenset({1, 2}))
    # seen "abc"; "ab" forms on the way; "b" is a byte token, "c" user-defined; eos and bos named.
    assert kept({8}, vocabulary).tolist() == [1, 2, 5, 6, 7, 8]


def test_a_missing_or_bad_token_list_is_a_clear_error(derived_registry: dict[str, Path]) -> None:
    registry = derived_registry["registry"]
    keep = registry.parent / "small.npy"
    keep.write_bytes(b"not numpy")
    with pytest.raises(ModelNotFound, match="cannot be written from .*full.gguf"):
        resolve("small")
    keep.unlink()
    with pytest.raises(ModelNotFound, match="its token list .*small.npy is missing"):
        resolve("small")
    assert installed_path(find_entry("small")) is None  # type: ignore[arg-type]
