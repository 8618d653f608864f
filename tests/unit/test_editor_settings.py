"""Every server setting can be set from VS Code: declared in the extension's package.json
(with the server's default) and forwarded by src/settings.ts."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lsp_server.config import INTERNAL_SETTINGS, Settings, to_camel

EXTENSION = Path(__file__).resolve().parents[2] / "vscode-extension"


def test_every_server_setting_is_declared_and_forwarded_by_the_extension() -> None:
    keys = set(to_camel(Settings())) - INTERNAL_SETTINGS
    declared = json.loads((EXTENSION / "package.json").read_text())["contributes"]["configuration"]
    properties: dict[str, dict[str, object]] = {}
    for section in declared if isinstance(declared, list) else [declared]:
        properties.update(section.get("properties", {}))
    names = {name.split(".", 1)[1].split(".", 1)[0] for name in properties}
    forwarded = set(re.findall(r"^\s*'(\w+)',", (EXTENSION / "src" / "settings.ts").read_text(), re.M))
    # Machine-level settings the extension decides itself rather than forwarding.
    local_only = {"nThreads", "model"} & keys - forwarded
    assert keys - names - local_only == set(), "settings missing from package.json"
    assert keys - forwarded - local_only == set(), "settings not forwarded by src/settings.ts"
    defaults = to_camel(Settings())
    for key in ("kvCacheMb", "testedCandidates", "maxFileSizeKb"):
        assert properties[f"ghostpilot.{key}"]["default"] == defaults[key]
