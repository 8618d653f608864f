"""workspace/executeCommand ``ghostpilot.accept``: the user accepted a suggestion.

Clients run the command carried by inline and fallback completion items. Listeners
(the over-reliance tracker) hear of every accepted suggestion. ``ghostpilot/stats``
answers what the last suggestion cost (for benchmarks and status bars).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from typing import Any

from pygls.exceptions import JsonRpcInvalidParams

from lsp_server.backends.base import ModelInfo
from lsp_server.engine import RequestRecord, Suggestion, token_fields
from lsp_server.features._common import command_arguments, shown

# At run time, not under TYPE_CHECKING: pygls resolves a command handler's annotations
# (typing.get_type_hints) to convert its arguments. No cycle: server.py imports the
# feature modules only inside create_server().
from lsp_server.server import GhostpilotServer

ACCEPT = "ghostpilot.accept"
STATS = "ghostpilot/stats"


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as stream:
            pages = int(stream.read().split()[1])
        return pages * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def suggestion_id(arguments: Sequence[Any]) -> str:
    if not arguments or not isinstance(arguments[0], str):
        raise JsonRpcInvalidParams(f"{ACCEPT} expects a suggestion id, got {shown(list(arguments))}")
    return arguments[0]


def stats(
    last: Suggestion | None,
    info: ModelInfo | None,
    model_state: str,
    superseded: int,
    rss: int,
    last_request: RequestRecord | None = None,
    kv_cache: dict[str, Any] | None = None,
    continued: int = 0,
    started_early: int = 0,
    definitions_refreshed: int = 0,
    threads: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``ghostpilot/stats`` answer. ``continued``: suggestions cut by the time budget
    whose rest was then written in the background (engine ``_continue``);
    ``started_early``: prompts evaluated before their request came (``start_early``);
    ``definitions_refreshed``: prompts that a pause brought a function's new used
    definitions or its class's whole header into (engine ``_refresh``); ``threads``: the
    thread count decoding uses now and the time a token took at each (backends/threads.py),
    None where it is fixed."""
    result = last.result if last else None
    return {
        "lastRequest": last_request.as_json() if last_request is not None else None,
        "kvCache": kv_cache,
        "threads": threads,
        "model": info.name if info else None,
        "modelState": model_state,
        "fimTemplate": info.fim_template if info else None,
        "rssBytes": rss,
        "supersededRequests": superseded,
        "continuedSuggestions": continued,
        "startedEarly": started_early,
        "definitionsRefreshed": definitions_refreshed,
        "last": None if last is None else {
            "id": last.id,
            "mode": last.mode,
            "latencyMs": round(last.latency_s * 1000, 2),
            "cached": last.reused_from_cache,
            **token_fields(result),
            "decodeTokensPerS": round(result.decode_tokens_per_s, 2) if result else 0,
        },
    }


def accept(ls: GhostpilotServer, arguments: Sequence[Any]) -> dict[str, str]:
    """Mark the suggestion accepted and tell the listeners; one broken listener does not
    lose the others."""
    wanted = suggestion_id(arguments)
    suggestion = ls.suggestions.get(wanted)
    if suggestion is None:
        raise JsonRpcInvalidParams(f"unknown or expired suggestion id {shown(wanted)}")
    suggestion.accepted_at = time.time()
    ls.call_each(ls.acceptance_listeners, suggestion, failure="tracking an accepted suggestion failed")
    return {"accepted": suggestion.id}


def setup(server: GhostpilotServer) -> None:
    @server.command(ACCEPT)
    def accept_command(ls: GhostpilotServer, *args: Any) -> dict[str, str]:
        return accept(ls, command_arguments(args))

    @server.feature(STATS)
    def stats_request(ls: GhostpilotServer, *args: Any) -> dict[str, Any]:
        return stats(ls.engine.last, ls.worker.info, ls.worker.state, ls.superseded_requests,
                     rss_bytes(), ls.engine.last_request, ls.worker.kv_cache_stats(),
                     ls.engine.continued, ls.engine.started_early, ls.engine.definitions_refreshed,
                     ls.worker.threads_stats())
