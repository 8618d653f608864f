"""training.ship: an exported adapter becomes a registry entry that resolves and checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lsp_server.backends import registry
from lsp_server.backends.gguf import GGUFError
from lsp_server.backends.registry import REGISTRY_PATH, check_adapter, load_registry, resolve
from tests.unit.test_registry_adapter import adapter_kvs, base_kvs, sha, write
from training.ship import replace_entry, ship


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(REGISTRY_PATH, models / "registry.toml")
    monkeypatch.setenv("GHOSTPILOT_REGISTRY", str(models / "registry.toml"))
    monkeypatch.setattr(registry, "ADAPTERS_DIR", models / "adapters")
    return models


def test_shipping_writes_one_entry_that_resolves_to_the_embedded_base(repo: Path, tmp_path: Path) -> None:
    adapter = write(tmp_path / "exported.gguf", adapter_kvs())
    card = tmp_path / "card.md"
    card.write_text("# card\n")
    # The repository's registry may already hold the shipped entry: count the others.
    before = len([e for e in load_registry(repo / "registry.toml") if e.name != "gemma3-270m-python"])
    for _ in range(2):  # shipping again replaces the entry, never adds a second
        ship(adapter, name="gemma3-270m-python", base="gemma3-270m", registry=repo / "registry.toml",
             adapters=repo / "adapters", card=card)
    entries = load_registry(repo / "registry.toml")
    assert len(entries) == before + 1
    entry = next(e for e in entries if e.name == "gemma3-270m-python")
    base = next(e for e in entries if e.name == "gemma3-270m")
    assert entry.base == "gemma3-270m" and entry.base_sha256 == base.sha256
    assert entry.sha256 == sha(adapter) and (repo / "adapters" / entry.file).is_file()
    assert entry.data_card == "models/adapters/gemma3-270m-python.DATA_CARD.md"
    resolved = resolve("gemma3-270m-python")
    assert resolved.adapter == repo / "adapters" / entry.file
    assert resolved.entry is not None and resolved.entry.embedded
    check_adapter(resolved)


def test_a_file_that_is_not_an_adapter_is_not_shipped(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(GGUFError):
        ship(write(tmp_path / "base.gguf", base_kvs()), name="x", base="gemma3-270m",
             registry=repo / "registry.toml", adapters=repo / "adapters", card=None)
    assert not (repo / "adapters").exists()


def test_replacing_an_entry_keeps_the_others_and_the_comments() -> None:
    text = '# head\n\n[[model]]\nname = "a"\nx = 1\n\n[[model]]\nname = "b"\nx = 2\n'
    out = replace_entry(text, "a", '[[model]]\nname = "a"\nx = 3\n')
    assert out.startswith("# head") and 'name = "b"\nx = 2' in out
    assert out.count('name = "a"') == 1 and "x = 3" in out and "x = 1" not in out
