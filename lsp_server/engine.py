"""The completion engine: document + cursor -> suggestion.

One code path for the language server, the ``ghostpilot complete`` CLI and the
evaluation harness. The prompt is built on the model worker's thread from a snapshot of
the document, so the event loop never waits on tokenization or generation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from lsp_server.backends.base import (
    Backend,
    Cancelled,
    CancelToken,
    FimTokens,
    GenerationRequest,
    GenerationResult,
    TimeBudget,
)
from lsp_server.backends.worker import ModelWorker
from lsp_server.config import Settings
from lsp_server.parsing.document import Document
from lsp_server.prompts import budget, modes, postprocess
from lsp_server.prompts.context import KnownHead, PromptContext, build_context, indent_width
from lsp_server.prompts.fim import assemble
from lsp_server.prompts.held import HeldDefinitions, StableHeaders
from lsp_server.prompts.modes import Mode, SuggestionMode
from lsp_server.prompts.snapshot import Snapshot
from lsp_server.prompts.tokens import PromptTokenizer

log = logging.getLogger(__name__)

SUFFIX_TOKENS = 256
# An edit more lines than this from where the model last worked starts early.
START_EARLY_LINES = 8
# Past this many times the time budget, a suggestion stops where it is even with no
# complete line to cut at (a long call spread over lines, say): the typing replays had
# blocks that ran to max_tokens, 2-4.5 s, most of them dropped in the end. At least a
# second past the budget, so that a short budget still gets its first complete line.
HARD_BUDGET_FACTOR = 3.0
HARD_BUDGET_EXTRA_S = 1.0
# A function's new used definitions (prompts/held.py) are brought in when the user has
# paused this long after a request: evaluating them then costs no keystroke anything.
REFRESH_IDLE_S = 0.3
# The prompt prefix gets at least this many tokens, however small the context.
MIN_PREFIX_TOKENS = 64
# A block written on a fresh line after a header or in an empty body must start with
# code: a small model otherwise often offers only "# TODO: implement" there.
CODE_FIRST = ("#",)
_CODE_FIRST_REASONS = frozenset({"after a block header", "empty function body"})


@dataclass
class Suggestion:
    text: str
    # Code-point range of the document that ``text`` replaces (start <= cursor == end).
    start: int
    end: int
    mode: SuggestionMode
    uri: str = ""
    version: int = 0
    model: str = ""
    result: GenerationResult | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    created: float = field(default_factory=time.time)
    latency_s: float = 0.0
    reused_from_cache: bool = False
    accepted_at: float | None = None
    # What a tested suggestion passed (features/tested.evidence_of); None for others.
    tested: dict[str, Any] | None = None

    @property
    def mean_logprob(self) -> float:
        return self.result.mean_logprob if self.result else float("-inf")



def token_fields(result: GenerationResult | None) -> dict[str, Any]:
    """A generation's token counts and timings as ``ghostpilot/stats`` reports them."""
    return {
        "promptTokens": result.prompt_tokens if result else 0,
        "reusedTokens": result.reused_tokens if result else 0,
        "evaluatedTokens": result.evaluated_tokens if result else 0,
        "generatedTokens": result.token_count if result else 0,
        "promptEvalMs": round(result.prompt_eval_s * 1000, 2) if result else 0,
        "decodeMs": round(result.decode_s * 1000, 2) if result else 0,
    }


@dataclass
class RequestRecord:
    """What one request to the model worker cost, suggested or not (``ghostpilot/stats``
    answers the last one as ``lastRequest``; the latency bench reads it)."""

    uri: str
    outcome: str  # "suggested", "nothing to suggest: <why>", "dropped by post-processing",
    # "dropped: the model repeated itself"
    queued_ms: float = 0.0  # waiting for the model worker (a job before it)
    plan_ms: float = 0.0  # mode and prompt context
    prompt_ms: float = 0.0  # token budget and prompt tokens
    finish_ms: float = 0.0  # post-processing and the parse check
    result: GenerationResult | None = None
    # The token ids of the last prompt the model evaluated (with ``recordPrompts``).
    prompt_ids: tuple[int, ...] | None = None

    def as_json(self) -> dict[str, Any]:
        result = self.result
        return {
            "uri": self.uri,
            "outcome": self.outcome,
            "queuedMs": round(self.queued_ms, 2),
            "planMs": round(self.plan_ms, 2),
            "promptMs": round(self.prompt_ms, 2),
            "finishMs": round(self.finish_ms, 2),
            **token_fields(result),
            **({"promptTokenIds": list(self.prompt_ids)} if self.prompt_ids is not None else {}),
        }


