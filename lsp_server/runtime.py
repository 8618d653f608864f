"""Turning settings into a loaded model: shared by the server and the CLI."""

from __future__ import annotations

import concurrent.futures

from lsp_server.backends import probe
from lsp_server.backends.base import Backend, ModelUnavailable
from lsp_server.backends.gguf import GGUFError, read_header
from lsp_server.backends.llama import LlamaBackend
from lsp_server.backends.registry import ModelNotFound, check_adapter, resolve
from lsp_server.backends.remote.backend import plain_http_warning
from lsp_server.backends.remote.settings import remote_backend
from lsp_server.backends.worker import ModelWorker
from lsp_server.config import Settings
from lsp_server.prompts.budget import PromptBudget


def load_model(worker: ModelWorker, settings: Settings) -> concurrent.futures.Future[None]:
    """Queue loading the configured model on the worker; errors end in the worker's state.

    The file's header is checked first; a file that is not a registry model with a
    matching sha256 is then loaded once in a child process (:mod:`.backends.probe`), so
    that a model that makes llama.cpp abort costs a message, not this process.
    """

    def factory() -> Backend:
        if settings.backend != "local":
            return remote_backend(settings)  # no silent fallback to the local model
        try:
            resolved = resolve(settings.model)
            header = read_header(resolved.path)
            check_adapter(resolved)
        except (ModelNotFound, GGUFError) as error:
            raise ModelUnavailable(str(error)) from error
        vetted = probe.vet(
            resolved.path,
            resolved.entry,
            n_threads=settings.n_threads,
            n_gpu_layers=settings.n_gpu_layers,
            flash_attention=settings.flash_attention,
        )
        if not vetted.ok:
            raise ModelUnavailable(vetted.message)
        return LlamaBackend(
            str(resolved.path),
            name=resolved.name,
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
            n_gpu_layers=settings.n_gpu_layers,
            fim_template="auto",
            flash_attention=settings.flash_attention,
            header=header,
            lora_path=str(resolved.adapter) if resolved.adapter else None,
        )

    description = settings.model
    if settings.backend != "local":  # the status says where code goes, and if unencrypted
        warning = plain_http_warning(settings.endpoint)
        description = f"{settings.backend} at {settings.endpoint}" + (f" ({warning})" if warning else "")
    return worker.load(factory, description)


def start_worker(settings: Settings) -> ModelWorker:
    """A worker with the configured model loaded (for the CLI and evaluations).

    Raises :class:`ModelUnavailable` with the reason when the model did not load.
    """
    worker = ModelWorker()
    load_model(worker, settings)
    worker.wait_loaded()
    if worker.state != "ready":
        worker.shutdown()
        raise ModelUnavailable(worker.message or "the model did not load")
    return worker


def prompt_budget(worker: ModelWorker, n_ctx: int) -> PromptBudget:
    """The loaded model's prompt budget (``n_ctx`` until one is loaded).

    It counts with the model's tokenizer through the worker, so use it from a thread:
    never on the event loop (it would wait for the model) nor inside a worker job (it
    would wait for itself). Inside a job, count with the backend's ``tokenize``.
    """
    info = worker.info
    return PromptBudget.counting(info.n_ctx if info is not None else n_ctx, worker.tokenize_blocking)
