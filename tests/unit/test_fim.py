"""FIM templates: detection from GGUF metadata + vocabulary, and prompts built as token ids,
checked against the real vocab-only GGUFs of llama.cpp (``tests.conftest.VOCAB_DIR``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lsp_server.backends.fim import (
    CODEGEMMA,
    CODELLAMA,
    DEEPSEEK,
    QWEN,
    REFACT,
    STARCODER,
    FimTemplate,
    detect_template,
    resolve_tokens,
    template_by_name,
)
from lsp_server.backends.gguf import read_header
from lsp_server.prompts.fim import assemble
from tests.conftest import VOCAB_DIR, require_vocab

llama_cpp = pytest.importorskip("llama_cpp")

VOCABS = {
    "deepseek": "ggml-vocab-deepseek-coder.gguf",
    "starcoder": "ggml-vocab-starcoder.gguf",
    "refact": "ggml-vocab-refact.gguf",
    "llama-spm": "ggml-vocab-llama-spm.gguf",
}

PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\nprint(add(1, 2))\n"


def vocab_path(name: str) -> Path:
    path = VOCAB_DIR / VOCABS[name]
    require_vocab(path)
    return path


@pytest.fixture(scope="module")
def vocab() -> Iterator[Callable[[str], Any]]:
    """Vocab-only ``Llama`` objects by short name, loaded once per module."""
    loaded: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in loaded:
            loaded[name] = llama_cpp.Llama(str(vocab_path(name)), vocab_only=True, verbose=False)
        return loaded[name]

    yield get
    loaded.clear()


def special_tokenizer(llm: Any) -> Callable[[str], list[int]]:
    return lambda text: llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def plain_ids(llm: Any, text: str) -> list[int]:
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)


# -- detection from the real files ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("deepseek", DEEPSEEK, id="deepseek-coder"),
        pytest.param("starcoder", STARCODER, id="starcoder"),
        pytest.param("refact", REFACT, id="refact-is-spm"),
        pytest.param("llama-spm", None, id="llama-spm-has-no-fim"),
    ],
)
def test_detect_template_from_real_gguf(name: str, expected: FimTemplate | None) -> None:
    header = read_header(vocab_path(name))
    assert detect_template(header.metadata, header.special_tokens) == expected


def test_detection_ignores_the_file_name(tmp_path: Path) -> None:
    misleading = tmp_path / "starcoder2-3b-q4.gguf"
    misleading.symlink_to(vocab_path("deepseek"))
    header = read_header(misleading)
    assert detect_template(header.metadata, header.special_tokens) == DEEPSEEK


# -- markers are single special tokens; assembled prompts decode to the layout -----------


@pytest.mark.parametrize(
    ("name", "template"),
    [
        pytest.param("deepseek", DEEPSEEK, id="deepseek"),
        pytest.param("starcoder", STARCODER, id="starcoder"),
        pytest.param("refact", REFACT, id="refact"),
    ],
)
def test_markers_are_single_special_tokens(
    vocab: Callable[[str], Any], name: str, template: FimTemplate
) -> None:
    llm = vocab(name)
    tokens = resolve_tokens(template, special_tokenizer(llm))
    for marker, token in zip(template.markers, (tokens.prefix, tokens.suffix, tokens.middle)):
        assert llm.detokenize([token], special=True).decode("utf-8") == marker
        # The same text typed by a user is not the control token.
        assert plain_ids(llm, marker) != [token]
    assert len({tokens.prefix, tokens.suffix, tokens.middle}) == 3


@pytest.mark.parametrize(
    ("name", "template", "stop_texts"),
    [
        pytest.param(
            "deepseek",
            DEEPSEEK,
            {"<｜end▁of▁sentence｜>", "<|EOT|>", "<｜fim▁begin｜>"},
            id="deepseek",
        ),
        pytest.param(
            "starcoder",
            STARCODER,
            {"<|endoftext|>", "<file_sep>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"},
            id="starcoder",
        ),
        pytest.param(
            "refact",
            REFACT,
            {"<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"},
            id="refact",
        ),
    ],
)
def test_stop_tokens(
    vocab: Callable[[str], Any], name: str, template: FimTemplate, stop_texts: set[str]
) -> None:
    llm = vocab(name)
    tokens = resolve_tokens(template, special_tokenizer(llm))
    assert {llm.detokenize([t], special=True).decode("utf-8") for t in tokens.stops} == stop_texts


@pytest.mark.parametrize(
    ("name", "template", "layout"),
    [
        pytest.param(
            "deepseek",
            DEEPSEEK,
            "<｜begin▁of▁sentence｜><｜fim▁begin｜>"
            + PREFIX
            + "<｜fim▁hole｜>"
            + SUFFIX
            + "<｜fim▁end｜>",
            id="deepseek-psm-with-bos",
        ),
        pytest.param(
            "starcoder",
            STARCODER,
            "<fim_prefix>" + PREFIX + "<fim_suffix>" + SUFFIX + "<fim_middle>",
            id="starcoder-psm",
        ),
        pytest.param(
            "refact",
            REFACT,
            "<fim_suffix>" + SUFFIX + "<fim_prefix>" + PREFIX + "<fim_middle>",
            id="refact-spm",
        ),
    ],
)
def test_assembled_prompt_layout(
    vocab: Callable[[str], Any], name: str, template: FimTemplate, layout: str
) -> None:
    llm = vocab(name)
    tokens = resolve_tokens(template, special_tokenizer(llm))
    add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token") == "true"
    bos = [llm.token_bos()] if add_bos else []
    assert tokens.order == template.order
    ids = assemble(tokens, plain_ids(llm, PREFIX), plain_ids(llm, SUFFIX), bos)
    assert llm.detokenize(ids, special=True).decode("utf-8") == layout
    markers = [i for i in ids if i in (tokens.prefix, tokens.suffix, tokens.middle)]
    expected_order = (
        [tokens.suffix, tokens.prefix, tokens.middle]
        if template.order == "spm"
        else [tokens.prefix, tokens.suffix, tokens.middle]
    )
    assert markers == expected_order
    assert ids[-1] == tokens.middle


def test_marker_text_in_user_code_stays_plain(vocab: Callable[[str], Any]) -> None:
    """Code that mentions ``<fim_suffix>`` must not inject a control token."""
    llm = vocab("starcoder")
    tokens = resolve_tokens(STARCODER, special_tokenizer(llm))
    prefix = 'MARK = "<fim_suffix>"\n'
    ids = assemble(tokens, plain_ids(llm, prefix), plain_ids(llm, ""), [])
    assert ids.count(tokens.suffix) == 1
    assert (
        llm.detokenize(ids, special=True).decode("utf-8")
        == "<fim_prefix>" + prefix + "<fim_suffix><fim_middle>"
    )


@pytest.mark.parametrize(
    "template",
    [
        pytest.param(STARCODER, id="starcoder"),
        pytest.param(DEEPSEEK, id="deepseek"),
        pytest.param(CODELLAMA, id="codellama"),
        pytest.param(QWEN, id="qwen"),
    ],
)
def test_llama_spm_vocab_has_no_fim_markers(
    vocab: Callable[[str], Any], template: FimTemplate
) -> None:
    with pytest.raises(ValueError, match="is not a single token in this vocabulary"):
        resolve_tokens(template, special_tokenizer(vocab("llama-spm")))


# -- detection from synthetic metadata tables -------------------------------------------

QWEN_VOCAB = {"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|endoftext|>", "<|file_sep|>"}
CODELLAMA_VOCAB = {"▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>", "<s>", "</s>"}
STARCODER_VOCAB = {"<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<|endoftext|>"}


@pytest.mark.parametrize(
    ("metadata", "vocab_set", "expected"),
    [
        pytest.param(
            {"general.architecture": "qwen2", "general.name": "Qwen2.5 Coder 1.5B"},
            QWEN_VOCAB,
            QWEN,
            id="qwen2.5-coder",
        ),
        pytest.param(
            {"general.architecture": "gemma", "general.name": "codegemma-2b"},
            QWEN_VOCAB,
            CODEGEMMA,
            id="codegemma",
        ),
        pytest.param(
            {
                "general.architecture": "gemma",
                "general.basename": "CodeGemma",
                "general.name": "Model",
            },
            QWEN_VOCAB,
            CODEGEMMA,
            id="codegemma-from-basename",
        ),
        pytest.param(
            {"general.architecture": "gemma", "general.name": "gemma-2b"},
            QWEN_VOCAB,
            None,
            id="gemma-base",
        ),
        pytest.param(
            {"general.architecture": "gemma3", "general.name": "Gemma 3 270m"},
            QWEN_VOCAB,
            None,
            id="gemma3",
        ),
        pytest.param(
            {"general.architecture": "gemma2", "general.name": "gemma-2-2b"},
            QWEN_VOCAB,
            None,
            id="gemma2",
        ),
        pytest.param(
            {"general.architecture": "llama", "general.name": "CodeLlama-7b"},
            CODELLAMA_VOCAB,
            CODELLAMA,
            id="codellama-vocab",
        ),
        pytest.param(
            {
                "general.architecture": "llama",
                "general.name": "Code Llama 7B",
                "tokenizer.ggml.prefix_token_id": 32007,
            },
            {"<s>", "</s>"},
            CODELLAMA,
            id="codellama-from-metadata",
        ),
        pytest.param(
            {
                "general.architecture": "llama",
                "general.name": "Llama 2 7B",
                "tokenizer.ggml.prefix_token_id": 32007,
            },
            {"<s>", "</s>"},
            None,
            id="llama-with-fim-id-but-not-codellama",
        ),
        pytest.param(
            {"general.architecture": "starcoder2"}, STARCODER_VOCAB, STARCODER, id="starcoder2"
        ),
        pytest.param({"general.architecture": "refact"}, STARCODER_VOCAB, REFACT, id="refact"),
        pytest.param(
            {"general.architecture": "qwen2"},
            {"<|fim_prefix|>", "<|fim_suffix|>"},
            None,
            id="incomplete-markers",
        ),
        pytest.param({}, set(), None, id="nothing"),
    ],
)
def test_detect_template_synthetic(
    metadata: dict[str, Any], vocab_set: set[str], expected: FimTemplate | None
) -> None:
    assert detect_template(metadata, frozenset(vocab_set)) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("qwen", QWEN, id="qwen"),
        pytest.param("refact", REFACT, id="refact"),
        pytest.param("none", None, id="none"),
        pytest.param(None, None, id="unset"),
    ],
)
def test_template_by_name(name: str | None, expected: FimTemplate | None) -> None:
    assert template_by_name(name) == expected


def test_template_by_unknown_name() -> None:
    with pytest.raises(
        ValueError, match="unknown FIM template 'santacoder'; known: codegemma, codellama"
    ):
        template_by_name("santacoder")


# -- resolve_tokens with a synthetic SentencePiece-style tokenizer -------------------------


def test_codellama_markers_fall_back_to_without_word_start() -> None:
    table = {"<PRE>": [32007], "<SUF>": [32008], "<MID>": [32009], "<EOT>": [32010], "</s>": [2]}

    def tokenize(text: str) -> list[int]:
        return table.get(text, [1, 2, 3])

    tokens = resolve_tokens(CODELLAMA, tokenize)
    assert (tokens.prefix, tokens.suffix, tokens.middle) == (32007, 32008, 32009)
    assert tokens.stops == frozenset({32010, 2})
