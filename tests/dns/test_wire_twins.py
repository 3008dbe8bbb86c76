"""The compiled and pure DNS wire twins give identical results for identical inputs.

The contract promises byte-identical answers for the same inputs and Rng seed, so these
properties feed both twins the same generated packets, plans and options and compare every
outcome: parsed attributes (or both rejecting), rendered bytes and Responder sequences.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import dns.edns
import dns.message
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proconsul.errors import DNSFormatError
from tests.conftest import load_twin

COMPILED = "proconsul._speedups.dns_wire"
PURE = "proconsul.dns.wire_py"
QUERY_FIELDS = ("id", "opcode", "rd", "cd", "qdcount", "qname", "qtype", "qclass", "question",
                "key", "edns", "edns_size", "edns_version", "edns_do", "ecs")

pytestmark = pytest.mark.c_extension


def load_twins(request: pytest.FixtureRequest) -> tuple[ModuleType, ModuleType]:
    """(compiled, pure); skips when the compiled twins are disabled."""
    return load_twin(request, COMPILED), load_twin(request, PURE)


# -- generated inputs, as plain data both twins can be built from -----------------------------

# Labels that share suffixes with each other and with the questions, in several spellings, so
# compression (case-insensitive, across owners, rdata and SRV targets) is exercised.
LABELS = ["web", "WEB", "Web", "service", "Service", "consul", "CONSUL", "node", "dc1", "db",
          "n1", "N1", "n2", "x" * 40, "ünï", "ÜNÏ", "a-b", "_tcp"]
labels = st.sampled_from(LABELS)
names = st.lists(labels, min_size=0, max_size=5).map(".".join)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


@dataclass(frozen=True)
class RecordSpec:
    owner: str
    rtype: int
    ttl: int
    rdata: Any  # names are kept as str and turned into each twin's Name


@dataclass(frozen=True)
class PlanSpec:
    rcode: int
    answers: list[RecordSpec]
    authority: list[RecordSpec] | None
    extras: list[RecordSpec] | None
    extra_of: list[tuple[int, ...]] | None
    shuffle: bool
    answer_limit: int
    authoritative: bool


@st.composite
def records(draw: st.DrawFn) -> RecordSpec:
    owner = draw(names)
    ttl = draw(st.integers(-5, 2**33))
    kind = draw(st.sampled_from(["A", "AAAA", "TXT", "SRV", "CNAME", "NS", "PTR", "SOA", "RAW"]))
    if kind == "A":
        return RecordSpec(owner, 1, ttl, draw(st.binary(min_size=4, max_size=4)))
    if kind == "AAAA":
        return RecordSpec(owner, 28, ttl, draw(st.binary(min_size=16, max_size=16)))
    if kind == "TXT":
        return RecordSpec(owner, 16, ttl, tuple(draw(st.lists(st.binary(max_size=80),
                                                                max_size=4))))
    if kind == "SRV":
        return RecordSpec(owner, 33, ttl, (draw(u16), draw(u16), draw(u16), draw(names)))
    if kind in ("CNAME", "NS", "PTR"):
        return RecordSpec(owner, {"CNAME": 5, "NS": 2, "PTR": 12}[kind], ttl, draw(names))
    if kind == "SOA":
        return RecordSpec(owner, 6, ttl, (draw(names), draw(names), draw(u32), draw(u32),
                                          draw(u32), draw(u32), draw(u32)))
    return RecordSpec(owner, draw(st.sampled_from([10, 99, 257])), ttl,
                      draw(st.binary(max_size=120)))


@st.composite
def plans(draw: st.DrawFn) -> PlanSpec:
    answers = draw(st.lists(records(), max_size=40))
    extras = draw(st.none() | st.lists(records(), max_size=8))
    extra_of = None
    if extras and draw(st.booleans()):
        pick = st.integers(0, len(extras) - 1)
        extra_of = [tuple(draw(st.lists(pick, max_size=3))) for _ in answers]
    return PlanSpec(
        rcode=draw(st.integers(0, 20)),
        answers=answers,
        authority=draw(st.none() | st.lists(records(), max_size=3)),
        extras=extras,
        extra_of=extra_of,
        shuffle=draw(st.booleans()),
        answer_limit=draw(st.integers(0, 12)),
        authoritative=draw(st.booleans()),
    )


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    """A query from dnspython: optionally EDNS with a size, the DO bit and client subnet."""
    qname = draw(st.lists(st.sampled_from([x for x in LABELS if x.isascii()]), min_size=0,
                          max_size=4).map(".".join)) + "."
    kwargs: dict[str, Any] = {}
    if draw(st.booleans()):
        kwargs["use_edns"] = 0
        kwargs["payload"] = draw(st.integers(0, 5000))
        kwargs["want_dnssec"] = draw(st.booleans())
        if draw(st.booleans()):
            kwargs["options"] = [dns.edns.ECSOption(draw(st.sampled_from(
                ["192.0.2.0", "10.1.2.3", "2001:db8::"])), draw(st.integers(0, 24)),
                draw(st.integers(0, 24)))]
    message = dns.message.make_query(qname, draw(st.sampled_from(["A", "AAAA", "SRV", "ANY",
                                                                    "TXT", "PTR"])), **kwargs)
    message.id = draw(u16)
    if draw(st.booleans()):
        message.flags |= 0x0010  # CD
    return message.to_wire()


def options(w: ModuleType, spec: tuple[int, bool, bool, bool]) -> Any:
    return w.RenderOptions(*spec)


option_specs = st.tuples(st.integers(-1, 10), st.booleans(), st.booleans(), st.booleans())


def build(w: ModuleType, spec: PlanSpec) -> Any:
    """One twin's Plan for a spec; equal texts share one Name, as the resolver's plans do."""
    cache: dict[str, Any] = {}

    def name(text: str) -> Any:
        if text not in cache:
            cache[text] = w.Name(text)
        return cache[text]

    def record(r: RecordSpec) -> Any:
        rdata = r.rdata
        if r.rtype in (2, 5, 12):
            rdata = name(rdata)
        elif r.rtype == 33:
            rdata = (*rdata[:3], name(rdata[3]))
        elif r.rtype == 6:
            rdata = (name(rdata[0]), name(rdata[1]), *rdata[2:])
        return w.Record(name(r.owner), r.rtype, r.ttl, rdata)

    def section(items: list[RecordSpec] | None) -> list[Any] | None:
        return None if items is None else [record(r) for r in items]

    return w.Plan(spec.rcode, section(spec.answers), section(spec.authority),
                  section(spec.extras), spec.extra_of, spec.shuffle, spec.answer_limit,
                  False, spec.authoritative)


def parsed(w: ModuleType, data: bytes) -> tuple[object, ...] | str:
    try:
        query = w.parse_query(data)
    except DNSFormatError:
        return "DNSFormatError"
    return tuple(getattr(query, field) for field in QUERY_FIELDS)


# -- mutations of valid queries ---------------------------------------------------------------

@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(queries()))
    for _ in range(draw(st.integers(0, 4))):
        how = draw(st.sampled_from(["flip", "cut", "splice", "count", "pointer"]))
        if how == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del data[draw(st.integers(0, len(data))):]
        elif how == "splice":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(max_size=12))
        elif how == "count" and len(data) >= 12:
            field = draw(st.integers(2, 5))
            struct.pack_into("!H", data, field * 2, draw(st.sampled_from([0, 1, 2, 3, 0xFFFF])))
        elif how == "pointer" and len(data) > 14:
            at = draw(st.integers(12, len(data) - 2))
            struct.pack_into("!H", data, at, 0xC000 | draw(st.integers(0, len(data))))
    return bytes(data)


# -- properties -------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64) | mutated())
def test_parse_query_agrees(request: pytest.FixtureRequest, data: bytes) -> None:
    c, py = load_twins(request)
    assert parsed(c, data) == parsed(py, data)
    assert c.formerr_response(data) == py.formerr_response(data)


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.sampled_from("aZ.ü-_\x00"), max_size=300))
def test_name_agrees(request: pytest.FixtureRequest, text: str) -> None:
    c, py = load_twins(request)

    def outcome(w: ModuleType) -> object:
        try:
            return w.Name(text).wire
        except DNSFormatError:
            return "DNSFormatError"

    assert outcome(c) == outcome(py)


@settings(max_examples=300, deadline=None)
@given(spec=plans(), data=queries(), tcp=st.booleans(), opts=option_specs,
       seed=st.integers(0, 2**64))
def test_render_agrees(request: pytest.FixtureRequest, spec: PlanSpec, data: bytes,
                       tcp: bool, opts: tuple[int, bool, bool, bool], seed: int) -> None:
    c, py = load_twins(request)
    expected = py.render(py.parse_query(data), build(py, spec), tcp, options(py, opts),
                         py.Rng(seed))
    got = c.render(c.parse_query(data), build(c, spec), tcp, options(c, opts), c.Rng(seed))
    assert got == expected
    for rcode in (2, 4, 5):
        assert (c.error_response(c.parse_query(data), rcode, options(c, opts))
                == py.error_response(py.parse_query(data), rcode, options(py, opts)))


@settings(max_examples=100, deadline=None)
@given(spec=plans(), stored=queries(), asked=st.lists(queries() | mutated(), max_size=6),
       opts=option_specs, seed=st.integers(0, 2**64), max_plans=st.integers(1, 3))
def test_responder_sequences_agree(request: pytest.FixtureRequest, spec: PlanSpec,
                                   stored: bytes, asked: list[bytes],
                                   opts: tuple[int, bool, bool, bool], seed: int,
                                   max_plans: int) -> None:
    """Store a plan, then ask again (the same and other packets): hits consume the Rng in
    step, misses come back as equal Queries, and the counters move together."""
    results: list[list[object]] = []
    for w in load_twins(request):
        responder = w.Responder(options(w, opts), seed, max_plans)
        plan = build(w, spec)
        first = responder.lookup(stored, False)
        outcomes: list[object] = [first if isinstance(first, bytes) else "miss"]
        if not isinstance(first, bytes):
            responder.store(first, plan)
        for data in [stored, *asked, stored]:
            for tcp in (False, True):
                result = responder.lookup(data, tcp)
                if isinstance(result, bytes):
                    outcomes.append(result)
                else:
                    outcomes.append(tuple(getattr(result, f) for f in QUERY_FIELDS))
                    responder.store(result, plan)
        outcomes.append((responder.hits, responder.misses, responder.formerr, len(responder),
                         responder.rng.next()))
        results.append(outcomes)
    assert results[0] == results[1]


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(-(2**65), 2**65), size=st.integers(0, 30))
def test_rng_agrees(request: pytest.FixtureRequest, seed: int, size: int) -> None:
    c, py = load_twins(request)
    rc, rp = c.Rng(seed), py.Rng(seed)
    assert [rc.next() for _ in range(5)] == [rp.next() for _ in range(5)]
    items_c, items_p = list(range(size)), list(range(size))
    rc.shuffle(items_c)
    rp.shuffle(items_p)
    assert items_c == items_p
