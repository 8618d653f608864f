"""Fill-in-the-middle prompts, built as token ids.

``[prefix marker] + tokens(prefix) + [suffix marker] + tokens(suffix) + [middle marker]``
(or suffix first, for SPM-ordered models). Building them ourselves, instead of
llama-cpp-python's ``suffix=`` path, keeps the markers single special tokens whatever the
tokenizer does with text that merely looks like them. Which markers a model has is the
backend's business (:mod:`lsp_server.backends.fim`, ``ModelInfo.fim``).
"""

from __future__ import annotations

from collections.abc import Sequence

from lsp_server.backends.base import FimTokens


def assemble(
    fim: FimTokens,
    prefix_ids: Sequence[int],
    suffix_ids: Sequence[int],
    bos: Sequence[int],
) -> list[int]:
    """The token ids of a FIM prompt."""
    if fim.order == "spm":
        return [*bos, fim.suffix, *suffix_ids, fim.prefix, *prefix_ids, fim.middle]
    return [*bos, fim.prefix, *prefix_ids, fim.suffix, *suffix_ids, fim.middle]
