"""Model pulls against a loopback stand-in for the Hugging Face Hub (tests/hub_standin.py),
through the real huggingface_hub client: metadata, redirects, tokens, errors, resume,
verification; and the catalogue's recommendation."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lsp_server.backends import download
from lsp_server.backends.catalog import CPU_MAX_MODEL_BYTES, Machine, catalog, recommend
from lsp_server.backends.download import PullCancelled, PullError, PullSpec
from lsp_server.backends.registry import ModelEntry, load_registry, missing_download
from lsp_server.config import DEFAULT_MODEL
from tests.hub_standin import HubStandIn, small_disk
from tests.unit.test_gguf import BASIC_KVS, gguf, tensor

REPO = "ghostpilot-test/Tiny-Coder-GGUF"
FILE = "tiny-coder-q8_0.gguf"
MB = 1_000_000


def make_gguf(path: Path, data_bytes: int, seed: int = 0) -> Path:
    """A valid GGUF with one F32 tensor of ``data_bytes`` bytes (not all zeros)."""
    count = data_bytes // 4
    block = hashlib.sha256(str(seed).encode()).digest() * 2048
    data = (block * (count * 4 // len(block) + 1))[: count * 4]
    path.write_bytes(gguf(BASIC_KVS, [tensor("w", (count,))], data))
    return path


def entry(sha256: str, name: str = "tiny-coder", license: str = "Apache-2.0", **extra: object) -> ModelEntry:
    return ModelEntry(
        name=name, description="test", source=f"https://huggingface.co/{REPO}", file=FILE,
        sha256=sha256, fim="qwen", n_ctx=4096, license=license, repo=REPO, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    with HubStandIn() as standin:
        monkeypatch.setenv("HF_ENDPOINT", standin.endpoint)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        yield standin


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_gguf(tmp_path / "served.gguf", 24 * MB)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cdn_gets(hub: HubStandIn) -> list[tuple[str | None, int]]:
    return [(r.range, r.sent) for r in hub.log if r.server == "cdn" and r.method == "GET"]


def left_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.suffix != ".lock")


# -- names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "repo", "filename"),
    [
        pytest.param("qwen2.5-coder-1.5b", "ikw/Qwen2.5-Coder-1.5B-GGUF", "qwen2.5-coder-1.5b-q8_0.gguf", id="registry"),
        pytest.param("org/repo/model.Q4_K_M.gguf", "org/repo", "model.Q4_K_M.gguf", id="repo-file"),
        pytest.param("org/repo/sub/dir/m.gguf", "org/repo", "sub/dir/m.gguf", id="repo-subfolder"),
    ],
)
def test_parse_spec(text: str, repo: str, filename: str) -> None:
    spec = download.parse_spec(text, load_registry())
    assert (spec.repo, spec.filename) == (repo, filename)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param("gemma3-270m", "is embedded", id="embedded"),
        pytest.param("gpt-5", "unknown model 'gpt-5'.*qwen2.5-coder-1.5b", id="unknown"),
        pytest.param("org/repo/weights.bin", "OWNER/REPO/FILE.gguf", id="not-gguf"),
        pytest.param("org//m.gguf", "unknown model", id="empty-part"),
    ],
)
def test_parse_spec_rejects(text: str, match: str) -> None:
    with pytest.raises(PullError, match=match) as info:
        download.parse_spec(text, load_registry())
    assert info.value.kind == "invalid"


# -- a full pull ---------------------------------------------------------------------


def test_pull_installs_verified_file_and_never_sends_the_token_to_the_cdn(
    hub: HubStandIn, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    served = hub.add(REPO, FILE, model)
    dest = tmp_path / "models"
    seen: list[tuple[int, int | None]] = []
    result = download.pull(PullSpec(REPO, FILE, entry=entry(served.sha256)), dest,
                           on_progress=lambda done, total: seen.append((done, total)))
    assert result.path == dest / FILE and sha(result.path) == served.sha256
    assert (result.size, result.resumed_from, result.already_installed) == (served.size, 0, False)
    assert left_in(dest) == [FILE]
    heads = [r for r in hub.log if r.server == "hub" and r.method == "HEAD"]
    assert [(r.path, r.authorized, r.status) for r in heads] == [(f"/{REPO}/resolve/main/{FILE}", True, 302)]
    assert [(r.range, r.authorized, r.sent) for r in hub.log if r.server == "cdn"] == [(None, False, served.size)]
    assert seen[0] == (0, served.size) and seen[-1] == (served.size, served.size)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_second_pull_of_an_installed_model_downloads_nothing(
    hub: HubStandIn, model: Path, tmp_path: Path
) -> None:
    served = hub.add(REPO, FILE, model)
    spec = PullSpec(REPO, FILE, entry=entry(served.sha256))
    download.pull(spec, tmp_path / "models")
    hub.log.clear()
    again = download.pull(spec, tmp_path / "models")
    assert again.already_installed and again.sha256 == served.sha256
    assert hub.log == []


def test_repo_file_pull_is_checked_against_the_hubs_lfs_sha256(
    hub: HubStandIn, model: Path, tmp_path: Path
) -> None:
    hub.add(REPO, FILE, model)
    result = download.pull(download.parse_spec(f"{REPO}/{FILE}", []), tmp_path / "models")
    assert result.sha256 == sha(model)


# -- verification ----------------------------------------------------------------------


def test_checksum_mismatch_deletes_the_download_and_keeps_the_installed_file(
    hub: HubStandIn, model: Path, tmp_path: Path
) -> None:
    hub.add(REPO, FILE, model)
    dest = tmp_path / "models"
    dest.mkdir()
    installed = make_gguf(dest / FILE, 1 * MB, seed=7)
    before = installed.read_bytes()
    with pytest.raises(PullError, match="does not match the registry's 0000.*the download was deleted") as info:
        download.pull(PullSpec(REPO, FILE, entry=entry("0" * 64)), dest)
    assert info.value.kind == "checksum"
    assert installed.read_bytes() == before
    assert left_in(dest) == [FILE]
    assert download.partial_files(dest, FILE) == []


def test_hub_serving_other_bytes_than_its_sha256_is_rejected(
    hub: HubStandIn, model: Path, tmp_path: Path
) -> None:
    hub.add(REPO, FILE, model, sha256="ab" * 32)
    with pytest.raises(PullError, match="does not match the Hub's abab") as info:
        download.pull(download.parse_spec(f"{REPO}/{FILE}", []), tmp_path / "models")
    assert info.value.kind == "checksum"
    assert left_in(tmp_path / "models") == []


def test_a_file_that_is_not_gguf_is_deleted(hub: HubStandIn, tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_bytes(b"<html>login</html>" * 1000)
    hub.add(REPO, FILE, page)
    with pytest.raises(PullError, match="not a usable GGUF.*deleted") as info:
        download.pull(download.parse_spec(f"{REPO}/{FILE}", []), tmp_path / "models")
    assert info.value.kind == "not_gguf"
    assert left_in(tmp_path / "models") == []


# -- errors: nothing installed is lost ------------------------------------------------


@pytest.mark.parametrize(
    ("repo", "filename", "kind", "match"),
    [
        pytest.param(REPO, "missing.gguf", "not_found", r"missing.gguf \(revision main\) not found .*\(404\)", id="404-file"),
        pytest.param("nobody/none-GGUF", FILE, "unauthorized", r"repository nobody/none-GGUF .* not found \(401\).*HF_TOKEN", id="401-repo"),
    ],
)
def test_hub_errors(
    hub: HubStandIn, model: Path, tmp_path: Path, repo: str, filename: str, kind: str, match: str
) -> None:
    hub.add(REPO, FILE, model)
    with pytest.raises(PullError, match=match) as info:
        download.pull(PullSpec(repo, filename), tmp_path / "models")
    assert info.value.kind == kind
    assert not (tmp_path / "models").exists() or left_in(tmp_path / "models") == []


def test_gated_repo_needs_the_token(
    hub: HubStandIn, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = hub.add(REPO, FILE, model)
    hub.gated[REPO] = "hf_right"
    spec = PullSpec(REPO, FILE, entry=entry(served.sha256))
    with pytest.raises(PullError, match=r"is gated \(401\).*set HF_TOKEN") as info:
        download.pull(spec, tmp_path / "models")
    assert info.value.kind == "unauthorized"
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(PullError, match="is gated"):
        download.pull(spec, tmp_path / "models")
    monkeypatch.setenv("HF_TOKEN", "hf_right")
    assert download.pull(spec, tmp_path / "models").sha256 == served.sha256


def test_no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with HubStandIn() as closed:
        address = closed.endpoint
    monkeypatch.setenv("HF_ENDPOINT", address)  # nothing listens there any more
    with pytest.raises(PullError, match=f"cannot reach {address}") as info:
        download.pull(PullSpec(REPO, FILE), tmp_path / "models")
    assert info.value.kind == "no_network"


def test_not_enough_space_is_refused_before_any_byte(hub: HubStandIn, model: Path, tmp_path: Path) -> None:
    served = hub.add(REPO, FILE, model)
    with pytest.raises(PullError, match=r"not enough disk space .* needs 24\.0 MB more .* 5\.0 MB is free") as info:
        download.pull(PullSpec(REPO, FILE, entry=entry(served.sha256)), tmp_path / "models",
                      free=lambda _: 5 * MB)
    assert info.value.kind == "no_space"
    assert cdn_gets(hub) == []


@pytest.fixture
def small_disk_path(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "small") as mount:
        yield mount


def test_disk_filling_up_during_the_download(hub: HubStandIn, model: Path, small_disk_path: Path) -> None:
    served = hub.add(REPO, FILE, model)
    with pytest.raises(PullError, match=r"the disk filled up .* kept .* free some space and pull again") as info:
        # The space check is told there is room: the disk fills up while downloading.
        download.pull(PullSpec(REPO, FILE, entry=entry(served.sha256)), small_disk_path, free=lambda _: 10**12)
    assert info.value.kind == "no_space"
    assert not (small_disk_path / FILE).exists()


# -- resume -----------------------------------------------------------------------------


def test_dropped_connection_resumes_with_a_range_request(hub: HubStandIn, model: Path, tmp_path: Path) -> None:
    served = hub.add(REPO, FILE, model)
    hub.drop_after = 15 * MB
    result = download.pull(PullSpec(REPO, FILE, entry=entry(served.sha256)), tmp_path / "models")
    assert sha(result.path) == served.sha256
    chunk = 10 * 1024 * 1024  # huggingface_hub writes whole 10 MiB chunks
    assert cdn_gets(hub) == [(None, 15 * MB), (f"bytes={chunk}-", served.size - chunk)]


def test_cancelled_pull_keeps_its_bytes_and_the_next_pull_resumes(
    hub: HubStandIn, model: Path, tmp_path: Path
) -> None:
    served = hub.add(REPO, FILE, model)
    spec = PullSpec(REPO, FILE, entry=entry(served.sha256))
    dest = tmp_path / "models"
    cancel = threading.Event()

    def progress(done: int, total: int | None) -> None:
        if done > 0:
            cancel.set()

    with pytest.raises(PullCancelled):
        download.pull(spec, dest, on_progress=progress, cancel=cancel)
    [partial] = download.partial_files(dest, FILE)
    kept = partial.stat().st_size
    assert 0 < kept < served.size and not (dest / FILE).exists()
    assert missing_download("tiny-coder", [spec.entry]) is not None  # type: ignore[list-item]
    hub.log.clear()
    result = download.pull(spec, dest)
    assert (result.resumed_from, sha(result.path)) == (kept, served.sha256)
    assert cdn_gets(hub) == [(f"bytes={kept}-", served.size - kept)]
    assert download.partial_files(dest, FILE) == []


def test_partial_of_an_older_version_is_discarded(hub: HubStandIn, model: Path, tmp_path: Path) -> None:
    served = hub.add(REPO, FILE, model)
    dest = tmp_path / "models"
    stale = download.partial_path(dest, FILE, "f" * 64)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old bytes")
    download.pull(PullSpec(REPO, FILE, entry=entry(served.sha256)), dest)
    assert not stale.exists() and cdn_gets(hub) == [(None, served.size)]


def test_a_second_pull_of_the_same_file_is_refused_while_one_runs(
    hub: HubStandIn, model: Path, tmp_path: Path
) -> None:
    from filelock import FileLock

    served = hub.add(REPO, FILE, model)
    dest = tmp_path / "models"
    (dest / ".partial").mkdir(parents=True)
    with FileLock(str(dest / ".partial" / f"{FILE}.lock")), pytest.raises(PullError, match="already being downloaded"):
        download.pull(PullSpec(REPO, FILE, entry=entry(served.sha256)), dest)


# -- remove ---------------------------------------------------------------------------------


def test_remove_deletes_the_model_and_its_partials(tmp_path: Path) -> None:
    dest = tmp_path / "models"
    dest.mkdir()
    installed = make_gguf(dest / FILE, 1000)
    partial = download.partial_path(dest, FILE, "a" * 64)
    partial.parent.mkdir()
    partial.write_bytes(b"x")
    removed = download.remove("tiny-coder", dest, [entry("0" * 64)])
    assert sorted(removed) == sorted([installed, partial]) and left_in(dest) == []


@pytest.mark.parametrize(
    ("name", "match"),
    [
        pytest.param("gemma3-270m", "is embedded", id="embedded"),
        pytest.param("tiny-coder", "is not installed", id="not-installed"),
        pytest.param("notes.txt", "unknown model", id="not-a-model"),
    ],
)
def test_remove_refuses(tmp_path: Path, name: str, match: str) -> None:
    entries = [*load_registry(), entry("0" * 64)]
    with pytest.raises(PullError, match=match):
        download.remove(name, tmp_path, entries)


# -- small pure pieces ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (999, "999 B"), (1500, "1.5 KB"), (253_113_024, "253.1 MB"), (1_650_000_000, "1.6 GB"),
     (8_100_000_000, "8.1 GB")],
)  # fmt: skip
def test_format_bytes(count: int, text: str) -> None:
    assert download.format_bytes(count) == text


def test_estimated_sizes_follow_parameters_and_quantisation() -> None:
    by_name = {e.name: e for e in load_registry()}
    assert by_name["gemma3-270m"].approx_size_bytes == 253_113_024  # exact where known
    assert by_name["qwen2.5-coder-1.5b"].approx_size_bytes == int(1.54e9 * 8.5 / 8)
    assert entry("0" * 64).approx_size_bytes is None


GB = 1_000_000_000


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        pytest.param(Machine(24 * GB, 2, False), "qwen2.5-coder-1.5b", id="cpu-24gb"),
        pytest.param(Machine(2 * GB, 4, False), "qwen2.5-coder-0.5b", id="cpu-2gb"),
        pytest.param(Machine(32 * GB, 8, True), "qwen2.5-coder-7b", id="gpu-32gb"),
        pytest.param(Machine(16 * GB, 8, True), "qwen2.5-coder-1.5b", id="gpu-16gb-7b-too-big"),
    ],
)
def test_recommendation(machine: Machine, expected: str) -> None:
    entries = load_registry()
    chosen = recommend(entries, machine)
    assert chosen is not None and chosen.name == expected
    picked = next(e for e in entries if e.name == chosen.name)
    limit = machine.ram_bytes / 2 if machine.gpu_offload else min(machine.ram_bytes / 2, CPU_MAX_MODEL_BYTES)
    assert (picked.approx_size_bytes or 0) <= limit
    assert f"{picked.humaneval:.1f} %" in chosen.reason


def test_recommendation_falls_back_to_the_embedded_model() -> None:
    entries = load_registry()
    chosen = recommend(entries, Machine(400 * 10**6, 1, False))
    assert chosen is not None and chosen.name == DEFAULT_MODEL and "no code model fits" in chosen.reason
    assert recommend([e for e in entries if not e.embedded], Machine(400 * 10**6, 1, False)) is None


def test_catalog_marks_installed_and_recommended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GHOSTPILOT_MODELS_DIR", str(tmp_path))
    entries = [*load_registry(), entry("0" * 64)]
    make_gguf(tmp_path / FILE, 1000)
    rows = {row.entry.name: row.to_json() for row in catalog(entries, recommend(entries, Machine(24 * GB, 2, False)))}
    assert rows["tiny-coder"]["installed"] and rows["tiny-coder"]["sizeExact"]
    assert rows["tiny-coder"]["sizeBytes"] == (tmp_path / FILE).stat().st_size
    assert rows["qwen2.5-coder-1.5b"]["recommended"] and not rows["qwen2.5-coder-1.5b"]["installed"]
    assert rows["qwen2.5-coder-1.5b"]["humaneval"] == 43.9 and not rows["qwen2.5-coder-1.5b"]["sizeExact"]
    assert rows["deepseek-coder-1.3b"]["needsLicenseAcceptance"]
    assert not rows["qwen2.5-coder-1.5b"]["needsLicenseAcceptance"]
    assert rows["gemma3-270m"]["humaneval"] is None and not rows["gemma3-270m"]["downloadable"]
    assert [name for name, row in rows.items() if row["recommended"]] == ["qwen2.5-coder-1.5b"]
