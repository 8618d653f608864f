"""Batched sampling (backends/batch.py) with the embedded model: at temperature 0 every
sequence of a batch is the single-sequence greedy output; samples differ by seed; a
sequence that stops drops out while the others go on; cancellation stops the batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp_server.backends.base import Cancelled, CancelToken, GenerationRequest
from lsp_server.backends.batch import sample_k
from tests.greedy_ties import part_at_a_tie

PROMPTS = [
    'def add(a, b):\n    """Return the sum of a and b.\n\n    >>> add(1, 2)\n    3\n    """\n',
    'def is_palindrome(text: str) -> bool:\n    """Whether text reads the same backwards."""\n',
]


@pytest.fixture(scope="module")
def backend(embedded_model_path: Path):  # type: ignore[no-untyped-def]
    from lsp_server.backends.llama import LlamaBackend

    loaded = LlamaBackend(str(embedded_model_path), name="embedded", n_ctx=1024, n_threads=2,
                          adaptive_threads=False)
    yield loaded
    loaded.close()


@pytest.mark.parametrize("prompt", PROMPTS, ids=["add", "palindrome"])
def test_greedy_batch_equals_single_sequence_greedy(backend, embedded_model_path: Path, prompt: str) -> None:  # type: ignore[no-untyped-def]
    request = GenerationRequest(prompt=prompt, max_tokens=32, temperature=0.0, logprobs=True,
                                stop=("\ndef ",))
    single = backend.generate(request, CancelToken())
    batch = backend.sample_batch(request, 4, CancelToken())
    assert len(batch) == 4
    # A batch's rows are computed with other matrix shapes than one row, which round
    # differently: where the model is near a tie, greedy may go either way
    # (tests/greedy_ties.py). The sequences of a batch agree exactly with each other, and
    # with the single sequence up to a near tie.
    assert len({(r.text, r.token_count) for r in batch}) == 1
    assert part_at_a_tie(embedded_model_path, prompt, single.text, batch[0].text) is None
    if batch[0].text == single.text:
        assert batch[0].mean_logprob == pytest.approx(single.mean_logprob, abs=0.1)
    # Again, with the prompt's cells reused from the last batch.
    again = backend.sample_batch(request, 3, CancelToken())
    assert len({r.text for r in again}) == 1
    assert part_at_a_tie(embedded_model_path, prompt, single.text, again[0].text) is None
    assert again[0].reused_tokens == again[0].prompt_tokens - 1


def test_sampled_sequences_follow_their_seeds_and_stop_on_their_own(backend) -> None:  # type: ignore[no-untyped-def]
    def stop_at_second_line(text: str) -> int | None:
        lines = text.split("\n")
        return len(lines[0]) + 1 + len(lines[1]) if len(lines) > 2 else None

    request = GenerationRequest(prompt=PROMPTS[1], max_tokens=32, temperature=0.9, top_p=0.95,
                                seed=11, logprobs=True, stop_rule=stop_at_second_line)
    ended: list[int] = []
    drawn = backend.sample_batch(request, 6, CancelToken(), lambda i, r: ended.append(i))
    assert len(drawn) == 6
    assert sorted(ended) == list(range(6))  # each reported once, as it ended
    lengths = [drawn[i].token_count for i in ended]
    # The shorter ones first (on one step, one ended by EOS counts a token less).
    assert all(later >= earlier - 1 for earlier, later in zip(lengths, lengths[1:])), lengths
    assert len({r.text for r in drawn}) > 1  # each sequence has its own seed
    for result in drawn:
        assert result.text.count("\n") <= 1, result  # each stopped by its own rule check
        assert result.stop_reason in ("rule", "eos", "length")
        assert result.mean_logprob < 0
    # Sequences that stopped dropped out while others went on (not all the same length).
    assert len({r.token_count for r in drawn}) > 1
    # Bit-identical samples across batches are not promised: llama.cpp's sums depend on the
    # batch's shape, and a sampled draw can flip on the last bit of a logit.


def test_cancelled_batch_raises_and_the_next_one_works(backend) -> None:  # type: ignore[no-untyped-def]
    token = CancelToken()
    token.cancel("superseded")
    request = GenerationRequest(prompt=PROMPTS[0], max_tokens=16, temperature=0.0)
    with pytest.raises(Cancelled):
        backend.sample_batch(request, 4, token)
    assert len(backend.sample_batch(request, 2, CancelToken())) == 2


def test_a_backend_without_batching_samples_one_after_another() -> None:
    class Remote:
        def __init__(self) -> None:
            self.seeds: list[int | None] = []

        def generate(self, request: GenerationRequest, cancel: CancelToken):  # type: ignore[no-untyped-def]
            from lsp_server.backends.base import GenerationResult

            self.seeds.append(request.seed)
            return GenerationResult(text=f"seed {request.seed}")

    remote = Remote()
    out = sample_k(remote, GenerationRequest(prompt="x", seed=5), 3, CancelToken())
    assert remote.seeds == [5, 6, 7]
    assert [r.text for r in out] == ["seed 5", "seed 6", "seed 7"]
