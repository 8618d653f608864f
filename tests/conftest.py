"""Shared test helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GHOSTPILOT_SHARED", ROOT.parent / "shared"))
VOCAB_DIR = SHARED / "data" / "vocab"
SERVER_COMMAND = [sys.executable, "-m", "lsp_server", "serve"]


@pytest.fixture(scope="session")
def embedded_model_path() -> Path:
    from lsp_server.backends.registry import embedded_model_path

    return embedded_model_path()


def require_vocab(path: Path) -> Path:
    """A vocab-only GGUF from shared/data/vocab: skip when absent, but fail under CI=true,
    where shared/ is always beside the clone and a skip would hide the FIM tests."""
    if not path.exists():
        message = f"vocab GGUF not available: {path} (set GHOSTPILOT_SHARED to the shared/ folder)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
