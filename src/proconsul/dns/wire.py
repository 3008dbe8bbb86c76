"""Selector for the DNS packet path: the compiled twin when built, the pure one otherwise.

Parsing a query, the answer-plan cache and rendering answers with compression and truncation
are the per-packet work; the rest of `dns/` imports them from here. Type checkers see the pure
twin (both have the same names and signatures); PROCONSUL_NO_EXTENSIONS=1 forces the pure twin.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from proconsul._compat import NO_EXTENSIONS
from proconsul.dns import wire_py
from proconsul.dns.wire_py import (
    CLASS_ANY,
    CLASS_IN,
    MAX_TCP_SIZE,
    MAX_UDP_ANSWERS,
    MAX_UDP_PLAIN,
    RCODE_FORMERR,
    RCODE_NOERROR,
    RCODE_NOTIMP,
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_AXFR,
    TYPE_CNAME,
    TYPE_IXFR,
    TYPE_NS,
    TYPE_OPT,
    TYPE_PTR,
    TYPE_SOA,
    TYPE_SRV,
    TYPE_TXT,
)

__all__ = [
    "CLASS_ANY", "CLASS_IN", "IMPLEMENTATION", "MAX_TCP_SIZE", "MAX_UDP_ANSWERS",
    "MAX_UDP_PLAIN", "RCODE_FORMERR", "RCODE_NOERROR", "RCODE_NOTIMP", "RCODE_NXDOMAIN",
    "RCODE_REFUSED", "RCODE_SERVFAIL", "TYPE_A", "TYPE_AAAA", "TYPE_ANY", "TYPE_AXFR",
    "TYPE_CNAME", "TYPE_IXFR", "TYPE_NS", "TYPE_OPT", "TYPE_PTR", "TYPE_SOA", "TYPE_SRV",
    "TYPE_TXT", "Name", "Plan", "Query", "Record", "RenderOptions", "Responder", "Rng",
    "drain_udp", "error_response", "formerr_response", "parse_query", "render", "wire_c",
    "wire_py",
]

wire_c: ModuleType | None = None
if not (TYPE_CHECKING or NO_EXTENSIONS):
    try:
        from proconsul._speedups import dns_wire as wire_c
    except ImportError:
        wire_c = None

if TYPE_CHECKING:
    _impl = wire_py
else:
    _impl = wire_py if wire_c is None else wire_c
IMPLEMENTATION = "py" if _impl is wire_py else "c"

Name = _impl.Name
Record = _impl.Record
Plan = _impl.Plan
Query = _impl.Query
Rng = _impl.Rng
RenderOptions = _impl.RenderOptions
Responder = _impl.Responder
parse_query = _impl.parse_query
render = _impl.render
error_response = _impl.error_response
formerr_response = _impl.formerr_response
drain_udp = _impl.drain_udp
