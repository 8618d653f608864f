"""The shipped Python LoRA adapter (registry entry ``gemma3-270m-python``, built by
``training/``): it resolves to the embedded base plus the adapter in ``models/adapters/``,
passes its checks, changes what the model writes, gives the same text as llama-cpp-python's
own ``Llama(lora_path=...)``, is applied in the batch context of tested suggestions too,
and ``ghostpilot serve`` completes with it."""

from __future__ import annotations

import numpy as np
import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp_server.backends.base import CancelToken, GenerationRequest
from lsp_server.backends.registry import ADAPTERS_DIR, check_adapter, resolve
from tests.conftest import SERVER_COMMAND
from tests.e2e.lsp_helpers import INLINE_CLIENT, inline_params, open_document

pytestmark = [pytest.mark.e2e]

pytest.importorskip("llama_cpp")

NAME = "gemma3-270m-python"
# Nats below the reference's most likely token that still count as the same choice (see
# training/export.py: the Q4_K_M base makes near-ties go either way across kernels).
TIE_NATS = 0.5
# Codex-style prompts: signature and docstring in, body out.
PROMPTS = [
    'def is_palindrome(text: str) -> bool:\n    """Return True if text reads the same backwards.\n\n'
    '    >>> is_palindrome("abba")\n    True\n    """\n',
    'def count_vowels(word: str) -> int:\n    """Return how many vowels word has.\n\n'
    '    >>> count_vowels("banana")\n    3\n    """\n',
    'def fib(n: int) -> int:\n    """Return the n-th Fibonacci number.\n\n    >>> fib(10)\n    55\n    """\n',
]


def greedy(prompt: str) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, max_tokens=40, temperature=0.0, stop=["\ndef ", "\nclass "])


@pytest.fixture(scope="module")
def backends():  # type: ignore[no-untyped-def]
    from lsp_server.backends.llama import LlamaBackend

    resolved = resolve(NAME)
    assert resolved.adapter is not None and resolved.adapter.parent == ADAPTERS_DIR
    check_adapter(resolved)  # both sha256s, a LoRA for gemma3
    plain = LlamaBackend(str(resolved.path), name="base", n_ctx=1024, n_threads=2)
    tuned = LlamaBackend(str(resolved.path), name=NAME, n_ctx=1024, n_threads=2,
                         lora_path=str(resolved.adapter))
    yield resolved, plain, tuned
    plain.close()
    tuned.close()


def gaps(reference, prompt: str, text: str) -> list[float]:  # type: ignore[no-untyped-def]
    """How many nats below its own most likely token the reference model puts each token
    of ``text`` after ``prompt`` (0 where it would have chosen it too)."""
    prompt_ids = reference.tokenize(prompt.encode(), add_bos=True)
    ids = reference.tokenize(text.encode(), add_bos=False, special=False)
    reference.reset()
    reference.eval([*prompt_ids, *ids])
    scores = np.asarray(reference.scores[: len(prompt_ids) + len(ids)], dtype=np.float64)
    out = []
    for i, token in enumerate(ids):
        row = scores[len(prompt_ids) - 1 + i]
        logprobs = row - (row.max() + np.log(np.exp(row - row.max()).sum()))
        out.append(float(logprobs.max() - logprobs[token]))
    return out


def test_the_adapter_changes_the_output_as_llama_cpp_python_applies_it(backends) -> None:  # type: ignore[no-untyped-def]
    """Our backend applies the adapter through llama_set_adapters_lora with mmap on;
    llama-cpp-python's ``Llama(lora_path=...)`` (mmap off, other weight buffers) is the
    reference. Their kernels differ, so near-tied tokens may go either way: each token we
    write must be within TIE_NATS of the reference's best choice, where the base model's
    text is not (on some prompt: the adapter moves some choices only a little)."""
    from llama_cpp import Llama

    resolved, plain, tuned = backends
    ours = [tuned.generate(greedy(p), CancelToken()).text for p in PROMPTS]
    base = [plain.generate(greedy(p), CancelToken()).text for p in PROMPTS]
    assert ours != base, "the adapter changed none of the greedy outputs"
    reference = Llama(model_path=str(resolved.path), lora_path=str(resolved.adapter), n_ctx=1024,
                      n_threads=2, logits_all=True, verbose=False)
    try:
        base_gaps = []
        for prompt, text, base_text in zip(PROMPTS, ours, base):
            assert max(gaps(reference, prompt, text)) <= TIE_NATS, (prompt, text)
            base_gaps.append(max(gaps(reference, prompt, base_text)))
        # The base's text is what a lost adapter would write: the reference tells it apart.
        assert max(base_gaps) > TIE_NATS, base_gaps
    finally:
        reference.close()


def test_tested_suggestions_batch_context_applies_the_adapter(backends) -> None:  # type: ignore[no-untyped-def]
    """The k candidates of a tested suggestion come from a second llama.cpp context; greedy
    samples there equal the main context's greedy text with the adapter, not the base's."""
    _, plain, tuned = backends
    tuned_batch, plain_batch, same = [], [], 0
    for prompt in PROMPTS:
        expected = tuned.generate(greedy(prompt), CancelToken()).text
        base_text = plain.generate(greedy(prompt), CancelToken()).text
        texts = [r.text for r in tuned.sample_batch(greedy(prompt), 2, CancelToken())]
        assert texts[0] == texts[1]
        tuned_batch.append(texts[0])
        plain_batch.append(plain.sample_batch(greedy(prompt), 2, CancelToken())[0].text)
        # Batched rows round differently from one-row decoding, and the adapter leaves
        # near-ties: the whole text matches where no tie is met.
        same += texts[0] == expected != base_text
    assert tuned_batch != plain_batch, "the batch context wrote the base model's text"
    assert same >= 1, (tuned_batch, plain_batch)


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND))
async def client(lsp_client: LanguageClient):
    statuses: list[dict] = []
    lsp_client.feature("ghostpilot/status")(lambda params: statuses.append(params))
    lsp_client.statuses = statuses  # type: ignore[attr-defined]
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=INLINE_CLIENT, initialization_options={"model": NAME, "timeBudgetMs": 4000}))
    yield
    await lsp_client.shutdown_session()


@pytest.mark.asyncio
async def test_serve_completes_with_the_adapter_model(client: LanguageClient) -> None:
    uri = "file:///tmp/ghostpilot-e2e/adapter.py"
    text = PROMPTS[0]
    open_document(client, uri, text + "    ")
    result = await client.text_document_inline_completion_async(inline_params(uri, text.count("\n"), 4))
    assert result is not None and result.items
    item = result.items[0]
    body = item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value
    assert body.strip()
    states = [getattr(s, "state", None) or (s.get("state") if isinstance(s, dict) else None)
              for s in client.statuses]  # type: ignore[attr-defined]
    assert "ready" in states, client.statuses  # type: ignore[attr-defined]
    assert "error" not in states
    assert any(NAME in str(s) for s in client.statuses)  # type: ignore[attr-defined]
