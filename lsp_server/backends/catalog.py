"""The model catalogue shown by ``ghostpilot models list`` and editors' model pickers:
each registry model with its size, licence, FIM template, published HumanEval pass@1 and
whether it is installed, and the one recommended for this machine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsp_server.backends.registry import ModelEntry, installed_path
from lsp_server.config import DEFAULT_MODEL

# On CPU the weights are read once per generated token, so their size bounds how fast a
# suggestion appears: beyond about 2 GB (a 1.5B model at Q8_0) a line takes seconds on a
# few cores. With GPU offload the bound is memory instead.
CPU_MAX_MODEL_BYTES = 2_000_000_000
# The model may take at most this share of the machine's RAM (the editor and the rest of
# the machine keep the other half).
RAM_SHARE = 0.5


@dataclass(frozen=True)
class Machine:
    ram_bytes: int
    cores: int
    gpu_offload: bool

    def describe(self) -> str:
        gpu = "GPU offload" if self.gpu_offload else "no GPU offload (CPU only)"
        return f"{self.ram_bytes / 1e9:.0f} GB RAM, {self.cores} cores, {gpu}"


def detect_machine() -> Machine:
    """RAM and cores from the OS; GPU offload from the llama.cpp build (as ``doctor`` does)."""
    from lsp_server.backends.llama import system_info
    from lsp_server.config import default_threads

    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        ram = 0
    try:
        gpu = bool(system_info()["gpu_offload"])
    except Exception:  # llama.cpp missing or broken: say CPU only
        gpu = False
    return Machine(ram_bytes=int(ram), cores=default_threads(), gpu_offload=gpu)


@dataclass(frozen=True)
class Recommendation:
    name: str
    reason: str


def recommend(entries: list[ModelEntry], machine: Machine) -> Recommendation | None:
    """The model with the best published HumanEval pass@1 among those that fit: at most
    half the RAM, and on CPU at most :data:`CPU_MAX_MODEL_BYTES`. Ties go to the smaller."""
    limit = int(machine.ram_bytes * RAM_SHARE)
    if not machine.gpu_offload:
        limit = min(limit, CPU_MAX_MODEL_BYTES)
    fitting = [
        entry for entry in entries
        if entry.humaneval is not None and (entry.repo or entry.embedded)
        and (entry.approx_size_bytes or 0) > 0 and (entry.approx_size_bytes or 0) <= limit
    ]  # fmt: skip
    if not fitting:
        embedded = next((entry for entry in entries if entry.embedded), None)
        if embedded is None:
            return None
        default = next((entry for entry in entries if entry.name == DEFAULT_MODEL), embedded)
        return Recommendation(
            default.name, f"no code model fits this machine ({machine.describe()}): keep the embedded one"
        )
    best = max(fitting, key=lambda entry: (entry.humaneval or 0.0, -(entry.approx_size_bytes or 0)))
    bound = "half the RAM" if machine.gpu_offload else f"{limit / 1e9:.1f} GB for CPU-only suggestions"
    return Recommendation(
        best.name,
        f"the best published HumanEval pass@1 ({best.humaneval:.1f} %) among models that fit "
        f"({bound}) on this machine: {machine.describe()}",
    )


@dataclass(frozen=True)
class CatalogRow:
    entry: ModelEntry
    path: Path | None
    recommended: bool

    @property
    def installed(self) -> bool:
        return self.path is not None

    @property
    def size_bytes(self) -> int | None:
        """The installed file's size, else the registry's exact size or its estimate."""
        if self.path is not None:
            try:
                return self.path.stat().st_size
            except OSError:
                pass
        return self.entry.approx_size_bytes

    @property
    def size_exact(self) -> bool:
        return self.path is not None or self.entry.size_bytes is not None

    @property
    def downloadable(self) -> bool:
        return not self.entry.embedded and self.entry.repo is not None

    def to_json(self) -> dict[str, Any]:
        """camelCase, as editors read it (the ``ghostpilot/models`` request, ``--json``)."""
        entry = self.entry
        return {
            "name": entry.name, "title": entry.display_name, "description": entry.description,
            "installed": self.installed, "path": str(self.path) if self.path else None,
            "downloadable": self.downloadable, "embedded": entry.embedded,
            "sizeBytes": self.size_bytes, "sizeExact": self.size_exact,
            "license": entry.license, "licenseUrl": entry.license_url,
            "needsLicenseAcceptance": entry.needs_license_acceptance and self.downloadable,
            "fim": entry.fim, "nCtx": entry.n_ctx,
            "humaneval": entry.humaneval, "humanevalSource": entry.humaneval_source,
            "source": entry.source, "repo": entry.repo, "file": entry.file,
            "recommended": self.recommended,
            "base": entry.base, "baseSha256": entry.base_sha256, "dataCard": entry.data_card,
            "derivedFrom": entry.derived_from,
        }  # fmt: skip


def catalog(entries: list[ModelEntry], recommendation: Recommendation | None) -> list[CatalogRow]:
    chosen = recommendation.name if recommendation else None
    return [CatalogRow(entry, installed_path(entry), entry.name == chosen) for entry in entries]
