"""``ghostpilot bench throughput``: prompt-processing and decode tokens/s through our
backend (the model worker and :class:`LlamaBackend`, as the server uses them), to set
beside ``llama-bench`` on the same model and threads."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any


def _code_text() -> str:
    import sysconfig
    from pathlib import Path

    path = Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py"
    return path.read_text(encoding="utf-8")


def measure(worker: Any, *, prompt_tokens: int = 512, gen_tokens: int = 128,
            repetitions: int = 3, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Tokens/s for a fresh ``prompt_tokens`` prompt (no cache reuse) and for
    ``gen_tokens`` greedy decode steps, each the median of ``repetitions`` runs."""
    from lsp_server.backends.base import GenerationRequest

    source = _code_text()
    tokens = worker.tokenize_blocking(source)
    if len(tokens) < prompt_tokens + 64:
        source = source * (1 + (prompt_tokens + 64) // max(1, len(tokens)))
    pp_rates, tg_rates, pp_counts, tg_counts = [], [], [], []
    for rep in range(repetitions):
        # A different first line each time: only the BOS token can be reused.
        head = f"# throughput run {rep} {'x' * rep}\n"
        prompt = _first_tokens(worker, head + source, prompt_tokens)
        result = worker.generate_blocking(GenerationRequest(prompt=prompt, max_tokens=1))
        if result.prompt_eval_s > 0:
            pp_rates.append(result.evaluated_tokens / result.prompt_eval_s)
            pp_counts.append(result.evaluated_tokens)
        result = worker.generate_blocking(GenerationRequest(
            prompt=f"# decode run {rep}\ndef ", max_tokens=gen_tokens, temperature=0.0))
        if result.decode_s > 0 and result.token_count:
            tg_rates.append(result.token_count / result.decode_s)
            tg_counts.append(result.token_count)
        log(f"  run {rep + 1}/{repetitions}: pp {pp_rates[-1] if pp_rates else 0:.1f} t/s, "
            f"tg {tg_rates[-1] if tg_rates else 0:.1f} t/s")
    return {
        "pp": {"tokens": int(statistics.median(pp_counts)) if pp_counts else 0,
               "tokens_per_s": round(statistics.median(pp_rates), 2) if pp_rates else None,
               "runs": [round(x, 2) for x in pp_rates]},
        "tg": {"tokens": int(statistics.median(tg_counts)) if tg_counts else 0,
               "tokens_per_s": round(statistics.median(tg_rates), 2) if tg_rates else None,
               "runs": [round(x, 2) for x in tg_rates]},
    }


def _first_tokens(worker: Any, text: str, count: int) -> str:
    """A prefix of ``text`` that is about ``count`` tokens long."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if len(worker.tokenize_blocking(text[:middle])) <= count:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def fractions(ours: dict[str, Any], bench: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in ("pp", "tg"):
        mine = (ours.get(key) or {}).get("tokens_per_s")
        theirs = (bench.get(key) or {}).get("tokens_per_s")
        out[key] = round(mine / theirs, 3) if mine and theirs else None
    return out
