"""workspace/executeCommand ``ghostpilot.accept``: the user accepted a suggestion.

Clients run the command carried by inline and fallback completion items. Listeners
(the over-reliance tracker) hear of every accepted suggestion. ``ghostpilot/stats``
answers what the last suggestion cost (for benchmarks and status bars).
"""

from __future__ import annotations

import resource
import time

from pygls.exceptions import JsonRpcInvalidParams

ACCEPT = "ghostpilot.accept"
STATS = "ghostpilot/stats"


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as stream:
            pages = int(stream.read().split()[1])
        return pages * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def setup(server) -> None:  # type: ignore[no-untyped-def]
    @server.command(ACCEPT)
    def accept(ls, *args):  # type: ignore[no-untyped-def]
        arguments = args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)
        if not arguments or not isinstance(arguments[0], str):
            raise JsonRpcInvalidParams(f"{ACCEPT} expects a suggestion id, got {arguments!r}")
        suggestion = ls.suggestions.get(arguments[0])
        if suggestion is None:
            raise JsonRpcInvalidParams(f"unknown or expired suggestion id {arguments[0]!r}")
        suggestion.accepted_at = time.time()
        for listener in list(ls.acceptance_listeners):
            try:
                listener(suggestion)
            except Exception as error:  # one broken listener must not lose the others
                ls.report_error(f"accept-listener:{error}", f"tracking an accepted suggestion failed: {error}")
        return {"accepted": suggestion.id}

    @server.feature(STATS)
    def stats(ls, *args):  # type: ignore[no-untyped-def]
        last = ls.engine.last
        result = last.result if last else None
        info = ls.worker.info
        return {
            "model": info.name if info else None,
            "modelState": ls.worker.state,
            "fimTemplate": info.fim_template if info else None,
            "rssBytes": rss_bytes(),
            "supersededRequests": ls.superseded_requests,
            "last": None if last is None else {
                "id": last.id,
                "mode": last.mode,
                "latencyMs": round(last.latency_s * 1000, 2),
                "cached": last.reused_from_cache,
                "promptTokens": result.prompt_tokens if result else 0,
                "reusedTokens": result.reused_tokens if result else 0,
                "evaluatedTokens": result.evaluated_tokens if result else 0,
                "generatedTokens": result.token_count if result else 0,
                "promptEvalMs": round(result.prompt_eval_s * 1000, 2) if result else 0,
                "decodeMs": round(result.decode_s * 1000, 2) if result else 0,
                "decodeTokensPerS": round(result.decode_tokens_per_s, 2) if result else 0,
            },
        }