@dataclass(frozen=True)
class Overrides:
    """Per-call changes to the settings (evaluation and sampling use them)."""

    mode: SuggestionMode | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    # Evaluations rank samples by mean log-probability; editor requests need none.
    logprobs: bool = True

    @classmethod
    def of(cls, value: Overrides | Mapping[str, Any] | None) -> Overrides:
        if value is None:
            return cls()
        return value if isinstance(value, Overrides) else cls(**value)


@dataclass(frozen=True)
class Continuation:
    """A block suggestion the time budget cut, and how to write on: ``request`` was the
    last generation, ``generated`` its text (the suggestion's result holds all of it)."""

    snapshot: Snapshot
    suggestion: Suggestion
    request: GenerationRequest
    generated: str


@dataclass(frozen=True)
class Plan:
    """Where and how to complete: the outcome of the pure planning step."""

    mode: Mode
    reason: str
    # Code-point offset where the replaced range starts (the line start on a blank line).
    start: int
    context: PromptContext | None = None


def plan(snapshot: Snapshot, cursor: int, *, explicit: bool, known: KnownHead | None = None) -> Plan:
    """Decide the mode and build the prompt context at code-point offset ``cursor``
    (``known``: see :func:`build_context`)."""
    text = snapshot.text
    cursor_byte = snapshot.byte_of(cursor)
    trigger = modes.decide(snapshot.tree, snapshot.source, cursor_byte, explicit=explicit)
    if trigger.mode == "none":
        return Plan("none", trigger.reason, cursor)
    line_start = text.rfind("\n", 0, cursor) + 1
    blank_prefix = not text[line_start:cursor].strip()
    start = line_start if blank_prefix else cursor
    prompt_cursor = snapshot.byte_of(start)
    context = build_context(snapshot.tree, snapshot.source, prompt_cursor, real_cursor=cursor_byte,
                            known=known)
    return Plan(trigger.mode, trigger.reason, start, context)


