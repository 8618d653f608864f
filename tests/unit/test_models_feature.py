"""The editor's download offer and progress texts (lsp_server/features/models.py), as pure
functions; the flow itself runs in tests/e2e/test_models_editor.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp_server.backends.registry import load_registry
from lsp_server.features.models import accept_title, offer_text, progress_text

ENTRIES = {entry.name: entry for entry in load_registry()}


@pytest.mark.parametrize(
    ("name", "size", "starts", "licence", "button"),
    [
        pytest.param("qwen2.5-coder-1.5b", 1_646_570_880, "Download Qwen2.5-Coder 1.5B (1.6 GB)? The model setting "
                     "names qwen2.5-coder-1.5b, which is not installed yet.", False, "Download", id="apache"),
        pytest.param("deepseek-coder-1.3b", None, "Download DeepSeek-Coder 1.3B (size unknown)?", True,
                     "Accept licence and download", id="restricted"),
        pytest.param("codellama-7b", 7_161_089_728, "Download Code Llama 7B (7.2 GB)?", True,
                     "Accept licence and download", id="llama2"),
    ],
)  # fmt: skip
def test_offer(name: str, size: int | None, starts: str, licence: bool, button: str) -> None:
    entry = ENTRIES[name]
    text = offer_text(entry, size)
    assert text.startswith(starts)
    assert ("licensed under the " + entry.license in text) is licence
    if licence:
        assert f"({entry.license_url})" in text and text.endswith("downloading it accepts that licence.")
    assert accept_title(entry) == button


@pytest.mark.parametrize(
    ("done", "total", "start", "elapsed", "text", "percentage"),
    [
        pytest.param(512_000_000, 1_600_000_000, 0, 10.0, "512.0 MB of 1.6 GB, 51.2 MB/s, 0:21 left", 32, id="fresh"),
        pytest.param(900_000_000, 1_000_000_000, 800_000_000, 10.0, "900.0 MB of 1.0 GB, 10.0 MB/s, 0:10 left", 90,
                     id="resumed-speed-counts-new-bytes-only"),
        pytest.param(0, 1_000_000_000, 0, 0.0, "0 B of 1.0 GB, 0 B/s", 0, id="start"),
        pytest.param(5_000_000, None, 0, 1.0, "5.0 MB, 5.0 MB/s", None, id="size-unknown"),
        pytest.param(1_000_000, 10_000_000_000, 0, 1.0, "1.0 MB of 10.0 GB, 1.0 MB/s, 2:46:39 left", 0,
                     id="hours"),
    ],
)  # fmt: skip
def test_progress_text(done: int, total: int | None, start: int, elapsed: float, text: str,
                       percentage: int | None) -> None:  # fmt: skip
    assert progress_text(done, total, start, elapsed) == (text, percentage)


@pytest.mark.parametrize(
    ("raw", "popup"),
    [
        pytest.param({"model": "qwen2.5-coder-1.5b"}, False, id="offered-download-is-the-one-message"),
        pytest.param({"model": "qwen2.5-coder-1.5b", "backend": "llama-server"}, True, id="remote-no-offer"),
        pytest.param({"model": "/nowhere/model.gguf"}, True, id="missing-path"),
    ],
)
def test_a_model_to_download_gets_one_message_not_two(
    raw: dict[str, str], popup: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lsp_server.config import merge
    from lsp_server.server import create_server

    monkeypatch.setenv("GHOSTPILOT_MODELS_DIR", str(tmp_path))  # nothing installed
    server = create_server()
    server.settings, problems = merge(server.settings, raw)
    assert problems == []
    shown: list[str] = []
    logged: list[str] = []
    monkeypatch.setattr(server, "report_error", lambda key, message, level=None: shown.append(message))
    monkeypatch.setattr(server, "log_message", lambda message, level=None: logged.append(message))
    server._on_model_state("error", "model not installed")
    assert bool(shown) is popup
    assert shown or logged == ["model not installed"]
    assert (server.missing_model() is not None) is (not popup)
