"""Fill-in-the-middle templates: which markers a model was trained with, found from its
GGUF metadata and vocabulary (never the file name), and mapped to its token ids.

These are facts about model vocabularies, like the GGUF header itself, so they live with
the backends: a backend puts the result on ``ModelInfo.fim`` and the prompt builder
(:func:`lsp_server.prompts.fim.assemble`) only orders ids. A remote backend uses the same
tables with its server's tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lsp_server.backends.base import FimTokens


@dataclass(frozen=True)
class FimTemplate:
    name: str
    prefix: str
    suffix: str
    middle: str
    # "psm": prefix, suffix, middle. "spm": suffix, prefix, middle.
    order: str = "psm"
    # Tokens that end a fill (end of text, file separators, stray markers).
    stop_tokens: tuple[str, ...] = ()

    @property
    def markers(self) -> tuple[str, str, str]:
        return self.prefix, self.suffix, self.middle


STARCODER = FimTemplate(
    "starcoder",
    "<fim_prefix>",
    "<fim_suffix>",
    "<fim_middle>",
    stop_tokens=("<|endoftext|>", "<file_sep>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
)
REFACT = FimTemplate(
    "refact",
    "<fim_prefix>",
    "<fim_suffix>",
    "<fim_middle>",
    order="spm",
    stop_tokens=("<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
)
DEEPSEEK = FimTemplate(
    "deepseek",
    "<｜fim▁begin｜>",
    "<｜fim▁hole｜>",
    "<｜fim▁end｜>",
    stop_tokens=("<｜end▁of▁sentence｜>", "<|EOT|>", "<｜fim▁begin｜>"),
)
CODELLAMA = FimTemplate(
    "codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", stop_tokens=("▁<EOT>", "</s>", "<EOT>")
)
CODEGEMMA = FimTemplate(
    "codegemma",
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    stop_tokens=("<|file_separator|>", "<eos>", "<|fim_prefix|>"),
)
QWEN = FimTemplate(
    "qwen",
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    stop_tokens=(
        "<|endoftext|>",
        "<|file_sep|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        "<|im_end|>",
        "<|fim_prefix|>",
    ),
)

TEMPLATES: dict[str, FimTemplate] = {
    t.name: t for t in (STARCODER, REFACT, DEEPSEEK, CODELLAMA, CODEGEMMA, QWEN)
}

# Architectures whose base models were not trained for FIM even where their vocabulary
# happens to carry FIM markers (Gemma 2 and 3 share CodeGemma's tokenizer).
_NO_FIM_ARCHITECTURES = frozenset({"gemma2", "gemma3", "gemma3n"})


def _has(vocab: frozenset[str] | set[str], template: FimTemplate) -> bool:
    return all(marker in vocab for marker in template.markers)


def detect_template(metadata: Mapping[str, Any], vocab: frozenset[str] | set[str]) -> FimTemplate | None:
    """Pick the FIM template from GGUF metadata and the vocabulary's control tokens.

    ``vocab`` needs only the tokens that look like markers (``<...>``); the file name
    plays no part.
    """
    arch = str(metadata.get("general.architecture", "")).lower()
    name = " ".join(
        str(metadata.get(key, "")) for key in ("general.name", "general.basename")
    ).lower()
    if _has(vocab, DEEPSEEK):
        return DEEPSEEK
    if _has(vocab, CODELLAMA) or (
        arch == "llama"
        and any(k in metadata for k in ("tokenizer.ggml.prefix_token_id", "tokenizer.ggml.fim_pre_token_id"))
        and "codellama" in name.replace(" ", "").replace("-", "")
    ):
        return CODELLAMA
    if _has(vocab, STARCODER):
        return REFACT if arch == "refact" else STARCODER
    if _has(vocab, QWEN):
        if arch in _NO_FIM_ARCHITECTURES and "codegemma" not in name.replace(" ", ""):
            return None
        if arch.startswith("gemma"):
            return CODEGEMMA if "code" in name else None
        return QWEN
    return None


def template_by_name(name: str | None) -> FimTemplate | None:
    if not name or name == "none":
        return None
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(
            f"unknown FIM template {name!r}; known: {', '.join(sorted(TEMPLATES))}, none"
        ) from None


def resolve_tokens(
    template: FimTemplate, tokenize_special: Callable[[str], list[int]]
) -> FimTokens:
    """Map a template's markers to single token ids; raises ValueError if one is not."""

    def single(marker: str) -> int:
        ids = tokenize_special(marker)
        if len(ids) != 1:
            # SentencePiece vocabularies store CodeLlama's markers with a leading "▁".
            alt = marker[1:] if marker.startswith("▁") else None
            ids = tokenize_special(alt) if alt else ids
        if len(ids) != 1:
            raise ValueError(
                f"FIM marker {marker!r} of template {template.name!r} is not a single token "
                f"in this vocabulary ({ids})"
            )
        return ids[0]

    stops = set()
    for token in template.stop_tokens:
        try:
            stops.add(single(token))
        except ValueError:
            continue
    return FimTokens(
        single(template.prefix),
        single(template.suffix),
        single(template.middle),
        frozenset(stops),
        template.order,
    )
