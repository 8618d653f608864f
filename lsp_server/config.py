"""Typed settings, merged from defaults, initializationOptions, ``workspace/configuration``
and ``workspace/didChangeConfiguration``.

Keys arrive in camelCase (``nThreads``) as editors send them; snake_case is accepted too.
A bad value never stops the server: it is reported once and its default is used.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lsp_server.reliance.settings import RelianceSettings
from lsp_server.reliance.settings import parse as parse_reliance
from lsp_server.reliance.settings import to_camel as reliance_to_camel

# The embedded model with the tokens code uses (models/registry.toml, backends/vocab.py).
DEFAULT_MODEL = "gemma3-270m-code"
# Settings for benchmarks and tests, not for editors (the extension does not declare them).
INTERNAL_SETTINGS = frozenset({"recordPrompts"})
NEVER_READ_DEFAULT = (".env", ".env.*", "*.pem", "*.key")


def default_threads() -> int:
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        count = os.cpu_count() or 1
    return max(1, count)


@dataclass(frozen=True)
class Settings:
    enable: bool = True
    model: str = DEFAULT_MODEL
    n_ctx: int = 2048
    n_threads: int = field(default_factory=default_threads)
    # Decode with fewer of them while other programs take cores (backends/threads.py).
    adaptive_threads: bool = True
    n_gpu_layers: int = 0
    # llama.cpp's flash attention: "auto" turns it on and falls back to off where the
    # model cannot load with it (llama-server's default is auto too).
    flash_attention: str = "auto"  # "auto" | "on" | "off"
    max_tokens: int = 96
    max_line_tokens: int = 32
    # Prompt size cap: the first request after opening a file evaluates this many tokens
    # at most (about 440 tokens/s on 2 cores with the embedded model).
    max_prompt_tokens: int = 1024
    # KV state of recently edited places kept in RAM (MiB; 0: none), so that returning to
    # a function evaluates only the new tokens (backends/kvcache.py).
    kv_cache_mb: int = 256
    temperature: float = 0.0
    top_p: float = 0.95
    time_budget_ms: int = 500
    # When an edit lands away from where the model last worked, evaluate the prompt there
    # in the background before the request comes (engine.start_early).
    start_early: bool = True
    # For benchmarks: ghostpilot/stats's lastRequest carries the token ids of the prompt
    # the model evaluated (promptTokenIds), so a peer can be given exactly the same.
    record_prompts: bool = False
    enabled_languages: tuple[str, ...] = ("python",)
    exclude_globs: tuple[str, ...] = ()
    never_read_globs: tuple[str, ...] = NEVER_READ_DEFAULT
    respect_gitignore: bool = True
    completion_fallback: str = "auto"  # "auto" | "always" | "never"
    docstring_style: str = "auto"  # "auto" | "google" | "numpy" | "sphinx"
    # Documents above this size (UTF-8, KiB) are kept in sync but neither parsed nor
    # completed: a 20 MB file would otherwise cost gigabytes of syntax tree.
    max_file_size_kb: int = 8192
    reliance: RelianceSettings = field(default_factory=RelianceSettings)
    # Tested suggestions (lsp_server/tested/): candidates drawn, their sampling
    # temperature and length, and the seconds each may run its examples and tests.
    tested_candidates: int = 8
    tested_temperature: float = 0.8
    tested_max_tokens: int = 192
    tested_timeout_s: float = 5.0
    # Remote engines (lsp_server/backends/remote/): "local" runs the model in-process.
    backend: str = "local"  # "local" | "llama-server" | "openai" | "ollama"
    endpoint: str = ""  # the engine's base URL, e.g. http://127.0.0.1:8080
    remote_model: str = ""  # the engine's model name (OpenAI model id, Ollama tag)
    remote_tokenizer: str = ""  # registry name or GGUF path of the engine's model
    request_timeout_ms: int = 30000
    tls_verify: bool = True
    tls_ca_bundle: str = ""
    tls_client_cert: str = ""
    tls_client_key: str = ""
    api_key_env: str = ""  # the environment variable holding the API key (never logged)
    # "local": while the remote engine is unreachable, the local model serves (the status
    # says so); "none": no silent fallback, the error is shown.
    fallback: str = "none"  # "none" | "local"


_CHOICES: dict[str, tuple[str, ...]] = {
    "flash_attention": ("auto", "on", "off"),
    "completion_fallback": ("auto", "always", "never"),
    "docstring_style": ("auto", "google", "numpy", "sphinx"),
    "backend": ("local", "llama-server", "openai", "ollama"),
    "fallback": ("none", "local"),
}
_RANGES: dict[str, tuple[float, float]] = {
    "n_ctx": (256, 131072),
    "n_threads": (1, 256),
    "n_gpu_layers": (-1, 1000),
    "max_tokens": (1, 2048),
    "max_line_tokens": (1, 512),
    "max_prompt_tokens": (64, 131072),
    "kv_cache_mb": (0, 65536),
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "time_budget_ms": (50, 60000),
    "max_file_size_kb": (1, 1048576),
    "request_timeout_ms": (100, 600000),
    "tested_candidates": (1, 32),
    "tested_temperature": (0.05, 2.0),
    "tested_max_tokens": (16, 1024),
    "tested_timeout_s": (0.5, 120.0),
}
# Optional strings: "" means unset.
_MAY_BE_EMPTY = frozenset(
    {"endpoint", "remote_model", "remote_tokenizer", "tls_ca_bundle", "tls_client_cert",
     "tls_client_key", "api_key_env"}
)  # fmt: skip
_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def snake_case(key: str) -> str:
    out = []
    for char in key:
        if char.isupper():
            out.append("_")
            out.append(char.lower())
        else:
            out.append(char)
    return "".join(out)


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Convert ``value`` to the type of ``default`` or raise ValueError saying why."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {value!r}")
    if isinstance(default, int):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value != int(value)
        ):
            raise ValueError(f"expected an integer, got {value!r}")
        value = int(value)
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"expected a number, got {value!r}")
        value = float(value)
    elif isinstance(default, str):
        if isinstance(value, str) and name in _MAY_BE_EMPTY:
            return value.strip()
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"expected a non-empty string, got {value!r}")
    elif isinstance(default, tuple):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected a list of strings, got {value!r}")
        return tuple(value)
    if name in _RANGES:
        low, high = _RANGES[name]
        if not low <= value <= high:
            raise ValueError(f"{value!r} is outside {low:g}..{high:g}")
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ValueError(f"expected one of {', '.join(_CHOICES[name])}, got {value!r}")
    return value


def merge(base: Settings, raw: Any) -> tuple[Settings, list[str]]:
    """Overlay ``raw`` (a mapping from an editor) on ``base``.

    Returns the new settings and one problem string per rejected key; a rejected key
    keeps its *default* value, so a typo never silently keeps a stale setting.
    """
    if raw is None or (isinstance(raw, (list, tuple)) and not raw):
        return base, []  # Neovim sends an empty Lua table as []: no settings
    if not isinstance(raw, Mapping):
        return base, [f"settings must be an object, got {type(raw).__name__}"]
    if "ghostpilot" in raw and (isinstance(raw["ghostpilot"], Mapping) or raw["ghostpilot"] == []):
        raw = raw["ghostpilot"] or {}
    defaults = Settings()
    changes: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        name = snake_case(str(key))
        if name not in _FIELDS:
            problems.append(f"unknown setting {key!r}")
            continue
        if name == "reliance":  # an object whose keys are checked one by one
            changes[name], nested = parse_reliance(value)
            problems.extend(nested)
            continue
        if value is None:
            changes[name] = getattr(defaults, name)
            continue
        try:
            changes[name] = _coerce(name, value, getattr(defaults, name))
        except ValueError as error:
            problems.append(f"{key}: {error}; using the default {getattr(defaults, name)!r}")
            changes[name] = getattr(defaults, name)
    return dataclasses.replace(base, **changes), problems


def to_camel(settings: Settings) -> dict[str, Any]:
    """The settings as an editor would write them (for ``ghostpilot doctor`` and logs)."""
    result = {}
    for name, value in dataclasses.asdict(settings).items():
        if name == "reliance":
            value = reliance_to_camel(settings.reliance)
        parts = name.split("_")
        result[parts[0] + "".join(p.title() for p in parts[1:])] = value
    return result


# Settings whose change needs the model to be loaded again.
MODEL_KEYS = (
    "model", "n_ctx", "n_threads", "adaptive_threads", "n_gpu_layers", "flash_attention",
    "backend", "endpoint", "remote_model", "remote_tokenizer", "request_timeout_ms",
    "tls_verify", "tls_ca_bundle", "tls_client_cert", "tls_client_key", "api_key_env",
    "fallback",
)  # fmt: skip


def needs_reload(old: Settings, new: Settings) -> bool:
    return any(getattr(old, key) != getattr(new, key) for key in MODEL_KEYS)
