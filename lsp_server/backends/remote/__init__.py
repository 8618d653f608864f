"""Remote engines (llama-server, OpenAI-compatible servers, Ollama) behind the
:class:`~lsp_server.backends.base.Backend` protocol: ``http`` (streaming HTTP client),
``apis`` (each engine's request and stream format), ``stops`` (client-side stop rules),
``backend`` (:class:`~lsp_server.backends.remote.backend.RemoteBackend`)."""
