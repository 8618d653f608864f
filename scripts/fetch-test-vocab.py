#!/usr/bin/env python3
"""Extract the vocab-only GGUFs that the tokenizer and FIM tests load, with llama.cpp's
MIT licence, from the llama-cpp-python sdist (``vendor/llama.cpp/models``).

Usage: scripts/fetch-test-vocab.py [DEST]    (default: .cache/vocab in the repository)

The sdist comes from scripts/fetch-llama-sdist.sh (downloaded once per machine); the
extraction is done once per checkout and redone only when the pinned version changes.
Prints DEST; on failure, says why on stderr and exits 1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOCABS = ("deepseek-coder", "llama-spm", "refact", "starcoder")
FILES = tuple(f"ggml-vocab-{name}.gguf" for name in VOCABS)
LICENSE = "LICENSE"
STAMP = "SOURCE"


def pinned_version() -> str:
    """The llama-cpp-python version pyproject.toml pins (the one the backend runs)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'"llama-cpp-python==([^"]+)"', text)
    if not match:
        raise SystemExit("fetch-test-vocab: pyproject.toml pins no llama-cpp-python version")
    return match.group(1)


def stamp_text(version: str) -> str:
    return (f"llama-cpp-python {version} sdist, vendor/llama.cpp/models "
            f"(llama.cpp, MIT: see {LICENSE})\n")


def is_current(dest: Path, version: str) -> bool:
    stamp = dest / STAMP
    return (stamp.is_file() and stamp.read_text(encoding="utf-8") == stamp_text(version)
            and all((dest / name).is_file() for name in (*FILES, LICENSE)))


def fetch_sdist(version: str) -> Path:
    env = {**os.environ, "LLAMA_CPP_PYTHON_VERSION": version}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "fetch-llama-sdist.sh")],
                            stdout=subprocess.PIPE, env=env, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(
            f"fetch-test-vocab: no llama-cpp-python=={version} sdist, so no vocab-only GGUFs "
            "for the tokenizer/FIM tests (fetch-llama-sdist.sh said why above)")
    return Path(result.stdout.strip().splitlines()[-1])


def extract(sdist: Path, dest: Path, version: str) -> None:
    """Copy the wanted members of ``sdist`` into ``dest``: written whole beside it, then
    renamed in, so a reader never sees half of it."""
    wanted = {f"vendor/llama.cpp/models/{name}": name for name in FILES}
    wanted["vendor/llama.cpp/LICENSE"] = LICENSE
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    staging.chmod(0o755)
    try:
        found: set[str] = set()
        with tarfile.open(sdist, "r|gz") as archive:
            for member in archive:
                inner = member.name.split("/", 1)[-1]
                if inner in wanted and member.isfile():
                    source = archive.extractfile(member)
                    assert source is not None
                    with source, open(staging / wanted[inner], "wb") as target:
                        shutil.copyfileobj(source, target)
                    found.add(inner)
        missing = sorted(set(wanted) - found)
        if missing:
            raise SystemExit(f"fetch-test-vocab: {sdist.name} lacks {', '.join(missing)}")
        (staging / STAMP).write_text(stamp_text(version), encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        try:
            staging.rename(dest)
        except OSError:
            if not is_current(dest, version):  # else a concurrent run got there first
                raise
    except (OSError, tarfile.TarError) as error:
        raise SystemExit(f"fetch-test-vocab: cannot extract from {sdist}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str]) -> int:
    dest = Path(argv[1]) if len(argv) > 1 else ROOT / ".cache" / "vocab"
    version = pinned_version()
    if not is_current(dest, version):
        extract(fetch_sdist(version), dest, version)
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
