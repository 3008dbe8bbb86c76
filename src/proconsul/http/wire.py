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
    "wire_c",
    "wire_py",
]

wire_c: ModuleType | None

if TYPE_CHECKING or NO_EXTENSIONS:
    from proconsul.http.wire_py import (
        BODY,
        CONTINUE,
        HEAD,
        IDLE,
        LAST_CHUNK,
        RequestReader,
        encode_chunk,
        encode_response,
        encode_stream_head,
        http_date,
        parse_query,
        split_target,
        status_text,
    )

    wire_c = None
    IMPLEMENTATION = "py"
else:
    try:
        from proconsul._speedups import http_wire as wire_c
        from proconsul._speedups.http_wire import (
            BODY,
            CONTINUE,
            HEAD,
            IDLE,
            LAST_CHUNK,
            RequestReader,
            encode_chunk,
            encode_response,
            encode_stream_head,
            http_date,
            parse_query,
            split_target,
            status_text,
        )

        IMPLEMENTATION = "c"
    except ImportError:
        from proconsul.http.wire_py import (
            BODY,
            CONTINUE,
            HEAD,
            IDLE,
            LAST_CHUNK,
            RequestReader,
            encode_chunk,
            encode_response,
            encode_stream_head,
            http_date,
            parse_query,
            split_target,
            status_text,
        )

        wire_c = None
        IMPLEMENTATION = "py"
