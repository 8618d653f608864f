"""A clone carries or fetches everything its tests and benchmarks read: no tracked file
points into a data folder that only the project's own machines have, and the vocab-only
GGUFs come from the llama-cpp-python sdist through scripts/fetch-test-vocab.py."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from tests import conftest
from tests.conftest import FETCH_VOCAB, ROOT

# Spelled in pieces so that this file does not match itself.
FORBIDDEN = ("/".join(("..", "shared")), "/".join(("shared", "data")))


def tracked_files() -> list[Path]:
    result = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                            check=False)
    if result.returncode != 0:
        pytest.skip(f"not a git checkout: {result.stderr.decode(errors='replace').strip()}")
    return [ROOT / name for name in result.stdout.decode().split("\0") if name]


def mentions(path: Path, root: Path = ROOT) -> list[str]:
    """``path:line: text`` (relative to ``root``) for each line naming a forbidden folder."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):  # deleted in the worktree; a submodule
        return []
    found = []
    for number, line in enumerate(data.splitlines(), 1):
        if any(word.encode() in line for word in FORBIDDEN):
            text = line.decode("utf-8", errors="replace").strip()[:160]
            found.append(f"{path.relative_to(root)}:{number}: {text}")
    return found


def test_no_tracked_file_points_outside_the_clone() -> None:
    files = tracked_files()
    assert ROOT / "README.md" in files
    offenders = [hit for path in files for hit in mentions(path)]
    assert not offenders, (
        f"these lines name {' or '.join(FORBIDDEN)}, which a fresh clone does not have; "
        "carry the data in the repo or fetch it with a script:\n" + "\n".join(offenders))


@pytest.mark.parametrize("word", FORBIDDEN)
def test_the_check_sees_a_mention(tmp_path: Path, word: str) -> None:
    sample = tmp_path / "notes.md"
    sample.write_text(f"intro\nrun with --data {word}/x\n", encoding="utf-8")
    assert mentions(sample, tmp_path) == [f"notes.md:2: run with --data {word}/x"]


def fetch_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_test_vocab", FETCH_VOCAB)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_sdist(path: Path, version: str, names: tuple[str, ...]) -> dict[str, bytes]:
    """A tarball laid out as the sdist, with stand-in bytes; returns what each file holds."""
    contents = {name: f"stand-in {name}".encode() for name in names}
    contents["LICENSE"] = b"MIT License\n"
    top = f"llama_cpp_python-{version}/vendor/llama.cpp"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, data in [("models/ggml-vocab-other.gguf", b"not wanted"),
                           *((f"models/{n}", contents[n]) for n in names),
                           ("LICENSE", contents["LICENSE"])]:
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return contents


def run_fetch(dest: Path, cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(FETCH_VOCAB), str(dest)], capture_output=True,
                          text=True, timeout=600, check=False,
                          env={**os.environ, "GHOSTPILOT_CACHE": str(cache), **env})


def test_fetch_extracts_the_vocab_files_and_licence_once(tmp_path: Path) -> None:
    script = fetch_script()
    version = script.pinned_version()
    sdist = tmp_path / "cache" / "sdist" / f"llama_cpp_python-{version}.tar.gz"
    contents = fake_sdist(sdist, version, script.FILES)
    dest = tmp_path / "vocab"

    first = run_fetch(dest, tmp_path / "cache")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == str(dest)
    assert {p.name for p in dest.iterdir()} == {*contents, script.STAMP}
    for name, data in contents.items():
        assert (dest / name).read_bytes() == data
    assert version in (dest / script.STAMP).read_text(encoding="utf-8")

    sdist.unlink()  # extracted once: a second run needs neither the sdist nor the network
    second = run_fetch(dest, tmp_path / "cache", PIP_NO_INDEX="1")
    assert second.returncode == 0, second.stderr
    assert (dest / script.FILES[0]).read_bytes() == contents[script.FILES[0]]


def test_fetch_offline_fails_with_a_clear_message(tmp_path: Path) -> None:
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path), "PIP_CONFIG_FILE": os.devnull}
    result = run_fetch(tmp_path / "vocab", tmp_path / "cache", **offline)
    assert result.returncode == 1
    assert "are you offline?" in result.stderr
    assert "no vocab-only GGUFs for the tokenizer/FIM tests" in result.stderr
    assert not (tmp_path / "vocab").exists()


@pytest.mark.parametrize(
    ("ci", "outcome"),
    [pytest.param("true", pytest.fail.Exception, id="ci-fails"),
     pytest.param("", pytest.skip.Exception, id="elsewhere-skips")],
)
def test_require_vocab_without_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(conftest, "fetch_vocab", lambda: "fetch-llama-sdist: are you offline?")
    with pytest.raises(outcome, match="are you offline"):
        conftest.require_vocab(tmp_path / "ggml-vocab-missing.gguf")
