"""The ``ghostpilot.reliance.*`` settings, read from the raw mapping in ``Settings.reliance``.

A bad value gives one problem string and its default, like the other settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SEVERITIES = ("error", "warning", "information", "hint")


@dataclass(frozen=True)
class RelianceSettings:
    enabled: bool = True
    # "xdg": $XDG_STATE_HOME/ghostpilot/reliance; "workspace": .ghostpilot/ in the workspace.
    state_location: str = "xdg"
    # A function is flagged when at least this share of its characters is AI-written.
    min_share: float = 0.2
    severity: str = "information"
    # Severity of "AI-written code fails its tests".
    failing_severity: str = "warning"
    test_timeout_s: float = 120.0
    debounce_ms: int = 500


_CHOICES = {
    "state_location": ("xdg", "workspace"),
    "severity": SEVERITIES,
    "failing_severity": SEVERITIES,
}
_RANGES = {"min_share": (0.0, 1.0), "test_timeout_s": (1.0, 3600.0), "debounce_ms": (0, 10000)}
_ALIASES = {
    "enabled": "enabled",
    "enable": "enabled",
    "stateLocation": "state_location",
    "minShare": "min_share",
    "severity": "severity",
    "failingSeverity": "failing_severity",
    "testTimeoutS": "test_timeout_s",
    "testTimeout": "test_timeout_s",
    "debounceMs": "debounce_ms",
}


def parse(raw: Any) -> tuple[RelianceSettings, list[str]]:
    """Reliance settings from ``raw`` (camelCase or snake_case keys), and problems."""
    defaults = RelianceSettings()
    if raw is None:
        return defaults, []
    if not isinstance(raw, Mapping):
        return defaults, [f"reliance: expected an object, got {raw!r}"]
    fields = {f.name for f in dataclasses.fields(RelianceSettings)}
    changes: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        name = _ALIASES.get(str(key), str(key))
        if name not in fields:
            problems.append(f"reliance: unknown setting {key!r}")
            continue
        if value is None:
            continue
        default = getattr(defaults, name)
        error = _check(name, value, default)
        if error:
            problems.append(f"reliance.{key}: {error}; using the default {default!r}")
            continue
        changes[name] = type(default)(value) if not isinstance(default, bool) else value
    return dataclasses.replace(defaults, **changes), problems


def _check(name: str, value: Any, default: Any) -> str | None:
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {value!r}"
        if isinstance(default, int) and value != int(value):
            return f"expected an integer, got {value!r}"
        low, high = _RANGES.get(name, (float("-inf"), float("inf")))
        if not low <= value <= high:
            return f"{value!r} is outside {low:g}..{high:g}"
        return None
    if name in _CHOICES and value not in _CHOICES[name]:
        return f"expected one of {', '.join(_CHOICES[name])}, got {value!r}"
    return None
