"""Selector for the per-request HTTP path: the compiled twin when built, the pure one otherwise.

The rest of the package imports request reading and response encoding from here. Type checkers
always see the pure twin (both have the same names and signatures); PROCONSUL_NO_EXTENSIONS=1
forces the pure twin at run time so one install can exercise both. `wire_py` and `wire_c` name the
two modules for tests and benchmarks (`wire_c` is None when nothing was compiled), and
`IMPLEMENTATION` says which one is live.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from proconsul._compat import NO_EXTENSIONS
from proconsul.http import wire_py

__all__ = [
    "BODY",
    "CONTINUE",
    "HEAD",
    "IDLE",
    "IMPLEMENTATION",
    "LAST_CHUNK",
    "RequestReader",
    "encode_chunk",
    "encode_response",
    "encode_stream_head",
    "http_date",
    "parse_query",
    "split_target",
    "status_text",
    "widen_indent",
    "wire_c",
    "wire_py",
]

wire_c: ModuleType | None = None
if not (TYPE_CHECKING or NO_EXTENSIONS):
    try:
        from proconsul._speedups import http_wire as wire_c
    except ImportError:
        wire_c = None

if TYPE_CHECKING:
    _impl = wire_py
else:
    _impl = wire_py if wire_c is None else wire_c
IMPLEMENTATION = "py" if _impl is wire_py else "c"

BODY = _impl.BODY
CONTINUE = _impl.CONTINUE
HEAD = _impl.HEAD
IDLE = _impl.IDLE
LAST_CHUNK = _impl.LAST_CHUNK
RequestReader = _impl.RequestReader
encode_chunk = _impl.encode_chunk
encode_response = _impl.encode_response
encode_stream_head = _impl.encode_stream_head
http_date = _impl.http_date
parse_query = _impl.parse_query
split_target = _impl.split_target
status_text = _impl.status_text
widen_indent = _impl.widen_indent
