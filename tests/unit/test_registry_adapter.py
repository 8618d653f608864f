"""Registry entries that are a LoRA adapter on another entry: resolution to the base's
weights plus the adapter, and the checks made before llama.cpp sees either file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lsp_server.backends import registry
from lsp_server.backends.gguf import GGUFError
from lsp_server.backends.registry import ModelNotFound, check_adapter, installed_path, resolve
from tests.unit.test_gguf import F32, STRING, gguf, kv, tensor

F32_TYPE = 0


def write(path: Path, kvs: list[bytes]) -> Path:
    path.write_bytes(gguf(kvs, [tensor("w", (8,), F32_TYPE)], b"\x01" * 32))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def base_kvs(arch: str = "gemma3") -> list[bytes]:
    return [kv("general.architecture", STRING, arch), kv("general.name", STRING, "Base")]


def adapter_kvs(arch: str = "gemma3") -> list[bytes]:
    return [
        kv("general.architecture", STRING, arch), kv("general.type", STRING, "adapter"),
        kv("adapter.type", STRING, "lora"), kv("adapter.lora.alpha", F32, 32.0),
    ]  # fmt: skip


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    models = tmp_path / "models"
    adapters = tmp_path / "adapters"
    models.mkdir()
    adapters.mkdir()
    base = write(models / "base.gguf", base_kvs())
    adapter = write(adapters / "python-lora.gguf", adapter_kvs())
    toml = tmp_path / "registry.toml"
    toml.write_text(f'''
[[model]]
name = "base"
description = "a base"
source = "test"
file = "base.gguf"
sha256 = "{sha(base)}"
fim = "none"
n_ctx = 2048
license = "Apache-2.0"

[[model]]
name = "base-python"
description = "base + LoRA"
source = "this repository"
file = "python-lora.gguf"
sha256 = "{sha(adapter)}"
base = "base"
base_sha256 = "{sha(base)}"
fim = "none"
n_ctx = 2048
license = "Apache-2.0"
''')
    monkeypatch.setenv("GHOSTPILOT_REGISTRY", str(toml))
    monkeypatch.setenv("GHOSTPILOT_MODELS_DIR", str(models))
    monkeypatch.setattr(registry, "ADAPTERS_DIR", adapters)
    return {"base": base, "adapter": adapter, "toml": toml, "models": models, "adapters": adapters}


def test_an_adapter_entry_resolves_to_the_base_weights_and_the_adapter(setup: dict[str, Path]) -> None:
    resolved = resolve("base-python")
    assert resolved.name == "base-python"
    assert resolved.path == setup["base"]
    assert resolved.entry is not None and resolved.entry.name == "base"
    assert resolved.adapter == setup["adapter"]
    assert resolved.adapter_entry is not None and resolved.adapter_entry.is_adapter
    check_adapter(resolved)  # both sha256s match, a LoRA for the same architecture
    assert installed_path(resolved.adapter_entry) == setup["adapter"]
    plain = resolve("base")
    assert plain.adapter is None and plain.adapter_entry is None


def test_an_adapter_in_the_models_directory_is_found_when_the_repo_has_none(setup: dict[str, Path]) -> None:
    moved = setup["models"] / "python-lora.gguf"
    setup["adapter"].rename(moved)
    assert resolve("base-python").adapter == moved


def test_a_missing_adapter_says_where_it_was_looked_for(setup: dict[str, Path]) -> None:
    setup["adapter"].unlink()
    with pytest.raises(ModelNotFound, match="python-lora.gguf") as error:
        resolve("base-python")
    assert str(setup["adapters"]) in str(error.value) and str(setup["models"]) in str(error.value)
    entry = registry.find_entry("base-python")
    assert entry is not None and installed_path(entry) is None


def test_a_missing_base_fails_resolution(setup: dict[str, Path]) -> None:
    setup["base"].unlink()
    with pytest.raises(ModelNotFound, match="not downloaded"):
        resolve("base-python")


def test_an_adapter_whose_bytes_changed_is_refused(setup: dict[str, Path]) -> None:
    write(setup["adapter"], adapter_kvs() + [kv("general.name", STRING, "tampered")])
    with pytest.raises(GGUFError, match="sha256"):
        check_adapter(resolve("base-python"))


def test_a_file_that_is_not_a_lora_adapter_is_refused(setup: dict[str, Path]) -> None:
    write(setup["adapter"], base_kvs())
    with pytest.raises(GGUFError, match="not a LoRA adapter"):
        check_adapter(resolve("base-python"))


def test_an_adapter_for_another_architecture_is_refused(setup: dict[str, Path]) -> None:
    write(setup["adapter"], adapter_kvs("qwen2"))
    with pytest.raises(GGUFError, match="qwen2"):
        check_adapter(resolve("base-python"))


def test_an_adapter_trained_on_another_base_is_refused(setup: dict[str, Path]) -> None:
    text = setup["toml"].read_text().replace(f'base_sha256 = "{sha(setup["base"])}"', 'base_sha256 = "0" ')
    setup["toml"].write_text(text.replace('"0" ', '"' + "0" * 64 + '"'))
    with pytest.raises(GGUFError, match="trained on a base"):
        check_adapter(resolve("base-python"))


def test_an_adapter_on_an_unknown_base_names_it(setup: dict[str, Path]) -> None:
    setup["toml"].write_text(setup["toml"].read_text().replace('base = "base"', 'base = "nowhere"'))
    with pytest.raises(ModelNotFound, match="nowhere"):
        resolve("base-python")


def test_doctor_and_models_list_show_the_adapter(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from lsp_server.backends import catalog
    from lsp_server.cli import main

    assert main(["doctor", "--model", "base-python", "--json"]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert model["path"] == str(setup["base"])
    assert str(setup["adapter"]) in model["lora_adapter"]
    monkeypatch.setattr(catalog, "detect_machine", lambda: catalog.Machine(8_000_000_000, 2, False))
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    row = next(line for line in listing.splitlines() if line.startswith("base-python"))
    assert "shipped" in row
    assert f"the LoRA adapter python-lora.gguf (sha256 {sha(setup['adapter'])[:12]}" in listing
    assert main(["models", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["models"]}
    assert rows["base-python"]["base"] == "base" and rows["base-python"]["installed"] is True
    setup["adapter"].write_bytes(setup["adapter"].read_bytes() + b"x")
    assert main(["doctor", "--model", "base-python", "--json"]) == 1
    assert "sha256" in json.loads(capsys.readouterr().out)["model"]["error"]
