"""What real editors send that the LSP text does not spell out (issue 10, item 8)."""

from __future__ import annotations

from typing import Any

import pytest

from lsp_server.config import Settings, merge
from lsp_server.parsing.document import DocumentStore

BASE = Settings(n_threads=2, max_tokens=40)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param([], id="neovim-empty-lua-table"),
        pytest.param((), id="empty-tuple"),
        pytest.param({}, id="empty-object"),
        pytest.param({"ghostpilot": []}, id="empty-table-under-section"),
    ],
)
def test_empty_settings_are_no_settings(raw: Any) -> None:
    settings, problems = merge(BASE, raw)
    assert problems == []
    assert settings == BASE


def test_a_list_with_items_is_still_an_error() -> None:
    settings, problems = merge(BASE, [{"maxTokens": 3}])
    assert problems == ["settings must be an object, got list"]
    assert settings == BASE


@pytest.mark.parametrize(
    ("uri", "language_id", "parsed"),
    [
        pytest.param("file:///src/app.py", "", True, id="no-filetype"),
        pytest.param("file:///src/stubs.pyi", "", True, id="stub"),
        pytest.param("file:///src/README", "", False, id="no-extension"),
    ],
)
def test_buffer_without_language_id_uses_the_extension(uri: str, language_id: str, parsed: bool) -> None:
    document = DocumentStore().open(uri, "def f():\n    return 1\n", language_id=language_id)
    assert (document.language_id == "python") == parsed
    assert (document.tree is not None) == parsed
