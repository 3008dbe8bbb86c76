"""JSON bodies as Consul writes them: compact, or indented with four spaces and a trailing
newline when pretty (`?pretty`, and always in -dev)."""

from __future__ import annotations

from typing import Any

import orjson

from proconsul.http.wire import widen_indent


def dumps(obj: Any, pretty: bool = False, newline: bool = False) -> bytes:
    """`newline` adds the trailing newline Consul writes only when `?pretty` was asked for
    (dev mode indents without it)."""
    if not pretty:
        return orjson.dumps(obj)
    # orjson indents by two; doubling gives Go's MarshalIndent(v, "", "    ").
    out = widen_indent(orjson.dumps(obj, option=orjson.OPT_INDENT_2))
    return out + b"\n" if newline else out


def loads(data: bytes) -> Any:
    return orjson.loads(data)


JSONDecodeError = orjson.JSONDecodeError


def fold_keys(obj: Any) -> Any:
    """Lower-case every object key and drop underscores, so PascalCase, camelCase and
    snake_case request bodies all match the same field (Go's decoder is case-insensitive and
    Consul accepts snake_case aliases)."""
    if isinstance(obj, dict):
        return {k.replace("_", "").lower(): fold_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [fold_keys(v) for v in obj]
    return obj
