"""Prompt tokens cached by line: the pieces' tokens must be the text's own tokens, checked
on the embedded model's tokenizer and the four vocab-only GGUFs, on real source files."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lsp_server.prompts.tokens import PromptTokenizer, split_pieces, splits_exactly
from tests.conftest import VOCAB_DIR, require_vocab

llama_cpp = pytest.importorskip("llama_cpp")


@given(st.text(alphabet=st.sampled_from(list("ab \t\n:(é")), max_size=60))
def test_pieces_join_back_and_cut_only_before_a_newline_after_text(text: str) -> None:
    pieces = split_pieces(text)
    assert "".join(pieces) == text
    assert all(pieces)
    for before, after in zip(pieces, pieces[1:]):
        assert after.startswith("\n") and not before[-1].isspace()


def _chars(text: str) -> list[int]:
    return [ord(ch) for ch in text]


def _word_start(text: str) -> list[int]:
    """A SentencePiece-like tokenizer that adds a word-start marker to every text."""
    return [0x2581] + _chars(text)


def test_split_exactness_is_probed() -> None:
    assert splits_exactly(_chars)
    assert not splits_exactly(_word_start)


def test_typing_retokenizes_only_the_edited_line() -> None:
    calls: list[str] = []

    def tokenize(text: str) -> list[int]:
        calls.append(text)
        return _chars(text)

    tokenizer = PromptTokenizer(tokenize)
    assert tokenizer.by_pieces
    head = "import os\n\n\ndef f(x):\n    y = x + 1\n"
    tokenizer.tokens(head + "    return y")
    calls.clear()
    assert tokenizer.tokens(head + "    return y +") == _chars(head + "    return y +")
    assert calls == ["\n    return y +"]
    assert tokenizer(head + "    return y +") == len(head + "    return y +")
    assert calls == ["\n    return y +"]


def test_a_tokenizer_that_does_not_split_is_used_whole() -> None:
    calls: list[str] = []

    def tokenize(text: str) -> list[int]:
        calls.append(text)
        return _word_start(text)

    tokenizer = PromptTokenizer(tokenize)
    assert not tokenizer.by_pieces
    calls.clear()
    text = "a = 1\nb = 2"
    assert tokenizer.tokens(text) == _word_start(text)
    assert tokenizer(text) == len(_word_start(text))
    assert calls == [text]


SOURCES = [textwrap, inspect]
VOCABS = {
    "deepseek": ("ggml-vocab-deepseek-coder.gguf", True),
    "starcoder": ("ggml-vocab-starcoder.gguf", True),
    "refact": ("ggml-vocab-refact.gguf", True),
    # Adds a word-start space to every text: the probe must turn piecewise tokens off.
    "llama-spm": ("ggml-vocab-llama-spm.gguf", False),
}


def _check_real_tokenizer(llm: object, expected_by_pieces: bool) -> None:
    def tokenize(text: str) -> list[int]:
        return list(llm.tokenize(text.encode(), add_bos=False, special=False))  # type: ignore[attr-defined]

    tokenizer = PromptTokenizer(tokenize)
    assert tokenizer.by_pieces is expected_by_pieces
    for module in SOURCES:
        source = Path(inspect.getsourcefile(module) or "").read_text(encoding="utf-8")
        for start in range(0, min(len(source), 60_000), 6_000):
            text = source[start : start + 6_000]
            assert tokenizer.tokens(text) == tokenize(text), (module.__name__, start)
            assert tokenizer(text) == len(tokenize(text))


@pytest.mark.parametrize("name", sorted(VOCABS))
def test_vocab_tokenizers_match_whole_text(name: str) -> None:
    filename, expected = VOCABS[name]
    path = require_vocab(VOCAB_DIR / filename)
    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    _check_real_tokenizer(llm, expected)


def test_embedded_model_tokenizer_matches_whole_text(embedded_model_path: Path) -> None:
    llm = llama_cpp.Llama(str(embedded_model_path), vocab_only=True, verbose=False)
    _check_real_tokenizer(llm, True)
