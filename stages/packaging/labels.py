"""Params keyed by the members of a packager's `models` fan-in (`names: {engine@openvino-fp32: digits}`)."""

from __future__ import annotations

from typing import Any, Mapping


def unknown_label(
    params: Any, fields: tuple[str, ...], members: Mapping[str, list[str]]
) -> tuple[tuple[str, ...], str] | None:
    """The first entry of `fields` naming no member the recipe connects to `models` (`Stage.members_problem`)."""
    connected = members.get("models", [])
    for field in fields:
        for label in getattr(params, field):
            if label not in connected:
                return (field, label), f"{label!r} is not connected to models (members: {', '.join(connected)})"
    return None


def present(entries: Mapping[str, Any], members: Mapping[str, Any]) -> dict[str, Any]:
    """The entries for the members this run packages (the others were left out by --skip-unavailable: the recipe
    was checked to name only connected members when it loaded)."""
    return {label: value for label, value in entries.items() if label in members}
