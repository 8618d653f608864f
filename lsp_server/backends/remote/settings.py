"""From settings to a :class:`RemoteBackend`: the endpoint checked, TLS options, the API
key read from the environment variable that ``apiKeyEnv`` names (never from settings, so
it is never in a config file nor a log)."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING

from lsp_server.backends.base import ModelUnavailable
from lsp_server.backends.remote.backend import RemoteBackend, RemoteConfig
from lsp_server.backends.remote.http import HttpOptions

if TYPE_CHECKING:
    from lsp_server.config import Settings


def remote_config(settings: Settings, environ: Mapping[str, str] | None = None) -> RemoteConfig:
    """The remote engine's configuration; raises ModelUnavailable saying what is missing."""
    environ = os.environ if environ is None else environ
    endpoint = settings.endpoint.strip()
    parts = urllib.parse.urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModelUnavailable(
            f"backend {settings.backend} needs endpoint, the engine's http:// or https:// URL "
            f"(got {endpoint!r})"
        )
    api_key = ""
    if settings.api_key_env:
        api_key = environ.get(settings.api_key_env, "")
        if not api_key:
            raise ModelUnavailable(
                f"apiKeyEnv names {settings.api_key_env}, which is not set in the server's environment"
            )
    return RemoteConfig(
        engine=settings.backend,
        endpoint=endpoint,
        model=settings.remote_model,
        tokenizer=settings.remote_tokenizer,
        n_ctx=settings.n_ctx,
        http=HttpOptions(
            timeout_s=settings.request_timeout_ms / 1000.0,
            verify=settings.tls_verify,
            ca_bundle=settings.tls_ca_bundle,
            client_cert=settings.tls_client_cert,
            client_key=settings.tls_client_key,
            api_key=api_key,
            api_key_source=settings.api_key_env,
        ),
    )


def remote_backend(settings: Settings) -> RemoteBackend:
    return RemoteBackend(remote_config(settings))


def engine_report(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """What ``ghostpilot doctor`` says about a remote engine: where, whether code goes there
    unencrypted, whether it answers (and how fast), its model, context and tokenizer check.
    Never raises for an engine problem: ``answers`` is False and ``error`` says why."""
    import time

    from lsp_server.backends.remote.backend import plain_http_warning

    report: dict[str, object] = {"backend": settings.backend, "endpoint": settings.endpoint}
    warning = plain_http_warning(settings.endpoint)
    if warning:
        report["warning"] = warning
    if settings.api_key_env:
        report["api_key"] = f"from ${settings.api_key_env}" + (
            "" if (environ or os.environ).get(settings.api_key_env) else " (not set)"
        )
    started = time.perf_counter()
    try:
        backend = RemoteBackend(remote_config(settings, environ))
    except ModelUnavailable as error:
        report.update(answers=False, error=str(error))
        return report
    try:
        report.update(
            answers=True,
            start_ms=round((time.perf_counter() - started) * 1000, 1),
            model=backend.info.name,
            n_ctx=backend.info.n_ctx,
            tokenizer=backend.tokenizer_source,
            fim=backend.info.fim_template or "none (prefix-only prompts)",
        )
    finally:
        backend.close()
    return report
