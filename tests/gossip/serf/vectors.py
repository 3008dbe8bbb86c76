"""Access to the captured serf 0.9.4 traffic in tests/gossip/vectors for the Serf tests."""

from __future__ import annotations

import functools
import json
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent.parent / "vectors"

#: attribute -> Go field name where snake_case -> CamelCase does not give it
_GO_NAMES = {
    "ltime": "LTime", "id": "ID", "from_": "From", "cc": "CC", "ip": "IP",
    "event_ltime": "EventLTime", "query_ltime": "QueryLTime", "status_ltimes": "StatusLTimes",
}


@functools.cache
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / "manifest.json").read_text())
    return data


def files(transport: str | None = None) -> list[dict[str, Any]]:
    return [f for f in manifest()["files"]
            if f["kind"] == "gossip" and (transport is None or f["transport"] == transport)]


def serf_messages() -> list[tuple[str, dict[str, Any]]]:
    """(file, manifest serf entry) for every Serf user message in the UDP captures."""
    return [(f["file"], msg["serf"]) for f in files("udp")
            for msg in f["messages"] if "serf" in msg]


def push_pulls() -> list[tuple[str, dict[str, Any]]]:
    """(file, manifest pushPull message) for every TCP push/pull."""
    return [(f["file"], msg) for f in files("tcp")
            for msg in f["messages"] if msg.get("type") == "pushPull"]


def go_name(attr: str) -> str:
    return _GO_NAMES.get(attr) or "".join(part.capitalize() for part in attr.split("_"))


def go_view(value: Any) -> Any:
    """A decoded object in the manifest's notation: Go field names, bytes as "hex:..."."""
    if is_dataclass(value) and not isinstance(value, type):
        return {go_name(f.name): go_view(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, bytes):
        return "hex:" + value.hex()
    if isinstance(value, list):
        return [go_view(item) for item in value]
    if isinstance(value, dict):
        return {key: go_view(item) for key, item in value.items()}
    return value