class CompletionEngine:
    def __init__(self, worker: ModelWorker, settings: Callable[[], Settings]) -> None:
        self.worker = worker
        self.settings = settings
        self._headers = StableHeaders()
        self._held = HeldDefinitions()
        self._tokenizers: dict[int, PromptTokenizer] = {}
        self._recent: OrderedDict[str, tuple[Snapshot, Suggestion]] = OrderedDict()
        # A suggestion cut by the time budget, being written on in the background (see
        # :meth:`_continue`).
        self._pending: tuple[Continuation, concurrent.futures.Future[Suggestion | None]] | None = None
        self.continued = 0  # continuations that finished and replaced their suggestion
        # Where the model last worked (uri, line): an edit far from it starts early.
        self._place: tuple[str, int] | None = None
        self.started_early = 0  # prompts evaluated ahead of a request
        # Prompts refreshed at a pause: a function's new used definitions, a class's whole
        # header (prompts/held.py).
        self.definitions_refreshed = 0
        self.last: Suggestion | None = None
        # The last request that reached the model worker, suggested or not.
        self.last_request: RequestRecord | None = None

    # -- public -----------------------------------------------------------------------

    async def complete(
        self, document: Document, cursor: int, *, explicit: bool = False, key: str | None = None
    ) -> Suggestion | None:
        snapshot = Snapshot.of(document)
        started = time.perf_counter()
        self._place = (snapshot.uri, snapshot.index.line_of_offset(cursor))
        # Typing through the suggestion on screen: what is left of it, at once (its
        # continuation, when done, lengthens it for a later keystroke).
        cached = self._type_through(snapshot, cursor)
        pending = self._pending
        if (cached is None and pending is not None and not pending[1].done()
                and _follows(pending[0], snapshot, cursor)):
            # The user took all of the cut suggestion: its continuation is what comes
            # next, if it is done within a time budget (else a new request makes the next
            # lines).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(pending[1])),
                                       self.settings().time_budget_ms / 1000.0)
            cached = self._type_through(snapshot, cursor)
        if cached is not None:
            self.last_request = RequestRecord(snapshot.uri, "type-through cache")
            return cached
        cut: list[Continuation] = []
        fresh: list[PromptContext] = []
        suggestion = await self.worker.run(
            lambda backend, token: self._job(
                backend, token, snapshot, cursor, explicit, Overrides(logprobs=False), started,
                cut=cut, fresh=fresh,
            ),
            key=key or document.uri,
        )
        finished = self._finish(snapshot, suggestion, started)
        try:  # the background work after a request must never cost it
            if finished is not None and cut:  # ``finished`` is the cut suggestion, timed
                self._continue(cut[0])
            elif fresh:
                self._refresh(snapshot, fresh[0])
        except Exception:
            log.exception("could not start background work after a request")
        return finished

    def _refresh(self, snapshot: Snapshot, context: PromptContext) -> None:
        """Bring in a function's new used definitions, or its class's whole header
        (:mod:`lsp_server.prompts.held`), once the user pauses: a background job waits
        :data:`REFRESH_IDLE_S`, evaluates the prompt with them up to the cursor's line,
        then adopts them. A keystroke's request stops it (while it waits: at no cost),
        and what is held stays until a later pause."""
        self.worker.submit(partial(self._refresh_job, uri=snapshot.uri, context=context),
                           background=True)

    def _refresh_job(self, backend: Backend, token: CancelToken, *, uri: str,
                     context: PromptContext) -> int:
        if token.event.wait(REFRESH_IDLE_S):
            raise Cancelled(token.reason)
        evaluated = 0
        prefill = getattr(backend, "prefill", None)  # None for a remote engine: adopt at once
        if prefill is not None:
            prompt = self._prompt(backend, context, self.settings())
            head = prompt.prefix[: prompt.prefix.rfind("\n") + 1]
            evaluated = int(prefill(prompt.tokens(head), token)) if head else 0
        if token.cancelled:
            raise Cancelled(token.reason)
        self._held.adopt(uri, context)
        self.definitions_refreshed += 1
        return evaluated

    def _continue(self, continuation: Continuation) -> None:
        """Write on a suggestion the time budget cut, in the background: when it is done, the
        whole block replaces the cut one in the type-through cache, so accepting the lines
        on screen shows the rest at once (the ghost text came in the budget, the rest did
        not have to). Any other model job stops it (a background job), except a request
        that takes the suggestion on screen: that one waits for it. Never touches
        ``last_request``."""
        future, _ = self.worker.submit(
            partial(self._continue_job, continuation=continuation), background=True
        )
        self._pending = (continuation, future)

        def done(finished: Any) -> None:
            if self._pending is not None and self._pending[1] is finished:
                self._pending = None  # its snapshot (text, tree) is not held past its use
            if finished.cancelled() or finished.exception() is not None:
                return
            whole = finished.result()
            if whole is None:
                return
            uri = continuation.snapshot.uri
            found = self._recent.get(uri)
            if found is None or found[1] is not continuation.suggestion:
                return  # a newer suggestion took its place
            self._recent[uri] = (continuation.snapshot, whole)
            self.continued += 1

        future.add_done_callback(done)

    def _continue_job(
        self, backend: Backend, token: CancelToken, *, continuation: Continuation
    ) -> Suggestion | None:
        c = continuation
        request, result = c.request, c.suggestion.result
        if result is None or request.prompt_tokens is None:
            return None
        raw, more_tokens = result.text, request.max_tokens - result.token_count
        if more_tokens <= 0:
            return None
        follow = replace(
            request,
            prompt=request.prompt + c.generated,
            prompt_tokens=(*request.prompt_tokens, *backend.tokenize(c.generated)),
            max_tokens=more_tokens,
            stop=(),
            stop_rule=postprocess.continued_rule(c.generated, request),
            time_budget=None,
            ban_first=(),
        )
        more = backend.generate(follow, token)
        if not more.text:
            return None
        text = postprocess.finish(c.snapshot, c.suggestion.end, c.suggestion.start, c.suggestion.mode,
                                  raw + more.text)
        if text is None or len(text) <= len(c.suggestion.text) or not text.startswith(c.suggestion.text):
            return None
        return replace(c.suggestion, text=text, result=_combine(result, more, raw + more.text),
                       id=uuid.uuid4().hex[:16])

    def moved_to(self, uri: str, line: int) -> bool:
        """Record an edit at ``line`` of ``uri``; True when it is away from where the model
        last worked (another file, or more than :data:`START_EARLY_LINES` lines away)."""
        last, self._place = self._place, (uri, line)
        return last is None or last[0] != uri or abs(last[1] - line) > START_EARLY_LINES

    def start_early(self, document: Document, cursor: int) -> None:
        """Evaluate the prompt at ``cursor`` in the background, up to the start of its
        line (what the request that follows will share), before the request comes: an
        edit landed in another function. A background job: any request stops it between
        slices of 64 tokens, keeping what was evaluated. Replaces a continuation."""
        snapshot = Snapshot.of(document)
        self.worker.cancel_background()
        self.worker.submit(partial(self._start_early_job, snapshot=snapshot, cursor=cursor),
                           background=True)

    def _start_early_job(self, backend: Backend, token: CancelToken, *, snapshot: Snapshot,
                         cursor: int) -> int:
        prefill = getattr(backend, "prefill", None)
        if prefill is None:
            return 0
        planned = plan(snapshot, cursor, explicit=True)
        if planned.context is None:
            return 0
        context, _ = self._held.hold(snapshot.uri, self._settled(snapshot, planned.context))
        prompt = self._prompt(backend, context, self.settings())
        head = prompt.prefix[: prompt.prefix.rfind("\n") + 1]
        if not head:
            return 0
        evaluated = int(prefill(prompt.tokens(head), token))
        self.started_early += 1
        return evaluated

    def complete_blocking(
        self,
        document: Document,
        cursor: int,
        *,
        explicit: bool = False,
        overrides: Overrides | Mapping[str, Any] | None = None,
    ) -> Suggestion | None:
        snapshot = Snapshot.of(document)
        started = time.perf_counter()
        suggestion = self.worker.run_blocking(
            lambda backend, token: self._job(
                backend, token, snapshot, cursor, explicit, Overrides.of(overrides)
            )
        )
        return self._finish(snapshot, suggestion, started)

    def sample_blocking(
        self,
        document: Document,
        cursor: int,
        *,
        n: int,
        temperature: float,
        top_p: float = 0.95,
        max_tokens: int | None = None,
        seed: int = 0,
        mode: SuggestionMode | None = None,
    ) -> list[Suggestion]:
        """``n`` samples at the cursor (for pass@k); greedy when temperature is 0."""
        snapshot = Snapshot.of(document)
        results = []
        for index in range(n):
            overrides = Overrides(mode, max_tokens, temperature, top_p, seed + index)
            started = time.perf_counter()
            suggestion = self.worker.run_blocking(
                partial(self._job, snapshot=snapshot, cursor=cursor, explicit=True, overrides=overrides)
            )
            finished = self._finish(snapshot, suggestion, started)
            if finished is not None:
                results.append(finished)
            else:
                results.append(Suggestion("", cursor, cursor, "block", uri=snapshot.uri))
        return results

    async def candidates(
        self, document: Document, cursor: int, *, k: int, overrides: Overrides, key: str | None = None,
        on_candidate: Callable[[int, Suggestion], None] | None = None,
    ) -> list[Suggestion]:
        """``k`` block samples at the cursor for a tested suggestion (seeds ``seed + i``),
        decoded as one batch where the backend can (``backends/batch.sample_k``);
        ``on_candidate(i, suggestion)`` is called on the worker thread as each is done."""
        snapshot = Snapshot.of(document)
        return await self.worker.run(
            partial(self._candidates_job, snapshot=snapshot, cursor=cursor, k=k, overrides=overrides,
                    on_candidate=on_candidate),
            key=key or document.uri,
        )

    def candidates_blocking(
        self, document: Document, cursor: int, *, k: int, overrides: Overrides,
        on_candidate: Callable[[int, Suggestion], None] | None = None,
    ) -> list[Suggestion]:
        """:meth:`candidates` from a thread or the CLI (the evaluation draws with it)."""
        snapshot = Snapshot.of(document)
        return self.worker.run_blocking(
            partial(self._candidates_job, snapshot=snapshot, cursor=cursor, k=k, overrides=overrides,
                    on_candidate=on_candidate)
        )

    def _candidates_job(
        self, backend: Backend, token: CancelToken, *, snapshot: Snapshot, cursor: int, k: int,
        overrides: Overrides, on_candidate: Callable[[int, Suggestion], None] | None = None,
    ) -> list[Suggestion]:
        from lsp_server.backends.batch import sample_k

        settings = self.settings()
        planned = plan(snapshot, cursor, explicit=True)
        if planned.context is None:
            return []
        mode: SuggestionMode = overrides.mode or "block"
        context = self._settled(snapshot, planned.context)
        prompt = self._prompt(backend, context, settings)
        line_start = snapshot.text.rfind("\n", 0, cursor) + 1
        first_line_is_new = planned.start != cursor or not snapshot.text[line_start:cursor].strip()
        request = replace(
            _request(prompt, context, mode, settings, overrides, first_line_is_new=first_line_is_new,
                     code_first=first_line_is_new),
            time_budget=None,  # tested candidates are whole bodies: no keystroke budget
        )
        done: dict[int, Suggestion] = {}

        def finished(index: int, result: GenerationResult) -> None:
            text = postprocess.finish(snapshot, cursor, planned.start, mode, result.text)
            done[index] = Suggestion(text or "", planned.start, cursor, mode, uri=snapshot.uri,
                                     version=snapshot.version, model=backend.info.name, result=result)
            if on_candidate is not None:
                on_candidate(index, done[index])

        sample_k(backend, request, k, token, finished)
        return [done[index] for index in sorted(done)]

    def forget(self, uri: str) -> None:
        """Drop what is kept of a closed document: its last snapshot (text, bytes, tree)
        and suggestion, and its class headers."""
        self._recent.pop(uri, None)
        self._headers.forget(uri)
        self._held.forget(uri)
        pending = self._pending
        if pending is not None and pending[0].snapshot.uri == uri:
            self._pending = None

    # -- internals ------------------------------------------------------------------------

    def _finish(
        self, snapshot: Snapshot, suggestion: Suggestion | None, started: float
    ) -> Suggestion | None:
        if suggestion is None:
            return None
        suggestion.latency_s = time.perf_counter() - started
        self.last = suggestion
        self._recent[snapshot.uri] = (snapshot, suggestion)
        self._recent.move_to_end(snapshot.uri)
        while len(self._recent) > 32:
            self._recent.popitem(last=False)
        return suggestion

    def _type_through(self, snapshot: Snapshot, cursor: int) -> Suggestion | None:
        """Reuse the last suggestion while the user types what it suggested."""
        found = self._recent.get(snapshot.uri)
        if found is None:
            return None
        old, previous = found
        start = previous.start
        typed = snapshot.text[start:cursor]
        if (
            cursor <= previous.end
            or len(typed) >= len(previous.text)
            or not previous.text.startswith(typed)
            or snapshot.text[:start] != old.text[:start]
            or snapshot.text[cursor:] != old.text[previous.end :]
        ):
            return None
        reused = Suggestion(
            text=previous.text,
            start=start,
            end=cursor,
            mode=previous.mode,
            uri=snapshot.uri,
            version=snapshot.version,
            model=previous.model,
            result=previous.result,
            latency_s=0.0,
            reused_from_cache=True,
        )
        self.last = reused
        return reused

    def _tokenizer(self, backend: Backend) -> PromptTokenizer:
        """The prompt tokenizer of the loaded model (one at a time; a new model, a new cache)."""
        found = self._tokenizers.get(id(backend))
        if found is None:
            found = PromptTokenizer(backend.tokenize)
            self._tokenizers = {id(backend): found}
        return found

    def _job(
        self,
        backend: Backend,
        token: CancelToken,
        snapshot: Snapshot,
        cursor: int,
        explicit: bool,
        overrides: Overrides,
        submitted: float | None = None,
        cut: list[Continuation] | None = None,
        fresh: list[PromptContext] | None = None,
    ) -> Suggestion | None:
        """The pipeline, on the worker thread: plan, prompt, request, generate, finish.
        Where the time budget cut a block, what to write on with is added to ``cut``.
        With ``fresh`` (the editor's requests), the function's used definitions are held
        (:mod:`lsp_server.prompts.held`); where its code now names others, the context
        with them is added to ``fresh``."""
        began = time.perf_counter()
        record = RequestRecord(snapshot.uri, "suggested")
        record.queued_ms = (began - submitted) * 1000 if submitted is not None else 0.0
        self.last_request = record
        settings = self.settings()
        kv_cache = getattr(backend, "kv_cache", None)
        if kv_cache is not None and kv_cache.limit_bytes != settings.kv_cache_mb << 20:
            kv_cache.resize(settings.kv_cache_mb << 20)
        # A tree with errors gets the head of the last clean parse (``_settled``): taken
        # as it is, not built and then replaced.
        known = self._headers.known(snapshot.uri) if snapshot.tree.root_node.has_error else None
        planned = plan(snapshot, cursor, explicit=explicit, known=known)
        planned_at = time.perf_counter()
        record.plan_ms = (planned_at - began) * 1000
        if planned.mode == "none" or planned.context is None:
            log.debug("no completion at %s:%d: %s", snapshot.uri, cursor, planned.reason)
            record.outcome = f"nothing to suggest: {planned.reason}"
            return None
        mode: SuggestionMode = overrides.mode or planned.mode
        context = self._settled(snapshot, planned.context)
        if fresh is not None:
            context, changed = self._held.hold(snapshot.uri, context)
            if changed is not None:
                fresh.append(changed)
        prompt = self._prompt(backend, context, settings)
        line_start = snapshot.text.rfind("\n", 0, cursor) + 1
        first_line_is_new = planned.start != cursor or not snapshot.text[line_start:cursor].strip()
        request = _request(
            prompt, context, mode, settings, overrides,
            first_line_is_new=first_line_is_new,
            code_first=mode == "block" and first_line_is_new and planned.reason in _CODE_FIRST_REASONS,
        )  # fmt: skip
        record.prompt_ms = (time.perf_counter() - planned_at) * 1000
        result = record.result = backend.generate(request, token)
        raw = result.text
        last_request, last_text = request, raw  # the last generation: what a continuation extends
        header = (
            postprocess.opened_block(snapshot.text, planned.start, cursor, raw)
            if mode == "line"
            else None
        )
        if header is not None:
            result, last_request = _follow_block(backend, token, prompt, request, result, header, settings)
            record.result = result
            last_text = result.text[len(header[0]) + 1 :]
            raw = result.text
            mode = "block"
        if settings.record_prompts:
            # The first request's: a body written after the line that opened it goes on
            # from the KV of that line's generated tokens (a peer gets this prompt and
            # the whole count of generated tokens).
            tokens = getattr(backend, "request_tokens", None)
            record.prompt_ids = tuple(tokens(request) if tokens is not None
                                      else request.prompt_tokens or ())
        if mode == "line" and result.stop_reason == "repetition":
            # A line that fell into a loop (stops.repetition): what came before the loop
            # is seldom the line the user wants, and never a whole one.
            record.outcome = "dropped: the model repeated itself"
            return None
        generated = time.perf_counter()
        text = postprocess.finish(snapshot, cursor, planned.start, mode, raw)
        record.finish_ms = (time.perf_counter() - generated) * 1000
        if text is None:
            record.outcome = "dropped by post-processing"
            return None
        suggestion = Suggestion(
            text=text,
            start=planned.start,
            end=cursor,
            mode=mode,
            uri=snapshot.uri,
            version=snapshot.version,
            model=backend.info.name,
            result=result,
        )
        if cut is not None and mode == "block" and result.stop_reason == "time":
            cut.append(Continuation(snapshot, suggestion, last_request, last_text))
        return suggestion

    def _settled(self, snapshot: Snapshot, context: PromptContext) -> PromptContext:
        """``context`` with the head (imports, outline, class header) held from the
        document's last clean parse (:class:`StableHeaders`)."""
        return self._headers.settle(snapshot.uri, context, clean=not snapshot.tree.root_node.has_error)

    def _prompt(self, backend: Backend, context: PromptContext, settings: Settings) -> Prompt:
        """The prompt fitted to the model's budget, with the FIM suffix where it has FIM."""
        info = backend.info
        count = self._tokenizer(backend)
        n_ctx = info.n_ctx
        suffix_budget = min(SUFFIX_TOKENS, n_ctx // 4) if info.fim is not None else 0
        # The same budget for every mode, so line and block requests share a prompt.
        room = budget.PromptBudget(n_ctx, count).room(settings.max_tokens, reserved=suffix_budget)
        prefix_budget = max(MIN_PREFIX_TOKENS, min(settings.max_prompt_tokens, room))
        prefix = budget.fit_prefix(context, count, prefix_budget)
        suffix = budget.fit_suffix(context.suffix, count, suffix_budget) if info.fim else ""
        return Prompt(prefix, suffix, count, info.bos, info.fim)


@dataclass(frozen=True)
class Prompt:
    """A completion prompt: its prefix text, and the FIM suffix and markers if any."""

    prefix: str
    suffix: str
    tokenizer: PromptTokenizer
    bos: tuple[int, ...]
    fim: FimTokens | None

    def tokens(self, prefix: str) -> tuple[int, ...]:
        """The prompt for ``prefix`` as token ids, so the backend does not tokenize it again."""
        tokens = self.tokenizer.tokens
        if self.fim is None:
            return (*self.bos, *tokens(prefix))
        return tuple(assemble(self.fim, tokens(prefix), tokens(self.suffix), self.bos))


def _request(
    prompt: Prompt,
    context: PromptContext,
    mode: SuggestionMode,
    settings: Settings,
    overrides: Overrides,
    *,
    first_line_is_new: bool,
    code_first: bool,
) -> GenerationRequest:
    """What to ask the model for: the mode's length and stop rules, sampling, time budget."""
    if mode == "line":
        stop_rule = postprocess.line_stop_rule
    else:
        block_width = indent_width(context.block_indent) if context.block_indent else 0
        stop_rule = postprocess.block_stop_rule(block_width, first_line_is_new)
    budget_s = settings.time_budget_ms / 1000.0
    return GenerationRequest(
        prompt=prompt.prefix,
        prompt_tokens=prompt.tokens(prompt.prefix),
        stop_token_ids=prompt.fim.stops if prompt.fim is not None else frozenset(),
        max_tokens=overrides.max_tokens
        or (settings.max_line_tokens if mode == "line" else settings.max_tokens),
        temperature=settings.temperature if overrides.temperature is None else overrides.temperature,
        top_p=settings.top_p if overrides.top_p is None else overrides.top_p,
        seed=overrides.seed,
        logprobs=overrides.logprobs,
        stop=postprocess.codex_stop_sequences(context.function_indent),
        stop_rule=stop_rule,
        time_budget=TimeBudget(budget_s, postprocess.complete_line_cut,
                               hard_seconds=max(HARD_BUDGET_FACTOR * budget_s,
                                                budget_s + HARD_BUDGET_EXTRA_S)),
        ban_first=CODE_FIRST if code_first else (),
    )


def _follows(continuation: Continuation, snapshot: Snapshot, cursor: int) -> bool:
    """Whether the document is the continuation's with part or all of its suggestion typed
    or accepted at its place (the type-through cache will answer from the whole block)."""
    old, suggestion = continuation.snapshot, continuation.suggestion
    if snapshot.uri != old.uri or cursor <= suggestion.end:
        return False
    typed = snapshot.text[suggestion.start : cursor]
    return (
        typed.startswith(suggestion.text) or suggestion.text.startswith(typed)
    ) and snapshot.text[: suggestion.start] == old.text[: suggestion.start] \
        and snapshot.text[cursor:] == old.text[suggestion.end :]


def _follow_block(
    backend: Backend,
    token: CancelToken,
    prompt: Prompt,
    request: GenerationRequest,
    result: GenerationResult,
    header: tuple[str, int],
    settings: Settings,
) -> tuple[GenerationResult, GenerationRequest]:
    """The suggested line opens a block (``if x:``): a header alone would leave the buffer
    broken, so go on for its body. The prompt's KV cache is reused. Returns the combined
    result and the request for the body."""
    line_text, width = header
    opened = prompt.prefix + line_text + "\n"
    budget = request.time_budget
    follow = replace(
        request,
        prompt=opened,
        prompt_tokens=prompt.tokens(opened),
        max_tokens=settings.max_tokens,
        stop_rule=postprocess.block_stop_rule(width, True),
        ban_first=CODE_FIRST,
        # One time budget for the request: the body gets what the line left of it (it
        # had its own, so a line then its body could take twice the budget and more).
        time_budget=None if budget is None else replace(
            budget, seconds=max(0.0, budget.seconds - result.total_s),
            hard_seconds=None if budget.hard_seconds is None
            else max(0.0, budget.hard_seconds - result.total_s),
        ),
    )
    more = backend.generate(follow, token)
    return _combine(result, more, line_text + "\n" + more.text), follow


def _combine(first: GenerationResult, second: GenerationResult, text: str) -> GenerationResult:
    return replace(
        first,
        text=text,
        token_count=first.token_count + second.token_count,
        logprob_sum=first.logprob_sum + second.logprob_sum,
        decode_s=first.decode_s + second.decode_s + second.prompt_eval_s,
        total_s=first.total_s + second.total_s,
        stop_reason=second.stop_reason,
    )
