"""The Ghostpilot language server: state, and the one list of its features.

Handlers live in ``lsp_server/features/``, one module per LSP method or feature, each
with a ``setup(server)`` entry. This module holds what they share: the server's state,
messages to the user, ``ghostpilot/status``, the listener loop and ``$/progress``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import re
import sys
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, Literal, TypeGuard, get_args

from lsprotocol import types
from pygls.exceptions import FeatureRequestError
from pygls.lsp.server import LanguageServer

from lsp_server import __version__
from lsp_server.backends.registry import ModelEntry, missing_download
from lsp_server.backends.worker import ModelWorker
from lsp_server.config import Settings, merge, needs_reload
from lsp_server.engine import CompletionEngine, Suggestion
from lsp_server.parsing.document import DocumentStore
from lsp_server.protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    GhostpilotProtocol,
    serve_stdio,
    serve_tcp,
)
from lsp_server.runtime import EngineSupervisor, ServingWorker

log = logging.getLogger(__name__)

# Every feature module, in one place. Each exposes setup(server).
FEATURES: tuple[str, ...] = (
    "lsp_server.features.text_sync",
    "lsp_server.features.configuration",
    "lsp_server.features.inline_completion",
    "lsp_server.features.start_early",
    "lsp_server.features.completion",
    "lsp_server.features.accept",
    "lsp_server.features.docstring",
    "lsp_server.features.models",
    "lsp_server.features.reliance_diagnostics",
    "lsp_server.features.reliance_commands",
    "lsp_server.features.tested",
    "lsp_server.features.code_actions",  # last: it serves the providers the others added
)

STATUS_NOTIFICATION = "ghostpilot/status"
# The states ``ghostpilot/status`` reports (editors' status bars show them).
StatusState = Literal["loading", "ready", "generating", "error", "disabled"]
STATUS_STATES: frozenset[str] = frozenset(get_args(StatusState))
# Called with (server, params); returns code actions (or an awaitable of them).
CodeActionProvider = Callable[["GhostpilotServer", types.CodeActionParams], Any]
MAX_REMEMBERED = 256
# How long the end of the transport waits for the model to stop (a generation stops
# between tokens; a model still loading cannot be stopped).
STOP_TIMEOUT_S = 10.0


def is_status_state(value: str) -> TypeGuard[StatusState]:
    return value in STATUS_STATES


class Progress:
    """One piece of work's server-initiated ``$/progress``, where the client supports it.

    ``begin`` asks the client for the token (``window/workDoneProgress/create``); a client
    without the capability, or one that refuses, gets the work without progress. When
    ``cancellable``, the client's cancel button calls ``on_cancel`` (once). The one copy
    of this dance for every feature (model load and download, docstrings, test runs).
    """

    def __init__(
        self,
        server: GhostpilotServer,
        title: str,
        *,
        kind: str,
        cancellable: bool = False,
        on_cancel: Callable[[], object] | None = None,
    ) -> None:
        self.server = server
        self.title = title
        self.cancellable = cancellable
        self.on_cancel = on_cancel
        self.token = f"ghostpilot-{kind}-{uuid.uuid4().hex[:8]}"
        self.enabled = progress_supported(server.client_capabilities)

    async def begin(self, message: str, percentage: int | None = None) -> bool:
        """Show the progress; whether the client shows it."""
        if not self.enabled:
            return False
        progress = self.server.work_done_progress
        try:
            await progress.create_async(self.token)
        except Exception as error:  # the client refused: the work goes on without progress
            log.info("window/workDoneProgress/create failed: %s", error)
            self.enabled = False
            return False
        marker = progress.tokens.get(self.token)
        if marker is not None and self.on_cancel is not None:  # cancelled by the client
            on_cancel = self.on_cancel
            marker.add_done_callback(lambda future: future.cancelled() and on_cancel())
        progress.begin(
            self.token,
            types.WorkDoneProgressBegin(
                title=self.title, message=message, cancellable=self.cancellable, percentage=percentage
            ),
        )
        return True

    def report(self, message: str, percentage: int | None = None, cancellable: bool | None = None) -> None:
        if self.enabled:
            self.server.work_done_progress.report(
                self.token,
                types.WorkDoneProgressReport(message=message, percentage=percentage, cancellable=cancellable),
            )

    def end(self, message: str) -> None:
        if self.enabled:
            self.enabled = False
            self.server.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
            self.server.work_done_progress.tokens.pop(self.token, None)


def progress_supported(capabilities: types.ClientCapabilities | None) -> bool:
    window = capabilities.window if capabilities else None
    return bool(window and window.work_done_progress)


class GhostpilotServer(LanguageServer):
    def __init__(self, defaults: Settings | None = None) -> None:
        super().__init__("ghostpilot", __version__, protocol_cls=GhostpilotProtocol)
        self.defaults = defaults or Settings()
        self.settings = self.defaults
        self.documents = DocumentStore()
        self.documents.listener_failed = lambda listener, error: self._listener_failed(
            listener, "a feature failed on a document event", error
        )
        self.worker: ModelWorker = ServingWorker()
        # Loads the model; retries a remote engine that was down (and the local fallback).
        self.supervisor = EngineSupervisor(
            self.worker, warn=lambda key, text: self.report_error(key, text, types.MessageType.Warning)
        )
        self.engine = CompletionEngine(self.worker, lambda: self.settings)
        self.suggestions: OrderedDict[str, Suggestion] = OrderedDict()
        self.acceptance_listeners: list[Callable[[Suggestion], None]] = []
        # Hooks for features that share an LSP method (pygls takes one handler per method).
        self.initialized_listeners: list[Callable[[GhostpilotServer], Any]] = []
        self.save_listeners: list[Callable[[str], Any]] = []
        self.shutdown_listeners: list[Callable[[], object]] = []
        self.code_action_providers: list[CodeActionProvider] = []
        self.code_action_kinds: set[str] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.superseded_requests = 0
        self.max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES
        self.exit_code = 0  # set when the server stops: 1 for exit without shutdown
        self._reported: set[str] = set()
        self._model_loaded_once = False
        self.worker.add_listener(self._on_model_state)

    # -- messages to the user ------------------------------------------------------------

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback`` on the event loop, from any thread."""
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(callback, *args)

    def log_message(self, message: str, level: types.MessageType = types.MessageType.Info) -> None:
        log.log(logging.ERROR if level == types.MessageType.Error else logging.INFO, "%s", message)
        self.call_soon(
            self.window_log_message, types.LogMessageParams(type=level, message=message)
        )

    def report_error(
        self, key: str, message: str, level: types.MessageType = types.MessageType.Error
    ) -> None:
        """Show ``message`` once per ``key`` (never a flood); always log it."""
        self.log_message(message, level)
        if key in self._reported:
            return
        self._reported.add(key)
        self.call_soon(
            self.window_show_message,
            types.ShowMessageParams(type=level, message=f"Ghostpilot: {message}"),
        )

    def report_server_error(self, error: Exception, source: Any) -> None:  # pygls hook
        """Errors outside a request's reply (a failed notification handler, a broken
        message) are shown once per kind; a request's error already reached the client in
        its reply, so it is only logged."""
        if source is FeatureRequestError:
            log.warning("request failed: %s", error)
            return
        self.report_error(f"internal:{error_kind(error)}", f"internal error: {error}")

    # -- transports (protocol.py reads the frames) -------------------------------------------

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        try:
            self.exit_code = serve_stdio(
                self, stdin or sys.stdin.buffer, stdout or sys.stdout.buffer, self.max_message_bytes
            )
        finally:
            self.stop_model()

    def start_tcp(self, host: str, port: int) -> None:
        try:
            self.exit_code = serve_tcp(self, host, port, self.max_message_bytes)
        finally:
            self.stop_model()

    def stop_model(self) -> None:
        """Once the transport is done (``exit``, with or without ``shutdown``, or the
        client gone): stop the model's work and close it before the process exits."""
        if not self.worker.shutdown(timeout=STOP_TIMEOUT_S):
            log.warning("the model worker did not stop within %.0f s", STOP_TIMEOUT_S)

    def send_status(self, state: StatusState, *, after_answer: bool = False, **extra: Any) -> None:
        """Tell the client the server's state (``ghostpilot/status``). ``after_answer``:
        a request's handler says how it ended; the status goes out after the request's
        answer, which is queued on the loop once the handler returns, so the client
        reads the answer first (the answer is what a user waits for)."""
        info = self.worker.info
        params = {"state": state, "model": info.name if info else self.settings.model, **extra}
        note = self.supervisor.note  # a local fallback is said in every status, not just once
        if note and state != "error" and not params.get("message"):
            params["message"] = note
        if after_answer:
            self.call_soon(self._next_turn, self.protocol.notify, STATUS_NOTIFICATION, params)
        else:
            self.call_soon(self.protocol.notify, STATUS_NOTIFICATION, params)

    def _next_turn(self, callback: Callable[..., Any], *args: Any) -> None:
        """On the loop: run ``callback`` after what was queued before this call ran."""
        if self.loop is not None:
            self.loop.call_soon(callback, *args)

    # -- the listener loop: hooks for features that share an LSP method ----------------------

    def call_each(
        self, listeners: Iterable[Callable[..., Any]], *args: Any, failure: str = "a feature failed"
    ) -> list[Any]:
        """Call each listener with ``args`` and gather what they return. One that fails is
        logged, reported once per cause (``failure: error``), and the others still run."""
        return [result for _, result in self._called(listeners, args, failure)]

    async def call_listeners(
        self, listeners: Iterable[Callable[..., Any]], *args: Any, failure: str = "a feature failed"
    ) -> list[Any]:
        """:meth:`call_each` for listeners that may be async: each one's awaitable is
        awaited in turn, and a failure there is reported the same way."""
        results: list[Any] = []
        for listener, result in self._called(listeners, args, failure):
            if inspect.isawaitable(result):
                try:
                    result = await result
                except Exception as error:
                    self._listener_failed(listener, failure, error)
                    continue
            results.append(result)
        return results

    def _called(
        self, listeners: Iterable[Callable[..., Any]], args: tuple[Any, ...], failure: str
    ) -> Iterator[tuple[Callable[..., Any], Any]]:
        """The one listener loop. Lazy: an async listener is awaited before the next one
        is called."""
        for listener in list(listeners):
            try:
                result = listener(*args)
            except Exception as error:
                self._listener_failed(listener, failure, error)
                continue
            yield listener, result

    def _listener_failed(self, listener: object, failure: str, error: Exception) -> None:
        log.error("%s: listener %r failed", failure, listener, exc_info=error)
        self.report_error(f"listener:{failure}:{error_kind(error)}", f"{failure}: {error}")

    def add_code_action_provider(self, kinds: list[str], provider: CodeActionProvider) -> None:
        """Offer ``provider``'s actions on textDocument/codeAction beside other features'."""
        self.code_action_kinds.update(kinds)
        self.code_action_providers.append(provider)

    # -- suggestions ------------------------------------------------------------------------

    def remember(self, suggestion: Suggestion) -> None:
        self.suggestions[suggestion.id] = suggestion
        while len(self.suggestions) > MAX_REMEMBERED:
            self.suggestions.popitem(last=False)

    # -- settings and model -------------------------------------------------------------------

    def apply_settings(self, raw: Any, source: str) -> None:
        """Merge settings from ``source``; report bad values once; reload the model if needed."""
        new, problems = merge(self.settings, raw)
        for problem in problems:
            self.report_error(
                f"settings:{problem}",
                f"invalid setting from {source}: {problem}",
                types.MessageType.Warning,
            )
        old, self.settings = self.settings, new
        if self._model_loaded_once and needs_reload(old, new):
            self.start_model_load()

    def start_model_load(self) -> None:
        self._model_loaded_once = True
        future = self.supervisor.load(self.settings)
        if self.loop is not None:
            self.loop.create_task(self._progress_while_loading(asyncio.wrap_future(future)))

    async def _progress_while_loading(self, loading: asyncio.Future[None]) -> None:
        progress = Progress(self, "Ghostpilot", kind="load")
        await progress.begin(f"loading {self.settings.model}")
        try:
            await loading
            message = f"model {self.settings.model} ready"
        except Exception as error:
            message = f"model failed to load: {error}"
        progress.end(message)

    def missing_model(self) -> ModelEntry | None:
        """The registry model the settings name when it runs locally, can be downloaded
        and is not installed: the models feature offers the download."""
        if self.settings.backend != "local":
            return None
        return missing_download(self.settings.model)

    def _on_model_state(self, state: str, message: str) -> None:
        if state == "error":
            if self.missing_model() is not None:
                # Logged only: the download offer (features/models.py) is the one message.
                self.log_message(message, types.MessageType.Error)
            else:
                self.report_error(f"model:{message}", message)
        elif state == "ready":
            info = self.worker.info
            if info is not None:
                self.log_message(
                    f"model {info.name} ready ({info.path}; FIM: {info.fim_template or 'none'}; "
                    f"n_ctx {info.n_ctx}; threads {info.n_threads}; GPU layers {info.n_gpu_layers}"
                    f"{'; ' + info.offload if info.offload else ''})"
                )
                if info.offload_warning:
                    self.report_error(f"offload:{info.offload_warning}", info.offload_warning,
                                      types.MessageType.Warning)
        if is_status_state(state):
            self.send_status(state, message=message)
        else:
            log.debug("model state %s is not a status", state)


def error_kind(error: BaseException) -> str:
    """``error`` without the parts that differ between occurrences (quoted names, numbers),
    so that the same failure for 300 URIs is one cause, not 300."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "…", str(error))
    return f"{type(error).__name__}:{text}"


def create_server(defaults: Settings | None = None) -> GhostpilotServer:
    server = GhostpilotServer(defaults)
    for name in FEATURES:
        importlib.import_module(name).setup(server)
    return server
