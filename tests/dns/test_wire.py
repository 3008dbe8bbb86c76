"""Both twins of the DNS packet path, checked against dnspython as the independent codec."""

from __future__ import annotations

import random
import select
import socket
import struct
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest

from proconsul.errors import DNSFormatError
from tests.conftest import load_twin, twin_params

COMPILED = "proconsul._speedups.dns_wire"
PURE = "proconsul.dns.wire_py"
SERVICE = "web.service.consul"


@pytest.fixture(params=twin_params(COMPILED, PURE))
def w(request: pytest.FixtureRequest) -> ModuleType:
    return load_twin(request, request.param)


def query(name: str = SERVICE, rdtype: str = "A", **kwargs: Any) -> bytes:
    """A query as a stub resolver would send it (dnspython builds it)."""
    return dns.message.make_query(name, rdtype, **kwargs).to_wire()


def header(qid: int = 0x1234, flags: int = 0, qd: int = 1, an: int = 0, ns: int = 0,
           ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def answer(w: ModuleType, qwire: bytes, plan: Any, tcp: bool = False, opts: Any = None,
           seed: int = 1) -> tuple[bytes, dns.message.Message]:
    """Render `plan` for `qwire` and decode the result with dnspython."""
    out: bytes = w.render(w.parse_query(qwire), plan, tcp, opts or w.RenderOptions(), w.Rng(seed))
    assert isinstance(out, bytes)
    return out, dns.message.from_wire(out)


def a_record(w: ModuleType, name: str, last: int) -> Any:
    return w.Record(w.Name(name), w.TYPE_A, 30, bytes([10, 0, 0, last]))


def srv_plan(w: ModuleType, count: int, target_len: int = 10, shared_glue: bool = False,
             **kwargs: Any) -> Any:
    """SRV answers, each with an A glue record in the extras pool."""
    owner = w.Name(SERVICE)
    answers, extras, extra_of = [], [], []
    for i in range(count):
        target = f"{'n' * target_len}{i % 2 if shared_glue else i}.node.dc1.consul"
        answers.append(w.Record(owner, w.TYPE_SRV, 0, (1, 1, 8000 + i, w.Name(target))))
        if shared_glue and i >= 2:
            extra_of.append((i % 2,))
            continue
        extras.append(a_record(w, target, i + 1))
        extra_of.append((len(extras) - 1,))
    return w.Plan(0, answers, extras=extras, extra_of=extra_of, **kwargs)


def a_plan(w: ModuleType, count: int, **kwargs: Any) -> Any:
    return w.Plan(0, [a_record(w, SERVICE, i + 1) for i in range(count)], **kwargs)


def rrset_items(msg: dns.message.Message, section: str = "answer") -> list[str]:
    return [rr.to_text() for rrset in getattr(msg, section) for rr in rrset]


# -- parse_query ------------------------------------------------------------------------------


def test_parse_plain_query(w: ModuleType) -> None:
    wire = query("Web.Service.CONSUL", "SRV", id=4321)
    q = w.parse_query(wire)
    assert (q.id, q.opcode, q.rd, q.cd, q.qdcount) == (4321, 0, True, False, 1)
    assert (q.qname, q.qtype, q.qclass) == (SERVICE, w.TYPE_SRV, w.CLASS_IN)
    assert q.question == wire[12:]
    assert q.key == wire[12:].lower()
    assert (q.edns, q.edns_size, q.edns_version, q.edns_do, q.ecs) == (False, 0, 0, False, None)


def test_parse_edns_with_client_subnet(w: ModuleType) -> None:
    ecs = dns.edns.ECSOption("192.0.2.0", 24)
    wire = query(use_edns=0, payload=4096, want_dnssec=True, options=[ecs])
    msg = dns.message.make_query(SERVICE, "A")
    msg.flags |= dns.flags.CD
    q = w.parse_query(wire)
    assert (q.edns, q.edns_size, q.edns_version, q.edns_do) == (True, 4096, 0, True)
    assert q.ecs == b"\x00\x01\x18\x00\xc0\x00\x02"
    assert w.parse_query(msg.to_wire()).cd is True
    assert w.parse_query(query(use_edns=0)).ecs is None


def test_parse_multiple_questions_answers_and_trailing_bytes(w: ModuleType) -> None:
    first = b"\x03Foo\x06consul\x00\x00\x01\x00\x01"
    second = b"\x03bar\xc0\x10\x00\x1c\x00\x01"  # points at "consul" in the first question
    rr = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\x0a\x00\x00\x01"
    opt = b"\x00\x00\x29\x02\x00\x00\x01\x00\x00\x00\x00"
    q = w.parse_query(header(qd=2, an=1, ns=1, ar=1) + first + second + rr + rr + opt + b"junk")
    assert (q.qdcount, q.qname, q.qtype) == (2, "foo.consul", 1)
    assert q.question == first
    assert (q.edns, q.edns_size, q.edns_version) == (True, 512, 1)


def test_parse_pointer_in_question(w: ModuleType) -> None:
    # id 0x0141 reads as the label "A" and flags 0 as the root: a legal backwards pointer
    q = w.parse_query(header(qid=0x0141) + b"\x03WWW\xc0\x00\x00\x01\x00\x01")
    assert q.qname == "www.a"
    assert q.question == b"\x03WWW\x01A\x00\x00\x01\x00\x01"
    assert q.key == b"\x03www\x01a\x00\x00\x01\x00\x01"


def test_parse_escapes_qname(w: ModuleType) -> None:
    q = w.parse_query(header() + b"\x04a.\\\xff\x02 B\x00\x00\x01\x00\x01")
    assert q.qname == "a\\.\\\\\\255.\\032b"


def test_parse_no_question(w: ModuleType) -> None:
    q = w.parse_query(header(qd=0))
    assert (q.qdcount, q.qname, q.qtype, q.qclass, q.question, q.key) == (0, "", 0, 0, b"", b"")


@pytest.mark.parametrize("data", [
    pytest.param(b"\x00" * 11, id="short-header"),
    pytest.param(header(flags=0x8000) + b"\x00\x00\x01\x00\x01", id="response"),
    pytest.param(header() + b"\x03ww", id="truncated-label"),
    pytest.param(header() + b"\x03www", id="no-terminator"),
    pytest.param(header() + b"\x03www\x00\x00", id="truncated-question"),
    pytest.param(header() + b"\x03www\xc0", id="truncated-pointer"),
    pytest.param(header() + b"\x03www\xc0\x0c\x00\x01\x00\x01", id="pointer-loop"),
    pytest.param(header() + b"\x03www\xc0\x20" + b"\x00" * 20, id="forward-pointer"),
    pytest.param(header() + b"\x03www\xc0\x10\x00\x01\x00\x01", id="self-pointer"),
    pytest.param(header() + b"\x41www\x00\x00\x01\x00\x01", id="label-type-0x40"),
    pytest.param(header() + b"\x81www\x00\x00\x01\x00\x01", id="label-type-0x80"),
    pytest.param(header() + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", id="long-name"),
    pytest.param(header(an=1) + b"\x00\x00\x01\x00\x01", id="missing-answer"),
    pytest.param(header(qd=2) + b"\x00\x00\x01\x00\x01\x00\x00", id="truncated-second-q"),
])
def test_parse_malformed(w: ModuleType, data: bytes) -> None:
    with pytest.raises(DNSFormatError):
        w.parse_query(data)


def test_parse_additional_overruns(w: ModuleType) -> None:
    wire = query(use_edns=0)
    assert wire.endswith(b"\x00\x00")
    with pytest.raises(DNSFormatError):
        w.parse_query(wire[:-2] + b"\x00\x05")
    with pytest.raises(DNSFormatError):
        w.parse_query(wire[:-1])
    option_overrun = wire[:-2] + b"\x00\x06\x00\x08\x00\x09\x00\x01"
    with pytest.raises(DNSFormatError):
        w.parse_query(option_overrun)


def test_name_validation(w: ModuleType) -> None:
    name = w.Name("Web.service.consul")
    assert name.text == "Web.service.consul"
    assert name.wire == b"\x03Web\x07service\x06consul\x00"
    assert w.Name("").wire == b"\x00"
    for bad in ("a..b", "a.", "x" * 64, ".".join(["abcdefg"] * 40)):
        with pytest.raises(DNSFormatError):
            w.Name(bad)
    with pytest.raises(AttributeError):
        name.text = "other"  # read-only on both twins


# -- render -----------------------------------------------------------------------------------


def test_render_a_and_flags(w: ModuleType) -> None:
    _, msg = answer(w, query(id=77), a_plan(w, 2),
                    opts=w.RenderOptions(recursion_available=True))
    assert msg.id == 77
    assert msg.flags & dns.flags.QR and msg.flags & dns.flags.AA
    assert msg.flags & dns.flags.RD and msg.flags & dns.flags.RA
    assert not msg.flags & (dns.flags.TC | dns.flags.CD)
    assert msg.rcode() == dns.rcode.NOERROR
    assert sorted(rrset_items(msg)) == ["10.0.0.1", "10.0.0.2"]
    assert msg.answer[0].ttl == 30 and msg.edns < 0
    cd_query = dns.message.make_query(SERVICE, "A")
    cd_query.flags = dns.flags.CD
    _, msg = answer(w, cd_query.to_wire(), w.Plan(3, [], authoritative=False))
    assert msg.flags & dns.flags.CD and not msg.flags & (dns.flags.RD | dns.flags.AA)
    assert msg.rcode() == dns.rcode.NXDOMAIN


def test_render_record_types(w: ModuleType) -> None:
    owner = w.Name(SERVICE)
    soa = (w.Name("ns.consul"), w.Name("hostmaster.consul"), 7, 3600, 600, 86400, 0)
    cases = [
        (w.TYPE_AAAA, bytes(15) + b"\x01", "AAAA", ["::1"]),
        (w.TYPE_TXT, (b"a=1", b"b c"), "TXT", ['"a=1" "b c"']),
        (w.TYPE_NS, w.Name("ns.consul"), "NS", ["ns.consul."]),
        (w.TYPE_PTR, w.Name("node1.node.dc1.consul"), "PTR", ["node1.node.dc1.consul."]),
        # case-insensitive compression: "Consul" points at the question's "consul"
        (w.TYPE_CNAME, w.Name("Alias.Consul"), "CNAME", ["Alias.consul."]),
        (w.TYPE_SOA, soa, "SOA", ["ns.consul. hostmaster.consul. 7 3600 600 86400 0"]),
        (99, b"\x03abc", "SPF", ['"abc"']),
    ]
    for rtype, rdata, text, expected in cases:
        _, msg = answer(w, query(rdtype=text), w.Plan(0, [w.Record(owner, rtype, 5, rdata)]))
        assert msg.answer[0].rdtype == dns.rdatatype.from_text(text)
        assert rrset_items(msg) == expected


def test_render_srv_with_glue(w: ModuleType) -> None:
    _, msg = answer(w, query(rdtype="SRV"), srv_plan(w, 3), tcp=True)
    targets = sorted(rr.target.to_text() for rr in msg.answer[0])
    glue = sorted(rrset.name.to_text() for rrset in msg.additional)
    assert targets == glue == [f"nnnnnnnnnn{i}.node.dc1.consul." for i in range(3)]
    assert sorted(rr.port for rr in msg.answer[0]) == [8000, 8001, 8002]


def test_render_bad_rdata_raises(w: ModuleType) -> None:
    owner = w.Name(SERVICE)
    for rtype, rdata in [(w.TYPE_A, b"\x01\x02"), (w.TYPE_TXT, (b"x" * 256,)),
                         (w.TYPE_SRV, (1, 2, 3, "not-a-name")), (w.TYPE_CNAME, "x.consul")]:
        with pytest.raises((ValueError, TypeError)):
            w.render(w.parse_query(query()), w.Plan(0, [w.Record(owner, rtype, 0, rdata)]),
                     True, w.RenderOptions(), w.Rng(1))


def test_render_opt_echo_with_ecs_scope_zero(w: ModuleType) -> None:
    ecs = dns.edns.ECSOption("198.51.100.0", 24, 16)
    _, msg = answer(w, query(use_edns=0, payload=300, want_dnssec=True, options=[ecs]),
                    a_plan(w, 1))
    assert msg.edns == 0 and msg.payload == 512
    assert msg.ednsflags & dns.flags.DO
    (echo,) = msg.options
    assert isinstance(echo, dns.edns.ECSOption)
    assert (echo.address, echo.srclen, echo.scopelen) == ("198.51.100.0", 24, 0)
    _, msg = answer(w, query(use_edns=0, payload=1232), a_plan(w, 1))
    assert msg.payload == 1232 and msg.options == () and not msg.ednsflags & dns.flags.DO


def test_compression(w: ModuleType) -> None:
    plan = srv_plan(w, 4)
    packed, msg = answer(w, query(rdtype="SRV"), plan, tcp=True)
    full, full_msg = answer(w, query(rdtype="SRV"), plan, tcp=True,
                            opts=w.RenderOptions(compress=False))
    assert len(packed) < len(full)
    assert full.count(w.Name(SERVICE).wire) == 1 + 4
    assert full.count(b"\x04node\x03dc1\x06consul\x00") == 8
    assert packed.count(b"\x06consul\x00") == 1 + 4  # the question and the SRV targets
    assert sorted(rrset_items(msg)) == sorted(rrset_items(full_msg))
    assert sorted(rrset_items(msg, "additional")) == sorted(rrset_items(full_msg, "additional"))
    # SRV targets are never compressed, but glue owners point at them
    for rr in plan.answers:
        assert rr.rdata[3].wire in packed


def test_compression_is_case_insensitive(w: ModuleType) -> None:
    out, msg = answer(w, query("WEB.Service.Consul"), a_plan(w, 1))
    assert out.count(b"\xc0\x0c") == 1  # the answer owner points at the question
    assert msg.answer[0].name.to_text() == "WEB.Service.Consul."


def test_shuffle_is_deterministic_per_seed(w: ModuleType) -> None:
    plan = a_plan(w, 8, shuffle=True)

    def order(seed: int) -> list[str]:
        return [rr.to_text() for rr in answer(w, query(), plan, tcp=True, seed=seed)[1].answer[0]]

    assert order(5) == order(5)
    assert len({tuple(order(seed)) for seed in range(6)}) > 1
    assert sorted(order(5)) == sorted(rrset_items(answer(w, query(), a_plan(w, 8), True)[1]))


def test_shuffle_moves_extras_with_answers(w: ModuleType) -> None:
    plan = srv_plan(w, 6, shuffle=True)
    for seed in range(5):
        _, msg = answer(w, query(rdtype="SRV"), plan, opts=w.RenderOptions(udp_answer_limit=2),
                        seed=seed)
        kept = sorted(rr.target.to_text() for rr in msg.answer[0])
        assert sorted(rrset.name.to_text() for rrset in msg.additional) == kept


def test_rng_algorithm(w: ModuleType) -> None:
    mask = 2**64 - 1
    x = 42
    expected = []
    for _ in range(5):
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
        expected.append(x)
    rng = w.Rng(42)
    assert [rng.next() for _ in range(5)] == expected
    assert w.Rng(0).next() == w.Rng(0x9E3779B97F4A7C15).next()
    assert w.Rng(2**64).next() == w.Rng(0).next()
    items = list(range(10))
    rng = w.Rng(7)
    rng.shuffle(items)
    reference, state = list(range(10)), w.Rng(7)
    for i in range(9, 0, -1):
        j = state.next() % (i + 1)
        reference[i], reference[j] = reference[j], reference[i]
    assert items == reference


@pytest.mark.parametrize(("limit", "kept"), [(3, 3), (20, 8), (0, 8), (1, 1)])
def test_udp_answer_limit_without_edns(w: ModuleType, limit: int, kept: int) -> None:
    opts = w.RenderOptions(udp_answer_limit=limit)
    assert len(answer(w, query(), a_plan(w, 20), opts=opts)[1].answer[0]) == kept
    assert len(answer(w, query(), a_plan(w, 20), tcp=True, opts=opts)[1].answer[0]) == 20
    assert len(answer(w, query(use_edns=0), a_plan(w, 20), opts=opts)[1].answer[0]) == 20


def test_answer_limit_on_every_transport(w: ModuleType) -> None:
    plan = a_plan(w, 10, answer_limit=4)
    opts = w.RenderOptions(udp_answer_limit=6)
    for qwire, tcp in [(query(), True), (query(use_edns=0), False), (query(), False)]:
        assert len(answer(w, qwire, plan, tcp=tcp, opts=opts)[1].answer[0]) == 4
    assert len(answer(w, query(), a_plan(w, 10, answer_limit=4), opts=w.RenderOptions(
        udp_answer_limit=2))[1].answer[0]) == 2


def check_maximal(w: ModuleType, qwire: bytes, plan: Any, out: bytes, limit: int) -> int:
    """Assert `out` fits `limit` and one more answer (same order) would not; return answers."""
    msg = dns.message.from_wire(out)
    kept = len(msg.answer[0]) if msg.answer else 0
    assert len(out) <= limit
    assert kept < len(plan.answers)
    bigger = w.Plan(0, plan.answers[:kept + 1], extras=plan.extras,
                    extra_of=plan.extra_of[:kept + 1])
    assert len(answer(w, qwire, bigger, tcp=True)[0]) > limit
    targets = sorted(rr.target.to_text() for rr in msg.answer[0]) if msg.answer else []
    glue = [rrset.name.to_text() for rrset in msg.additional]
    assert sorted(glue) == targets  # glue follows kept answers, no orphans, no duplicates
    return kept


def test_truncation_to_512(w: ModuleType) -> None:
    plan = srv_plan(w, 100, target_len=40)
    qwire = query(rdtype="SRV")
    out = w.render(w.parse_query(qwire), plan, False, w.RenderOptions(udp_answer_limit=8),
                   w.Rng(1))
    assert 0 < check_maximal(w, qwire, plan, out, 512) < 8
    assert not dns.message.from_wire(out).flags & dns.flags.TC
    opts = w.RenderOptions(udp_answer_limit=8, enable_truncate=True)
    assert dns.message.from_wire(w.render(w.parse_query(qwire), plan, False, opts, w.Rng(1))
                                 ).flags & dns.flags.TC


def test_truncation_honours_edns_size(w: ModuleType) -> None:
    plan = srv_plan(w, 100)
    qwire = query(rdtype="SRV", use_edns=0, payload=1232)
    opts = w.RenderOptions(enable_truncate=True)
    out = w.render(w.parse_query(qwire), plan, False, opts, w.Rng(1))
    kept = check_maximal(w, qwire, plan, out, 1232)
    assert kept > 8
    msg = dns.message.from_wire(out)
    assert msg.flags & dns.flags.TC and msg.edns == 0
    # advertised sizes below 512 count as 512
    small = query(rdtype="SRV", use_edns=0, payload=100)
    check_maximal(w, small, plan, w.render(w.parse_query(small), plan, False, opts, w.Rng(1)),
                  512)


def test_no_duplicate_glue(w: ModuleType) -> None:
    _, msg = answer(w, query(rdtype="SRV"), srv_plan(w, 6, shared_glue=True), tcp=True)
    names = [rrset.name.to_text() for rrset in msg.additional]
    assert sorted(names) == ["nnnnnnnnnn0.node.dc1.consul.", "nnnnnnnnnn1.node.dc1.consul."]
    assert sum(len(rrset) for rrset in msg.additional) == 2


def test_truncation_tcp_limit(w: ModuleType) -> None:
    owner = w.Name(SERVICE)
    plan = w.Plan(0, [w.Record(owner, w.TYPE_TXT, 0, (b"%03d" % i * 85,))
                      for i in range(300)])
    opts = w.RenderOptions(enable_truncate=True)
    out = w.render(w.parse_query(query(rdtype="TXT")), plan, True, opts, w.Rng(1))
    msg = dns.message.from_wire(out)
    assert len(out) <= w.MAX_TCP_SIZE < len(out) + 2 + 10 + 256
    assert 200 < len(msg.answer[0]) < 300
    assert not msg.flags & dns.flags.TC  # never on TCP
    trimmed = w.render(w.parse_query(query()), a_plan(w, 5, answer_limit=2), True, opts,
                       w.Rng(1))
    assert not dns.message.from_wire(trimmed).flags & dns.flags.TC


def test_truncation_drops_authority_when_nothing_fits(w: ModuleType) -> None:
    mname, rname = (".".join([c * 60 + str(i) for i in range(4)]) for c in "xy")
    soa = w.Record(w.Name("consul"), w.TYPE_SOA, 0, (w.Name(mname), w.Name(rname), 1, 2, 3, 4, 5))
    plan = w.Plan(0, [a_record(w, SERVICE, 1)], authority=[soa])
    _, msg = answer(w, query(), plan, opts=w.RenderOptions(enable_truncate=True))
    assert (msg.answer, msg.authority) == ([], [])
    assert msg.flags & dns.flags.TC
    _, msg = answer(w, query(), plan, tcp=True)
    assert len(msg.answer) == 1 and len(msg.authority) == 1


def test_soa_now(w: ModuleType) -> None:
    soa = w.Record(w.Name("consul"), w.TYPE_SOA, 0,
                   (w.Name("ns.consul"), w.Name("hostmaster.consul"), 1, 3600, 600, 86400, 0))
    plan = w.Plan(3, [], authority=[soa], soa_now=True)
    _, msg = answer(w, query(), plan)
    assert abs(msg.authority[0][0].serial - time.time()) < 5
    _, msg = answer(w, query(), w.Plan(3, [], authority=[soa]))
    assert msg.authority[0][0].serial == 1


def test_error_and_formerr_responses(w: ModuleType) -> None:
    wire = query(id=9, use_edns=0, payload=1400)
    msg = dns.message.from_wire(w.error_response(w.parse_query(wire), w.RCODE_SERVFAIL,
                                                 w.RenderOptions(recursion_available=True)))
    assert (msg.id, msg.rcode(), msg.edns, msg.payload) == (9, dns.rcode.SERVFAIL, 0, 1400)
    assert msg.flags & dns.flags.RA and msg.flags & dns.flags.RD
    assert not msg.flags & dns.flags.AA
    assert msg.question[0].name.to_text() == SERVICE + "."
    bad = header(qid=0xBEEF, flags=0x0100) + b"\x03ww"
    assert w.formerr_response(bad) == header(qid=0xBEEF, flags=0x8101, qd=0)
    assert w.formerr_response(b"\x00" * 11) == b""
    assert w.formerr_response(header(flags=0x8000)) == b""


# -- Responder --------------------------------------------------------------------------------


def test_responder_cache(w: ModuleType) -> None:
    responder = w.Responder(w.RenderOptions(), seed=3, max_plans=2)
    first = responder.lookup(query(id=1), False)
    assert isinstance(first, w.Query) and (responder.hits, responder.misses) == (0, 1)
    plan = a_plan(w, 1)
    responder.store(first, plan)
    assert len(responder) == 1 and responder.plan_for(first.key) is plan
    hit = responder.lookup(query("WEB.service.consul", id=2), True)
    assert isinstance(hit, bytes) and (responder.hits, responder.misses) == (1, 1)
    msg = dns.message.from_wire(hit)
    assert msg.id == 2 and rrset_items(msg) == ["10.0.0.1"]
    assert responder.render(first, plan, False) == w.render(first, plan, False, responder.opts,
                                                            w.Rng(1))
    responder.forget(first.key)
    responder.forget(b"missing")
    assert responder.plan_for(first.key) is None and len(responder) == 0
    for name in ("a.consul", "b.consul", "c.consul"):
        responder.store(w.parse_query(query(name)), plan)
    assert len(responder) == 1  # full at two plans: cleared before the third
    responder.clear()
    assert len(responder) == 0
    assert isinstance(responder.rng, w.Rng)


def test_responder_error_answers(w: ModuleType) -> None:
    responder = w.Responder(w.RenderOptions())
    refused = dns.message.from_wire(responder.lookup(header(qd=0), False))
    assert refused.rcode() == dns.rcode.REFUSED and refused.question == []
    notify = dns.message.make_query(SERVICE, "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    notimp = dns.message.from_wire(responder.lookup(notify.to_wire(), False))
    assert notimp.rcode() == dns.rcode.NOTIMP and notimp.opcode() == dns.opcode.NOTIFY
    formerr = dns.message.from_wire(responder.lookup(header(qid=5) + b"\x41", False))
    assert (formerr.id, formerr.rcode()) == (5, dns.rcode.FORMERR)
    assert responder.lookup(b"\x01\x02", False) == b""
    assert (responder.formerr, responder.hits, responder.misses) == (2, 0, 0)


def test_responder_lookup_never_raises(w: ModuleType) -> None:
    responder = w.Responder(w.RenderOptions(), seed=1)
    seeds = [query(use_edns=0, options=[dns.edns.ECSOption("10.0.0.0", 8)]), query("x.consul")]
    responder.store(w.parse_query(seeds[1]), a_plan(w, 3))
    rnd = random.Random(1234)
    for _ in range(3000):
        data = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 4)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        data = data[:rnd.randint(0, len(data))] if rnd.random() < 0.3 else data
        result = responder.lookup(bytes(data), rnd.random() < 0.5)
        assert isinstance(result, (bytes, w.Query))
    for _ in range(500):
        responder.lookup(rnd.randbytes(rnd.randint(0, 64)), False)


# -- drain_udp --------------------------------------------------------------------------------


@pytest.fixture
def udp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        client.bind(("127.0.0.1", 0))
        client.settimeout(2)
        yield server, client
    finally:
        server.close()
        client.close()


def drain_all(w: ModuleType, server: socket.socket, responder: Any, expected: int,
              misses: list[tuple[Any, Any]], budget: int = 256) -> list[int]:
    """Drain until `expected` datagrams were read (loopback delivery is quick, not instant)."""
    counts: list[int] = []
    deadline = time.monotonic() + 5
    while sum(counts) < expected and time.monotonic() < deadline:
        select.select([server], [], [], 0.5)
        counts.append(w.drain_udp(server, responder, lambda q, a: misses.append((q, a)), budget))
    return counts


def test_drain_udp(w: ModuleType, udp_pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = udp_pair
    responder = w.Responder(w.RenderOptions())
    responder.store(w.parse_query(query()), a_plan(w, 1))
    target = server.getsockname()
    client.sendto(query(id=11), target)
    client.sendto(query("miss.consul", id=12), target)
    client.sendto(b"\x00\x01", target)  # unreadable: dropped without an answer
    misses: list[tuple[Any, Any]] = []
    assert sum(drain_all(w, server, responder, 3, misses)) == 3
    reply, source = client.recvfrom(65535)
    assert source == target and dns.message.from_wire(reply).id == 11
    assert [(q.qname, q.id) for q, _ in misses] == [("miss.consul", 12)]
    assert misses[0][1] == client.getsockname()
    client.settimeout(0.2)
    with pytest.raises(TimeoutError):
        client.recvfrom(65535)
    assert w.drain_udp(server, responder, lambda q, a: None) == 0


def test_drain_udp_budget(w: ModuleType, udp_pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = udp_pair
    responder = w.Responder(w.RenderOptions())
    for i in range(5):
        client.sendto(query(f"n{i}.consul"), server.getsockname())
    misses: list[tuple[Any, Any]] = []
    counts = drain_all(w, server, responder, 5, misses, budget=2)
    assert sum(counts) == 5 and max(counts) == 2
    assert [q.qname for q, _ in misses] == [f"n{i}.consul" for i in range(5)]


def test_drain_udp_miss_exception_propagates(
        w: ModuleType, udp_pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = udp_pair
    client.sendto(query(), server.getsockname())
    select.select([server], [], [], 2)

    def boom(q: Any, addr: Any) -> None:
        raise RuntimeError("resolver failed")

    with pytest.raises(RuntimeError):
        w.drain_udp(server, w.Responder(w.RenderOptions()), boom)
