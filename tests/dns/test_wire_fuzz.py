"""Responder.lookup on hostile input, for both twins: it must never raise.

A DNS server answers whatever arrives on port 53; one exception on the packet path would stop a
drain loop for everyone. So random bytes and damaged versions of real queries (made by
dnspython) go through `lookup`, with and without a cached plan, and every non-empty answer must
at least be a response header with the request's ID.
"""

from __future__ import annotations

import struct
from types import ModuleType
from typing import Any

import dns.edns
import dns.message
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import load_twin, twin_params

COMPILED = "proconsul._speedups.dns_wire"
PURE = "proconsul.dns.wire_py"
NAMES = ["web.service.consul.", "WEB.Service.consul.", "db.node.dc1.consul.", "consul.", "."]


def responder(w: ModuleType, seeded: list[bytes]) -> Any:
    """A Responder with a plan cached for each seeded query, so mutations can also hit."""
    r = w.Responder(w.RenderOptions(enable_truncate=True), seed=7)
    owner = w.Name("web.service.consul")
    target = w.Name("n1.node.dc1.consul")
    plan = w.Plan(0, [w.Record(owner, w.TYPE_A, 30, b"\x0a\x00\x00\x01"),
                      w.Record(owner, w.TYPE_SRV, 30, (1, 1, 80, target))],
                  extras=[w.Record(target, w.TYPE_A, 30, b"\x0a\x00\x00\x02")],
                  extra_of=[(), (0,)], shuffle=True)
    for data in seeded:
        query = w.parse_query(data)
        r.store(query, plan)
    return r


@st.composite
def valid_queries(draw: st.DrawFn) -> bytes:
    kwargs: dict[str, Any] = {}
    if draw(st.booleans()):
        kwargs.update(use_edns=0, payload=draw(st.integers(0, 4096)))
        if draw(st.booleans()):
            kwargs["options"] = [dns.edns.ECSOption("192.0.2.0", 24)]
    message = dns.message.make_query(draw(st.sampled_from(NAMES)),
                                     draw(st.sampled_from(["A", "SRV", "AAAA"])), **kwargs)
    message.id = draw(st.integers(0, 0xFFFF))
    return message.to_wire()


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    """Bit flips, truncations, splices and inflated section counts of a valid query."""
    data = bytearray(draw(valid_queries()))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "truncate", "splice", "inflate"]))
        if how == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif how == "splice":
            at = draw(st.integers(0, len(data)))
            end = draw(st.integers(at, len(data)))
            data[at:end] = draw(st.binary(max_size=16))
        elif how == "inflate" and len(data) >= 12:
            field = draw(st.integers(2, 5))
            struct.pack_into("!H", data, 2 * field, draw(st.integers(0, 0xFFFF)))
    return bytes(data)


def check(w: ModuleType, r: Any, data: bytes, tcp: bool) -> None:
    result = r.lookup(data, tcp)
    assert isinstance(result, bytes | w.Query)
    if isinstance(result, bytes) and result:
        assert len(result) >= 12
        qid, flags = struct.unpack_from("!HH", result)
        assert flags & 0x8000, "QR must be set"
        assert qid == struct.unpack_from("!H", data)[0]


@pytest.mark.parametrize("name", twin_params(COMPILED, PURE))
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), tcp=st.booleans())
def test_random_bytes(request: pytest.FixtureRequest, name: str, data: bytes, tcp: bool) -> None:
    w = load_twin(request, name)
    check(w, responder(w, []), data, tcp)


@pytest.mark.parametrize("name", twin_params(COMPILED, PURE))
@settings(max_examples=300, deadline=None)
@given(data=mutations(), tcp=st.booleans())
def test_mutated_queries(request: pytest.FixtureRequest, name: str, data: bytes,
                         tcp: bool) -> None:
    w = load_twin(request, name)
    seeded = [dns.message.make_query(n, t).to_wire() for n in NAMES for t in ("A", "SRV")]
    check(w, responder(w, seeded), data, tcp)
