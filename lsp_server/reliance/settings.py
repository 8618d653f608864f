"""The ``ghostpilot.reliance.*`` settings: a typed dataclass and its one parser.

``lsp_server.config.merge`` calls :func:`parse` for the ``reliance`` key, so
``Settings.reliance`` is a :class:`RelianceSettings` and nothing parses it again. Keys
come in camelCase (``minShare``) or snake_case. A bad value gives one problem string
and its default, like the other settings; the rest of the object still applies.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

Severity = Literal["error", "warning", "information", "hint"]
StateLocation = Literal["xdg", "workspace"]
SEVERITIES: tuple[str, ...] = get_args(Severity)
STATE_LOCATIONS: tuple[str, ...] = get_args(StateLocation)


@dataclass(frozen=True)
class RelianceSettings:
    enabled: bool = True
    # "xdg": $XDG_STATE_HOME/ghostpilot/reliance; "workspace": .ghostpilot/ in the workspace.
    state_location: StateLocation = "xdg"
    # A function is flagged when at least this share of its characters is AI-written.
    min_share: float = 0.2
    severity: Severity = "information"
    # Severity of "AI-written code fails its tests".
    failing_severity: Severity = "warning"
    test_timeout_s: float = 120.0
    debounce_ms: int = 500


_CHOICES: dict[str, tuple[str, ...]] = {
    "state_location": STATE_LOCATIONS,
    "severity": SEVERITIES,
    "failing_severity": SEVERITIES,
}
_RANGES: dict[str, tuple[float, float]] = {
    "min_share": (0.0, 1.0),
    "test_timeout_s": (1.0, 3600.0),
    "debounce_ms": (0, 10000),
}
# Editor spelling -> field; every field's own name is accepted too.
_ALIASES = {
    "enable": "enabled",
    "stateLocation": "state_location",
    "minShare": "min_share",
    "failingSeverity": "failing_severity",
    "testTimeoutS": "test_timeout_s",
    "testTimeout": "test_timeout_s",
    "debounceMs": "debounce_ms",
}
_FIELDS = {f.name for f in dataclasses.fields(RelianceSettings)}


def parse(raw: Any) -> tuple[RelianceSettings, list[str]]:
    """Reliance settings from ``raw`` (an editor's object), and one problem per bad key."""
    defaults = RelianceSettings()
    if raw is None:
        return defaults, []
    if isinstance(raw, RelianceSettings):
        return raw, []
    if not isinstance(raw, Mapping):
        return defaults, [f"reliance: expected an object, got {raw!r}; using the defaults"]
    changes: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        name = _ALIASES.get(str(key), str(key))
        if name not in _FIELDS:
            problems.append(f"reliance: unknown setting {key!r}")
            continue
        if value is None:
            continue
        default = getattr(defaults, name)
        try:
            changes[name] = _coerce(name, value, default)
        except ValueError as error:
            problems.append(f"reliance.{key}: {error}; using the default {default!r}")
    return dataclasses.replace(defaults, **changes), problems


def _coerce(name: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default``, or ValueError saying what is wrong."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"expected a number, got {value!r}")
        if isinstance(default, int) and value != int(value):
            raise ValueError(f"expected an integer, got {value!r}")
        low, high = _RANGES.get(name, (-math.inf, math.inf))
        if not low <= value <= high:
            raise ValueError(f"{value!r} is outside {low:g}..{high:g}")
        return type(default)(value)
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ValueError(f"expected one of {', '.join(_CHOICES[name])}, got {value!r}")
    return value


def to_camel(settings: RelianceSettings) -> dict[str, Any]:
    """The settings as an editor writes them (``parse`` reads this back unchanged)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        first, *rest = f.name.split("_")
        out[first + "".join(part.title() for part in rest)] = getattr(settings, f.name)
    return out
