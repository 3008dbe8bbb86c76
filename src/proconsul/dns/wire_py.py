"""Pure-Python twin of the DNS packet path: query bytes in, answer bytes out.

Every DNS packet crosses this module, so it has a compiled twin (`proconsul._speedups.dns_wire`)
with the same names, signatures and output bytes; `wire.py` picks one. It is sans-IO except for
`drain_udp`, which is handed a non-blocking socket so a whole burst of datagrams is served
without a trip through the event loop per packet.

The split of work: the resolver decides *what* answers a question (a `Plan`, cached under the
question's case-folded wire form), and this module decides *how* it is written for one request:
shuffle, answer limits, name compression, truncation to the transport's size, the header flags
and the EDNS echo. Rendering a cached plan again for every request is what lets the cache be
shared between UDP and TCP clients, EDNS and plain ones.

Name compression keys are the ASCII-lowered uncompressed wire form of each suffix: DNS names
compare case-insensitively in ASCII only (RFC 4343), and the wire form cannot confuse a dot
inside a label with a label boundary, so a pointer never lands on a differently spelled name.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, TypeVar

from proconsul.errors import DNSFormatError

__all__ = [
    "CLASS_ANY", "CLASS_IN", "MAX_TCP_SIZE", "MAX_UDP_ANSWERS", "MAX_UDP_PLAIN",
    "RCODE_FORMERR", "RCODE_NOERROR", "RCODE_NOTIMP", "RCODE_NXDOMAIN", "RCODE_REFUSED",
    "RCODE_SERVFAIL", "TYPE_A", "TYPE_AAAA", "TYPE_ANY", "TYPE_AXFR", "TYPE_CNAME", "TYPE_IXFR",
    "TYPE_NS", "TYPE_OPT", "TYPE_PTR", "TYPE_SOA", "TYPE_SRV", "TYPE_TXT",
    "Name", "Plan", "Query", "Record", "RenderOptions", "Responder", "Rng",
    "drain_udp", "error_response", "formerr_response", "parse_query", "render",
]

TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_PTR = 12
TYPE_TXT = 16
TYPE_AAAA = 28
TYPE_SRV = 33
TYPE_OPT = 41
TYPE_IXFR = 251
TYPE_AXFR = 252
TYPE_ANY = 255
CLASS_IN = 1
CLASS_ANY = 255
RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5
#: Largest answer to a UDP query without EDNS (RFC 1035 4.2.1).
MAX_UDP_PLAIN = 512
#: Cap for TCP answers and for the UDP size a client advertises with EDNS (as Consul).
MAX_TCP_SIZE = 65523
#: Hard cap on answers in a UDP reply to a client without EDNS, whatever the configuration says.
MAX_UDP_ANSWERS = 8

_M16 = 0xFFFF
_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF
_QR = 0x8000
_AA = 0x0400
_RD = 0x0100
_RA = 0x0080
_CD = 0x0010
_PTR_LIMIT = 0x4000  # a compression pointer holds 14 bits of offset
_MAX_JUMPS = 128

_HEADER = struct.Struct("!HHHHHH")
_U16 = struct.Struct("!H")
_U16X2 = struct.Struct("!HH")
_U32 = struct.Struct("!I")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_RR_HEAD = struct.Struct("!HHI")  # type, class, ttl: rdlength follows once rdata is written
_SRV_FIXED = struct.Struct("!HHH")
_SOA_TIMERS = struct.Struct("!IIII")

# Bytes a label may hold and still be written as itself in a presentation name.
_PLAIN = bytes(b for b in range(0x21, 0x7F) if b not in (0x2E, 0x5C))
_ESCAPED = tuple(
    "\\." if b == 0x2E else "\\\\" if b == 0x5C
    else chr(b) if 0x21 <= b <= 0x7E else f"\\{b:03d}"
    for b in range(256)
)

# How a record's rdata is written: all bytes known up front; one compressible name; SRV (target
# written in full but entered in the compression table); SOA (two compressible names and timers).
_FIXED = 0
_ONE_NAME = 1
_SRV = 2
_SOA = 3
_KINDS = {TYPE_NS: _ONE_NAME, TYPE_CNAME: _ONE_NAME, TYPE_PTR: _ONE_NAME, TYPE_SRV: _SRV,
          TYPE_SOA: _SOA}

_T = TypeVar("_T")


class _Frozen:
    """Refuses attribute writes: plans are shared by every request that hits the cache, so a
    mutation would change answers behind the resolver's back (the compiled twin's attributes
    are read-only too). Constructors set slots with `object.__setattr__`."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__}.{name} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__}.{name} is read-only")


_set = object.__setattr__


class Name(_Frozen):
    """A domain name, encoded once when the plan is built and written many times.

    `text` is as given: no trailing dot ("" is the root) and no escapes, since names are built
    from node and service names, never parsed from presentation text. `wire` is the uncompressed
    wire form. The per-suffix compression keys are kept so that writing a name is a few dict
    look-ups and one slice.
    """

    __slots__ = ("_keys", "_offs", "text", "wire")
    text: str
    wire: bytes
    _keys: tuple[bytes, ...]
    _offs: tuple[int, ...]

    def __init__(self, text: str) -> None:
        wire = bytearray()
        offs: list[int] = []
        if text:
            for label in text.split("."):
                raw = label.encode("utf-8")
                if not raw:
                    raise DNSFormatError(f"empty label in name {text!r}")
                if len(raw) > 63:
                    raise DNSFormatError(f"label longer than 63 bytes in name {text!r}")
                offs.append(len(wire))
                wire.append(len(raw))
                wire += raw
        wire.append(0)
        if len(wire) > 255:
            raise DNSFormatError(f"name longer than 255 bytes: {text!r}")
        lowered = bytes(wire).lower()
        _set(self, "text", text)
        _set(self, "wire", bytes(wire))
        _set(self, "_offs", tuple(offs))
        _set(self, "_keys", tuple(lowered[off:] for off in offs))


class Record(_Frozen):
    """One resource record of class IN; the rdata shape depends on `rtype` (see the contract).

    The bytes after the owner name that do not depend on the message (type, class, TTL and, where
    no name is compressed, the whole rdata) are built on first render and kept, so a cached plan
    costs little more than a copy per request. A malformed rdata therefore raises at render time.
    """

    __slots__ = ("_kind", "_soa", "_tail", "name", "rdata", "rtype", "ttl")
    name: Name
    rtype: int
    ttl: int
    rdata: Any
    _kind: int
    _tail: bytes | None
    _soa: tuple[bytes, bytes]

    def __init__(self, name: Name, rtype: int, ttl: int, rdata: object) -> None:
        _set(self, "name", name)
        _set(self, "rtype", rtype)
        _set(self, "ttl", ttl)
        _set(self, "rdata", rdata)
        _set(self, "_kind", _KINDS.get(rtype, _FIXED))
        _set(self, "_tail", None)
        _set(self, "_soa", (b"", b""))

    def _prepare(self) -> bytes:
        """Check the rdata shape and build the message-independent bytes after the owner."""
        if not isinstance(self.name, Name):
            raise TypeError("record owner must be a Name")
        rdata: Any = self.rdata
        kind = self._kind
        try:
            if kind in (_ONE_NAME, _SOA):
                tail = _RR_HEAD.pack(self.rtype, CLASS_IN, self.ttl & _M32) + b"\0\0"
                if kind == _ONE_NAME:
                    if not isinstance(rdata, Name):
                        raise TypeError(f"type {self.rtype} rdata must be a Name")
                else:
                    mname, rname, serial, refresh, retry, expire, minimum = rdata
                    if not (isinstance(mname, Name) and isinstance(rname, Name)):
                        raise TypeError("SOA mname and rname must be Names")
                    _set(self, "_soa", (_U32.pack(serial & _M32), _SOA_TIMERS.pack(
                        refresh & _M32, retry & _M32, expire & _M32, minimum & _M32)))
            else:
                if kind == _SRV:
                    priority, weight, port, target = rdata
                    if not isinstance(target, Name):
                        raise TypeError("SRV target must be a Name")
                    body = _SRV_FIXED.pack(priority, weight, port) + target.wire
                elif self.rtype == TYPE_TXT:
                    if isinstance(rdata, (bytes, str)):
                        raise TypeError("TXT rdata must be a tuple of bytes")
                    parts = bytearray()
                    for chunk in rdata:
                        if not isinstance(chunk, bytes):
                            raise TypeError("TXT strings must be bytes")
                        if len(chunk) > 255:
                            raise ValueError("TXT string longer than 255 bytes")
                        parts.append(len(chunk))
                        parts += chunk
                    body = bytes(parts)
                else:
                    if not isinstance(rdata, bytes):
                        raise TypeError(f"type {self.rtype} rdata must be bytes")
                    if self.rtype == TYPE_A and len(rdata) != 4:
                        raise ValueError("A rdata must be 4 bytes")
                    if self.rtype == TYPE_AAAA and len(rdata) != 16:
                        raise ValueError("AAAA rdata must be 16 bytes")
                    body = rdata
                if len(body) > _M16:
                    raise ValueError("rdata longer than 65535 bytes")
                tail = _RR_FIXED.pack(self.rtype, CLASS_IN, self.ttl & _M32, len(body)) + body
        except struct.error as exc:
            raise ValueError(f"type {self.rtype} record: {exc}") from None
        _set(self, "_tail", tail)
        return tail


class Plan(_Frozen):
    """The resolver's decision for one question, rendered again for every request that asks it.

    `extras` is a pool for the additional section and `extra_of[i]` the pool indexes answer i
    needs, so that when answers are shuffled or cut the additional section follows them: no glue
    for an answer that was dropped, and no record written twice. `authority` and `extras` read
    as [] when not given; `extra_of` stays None.
    """

    __slots__ = ("answer_limit", "answers", "authoritative", "authority", "extra_of", "extras",
                 "rcode", "shuffle", "soa_now")
    rcode: int
    answers: list[Record]
    authority: list[Record]
    extras: list[Record]
    extra_of: list[tuple[int, ...]] | None
    shuffle: bool
    answer_limit: int
    soa_now: bool
    authoritative: bool

    def __init__(self, rcode: int, answers: list[Record], authority: list[Record] | None = None,
                 extras: list[Record] | None = None,
                 extra_of: list[tuple[int, ...]] | None = None, shuffle: bool = False,
                 answer_limit: int = 0, soa_now: bool = False,
                 authoritative: bool = True) -> None:
        if extra_of is not None and len(extra_of) != len(answers):
            raise ValueError("extra_of must have one entry per answer")
        _set(self, "rcode", rcode)
        _set(self, "answers", answers)
        _set(self, "authority", [] if authority is None else authority)
        _set(self, "extras", [] if extras is None else extras)
        _set(self, "extra_of", extra_of)
        _set(self, "shuffle", bool(shuffle))
        _set(self, "answer_limit", answer_limit)
        _set(self, "soa_now", bool(soa_now))
        _set(self, "authoritative", bool(authoritative))


class Rng:
    """xorshift64: a tiny generator with a fixed algorithm, so both twins shuffle identically
    for one seed (tests pin orders) while answer order still varies from request to request."""

    __slots__ = ("_state",)

    def __init__(self, seed: int | None = None) -> None:
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        state = seed & _M64
        self._state = state if state else 0x9E3779B97F4A7C15

    def next(self) -> int:
        """Advance the generator and return the new 64-bit state."""
        x = self._state
        x ^= (x << 13) & _M64
        x ^= x >> 7
        x ^= (x << 17) & _M64
        self._state = x
        return x

    def shuffle(self, items: list[_T]) -> None:
        """Fisher-Yates in place, drawing j = next() % (i + 1) from the top index down."""
        x = self._state
        for i in range(len(items) - 1, 0, -1):
            x ^= (x << 13) & _M64
            x ^= x >> 7
            x ^= (x << 17) & _M64
            j = x % (i + 1)
            items[i], items[j] = items[j], items[i]
        self._state = x


class Query:
    """What `parse_query` reads from a request: enough to key the cache, resolve and render.

    Header fields `id`, `opcode`, `rd`, `cd`, `qdcount`; the first question as `qname` (ASCII
    lowered presentation form, no trailing dot), `qtype`, `qclass`, `question` (its bytes with the
    name decompressed, original case) and `key` (`question` ASCII-lowered: the plan cache key);
    the OPT record as `edns`, `edns_size`, `edns_version`, `edns_do` and `ecs` (client-subnet
    option data or None). Read-only: built per packet, so plain properties over private slots.
    """

    __slots__ = ("_cd", "_ecs", "_edns", "_edns_do", "_edns_size", "_edns_version", "_id",
                 "_key", "_opcode", "_qclass", "_qdcount", "_qname", "_qtype", "_question", "_rd")

    def __init__(self, id: int, opcode: int, rd: bool, cd: bool, qdcount: int, qname: str,
                 qtype: int, qclass: int, question: bytes, key: bytes, edns: bool,
                 edns_size: int, edns_version: int, edns_do: bool, ecs: bytes | None) -> None:
        self._id = id
        self._opcode = opcode
        self._rd = rd
        self._cd = cd
        self._qdcount = qdcount
        self._qname = qname
        self._qtype = qtype
        self._qclass = qclass
        self._question = question
        self._key = key
        self._edns = edns
        self._edns_size = edns_size
        self._edns_version = edns_version
        self._edns_do = edns_do
        self._ecs = ecs

    @property
    def id(self) -> int:
        return self._id

    @property
    def opcode(self) -> int:
        return self._opcode

    @property
    def rd(self) -> bool:
        return self._rd

    @property
    def cd(self) -> bool:
        return self._cd

    @property
    def qdcount(self) -> int:
        return self._qdcount

    @property
    def qname(self) -> str:
        return self._qname

    @property
    def qtype(self) -> int:
        return self._qtype

    @property
    def qclass(self) -> int:
        return self._qclass

    @property
    def question(self) -> bytes:
        return self._question

    @property
    def key(self) -> bytes:
        return self._key

    @property
    def edns(self) -> bool:
        return self._edns

    @property
    def edns_size(self) -> int:
        return self._edns_size

    @property
    def edns_version(self) -> int:
        return self._edns_version

    @property
    def edns_do(self) -> bool:
        return self._edns_do

    @property
    def ecs(self) -> bytes | None:
        return self._ecs


def _skip_name(data: bytes, pos: int, size: int) -> int:
    """Return the offset after a name that is only skipped (its pointers are not followed)."""
    start = pos
    while True:
        if pos >= size:
            raise DNSFormatError("truncated name")
        length = data[pos]
        if length == 0:
            return pos + 1
        if length >= 0xC0:
            if pos + 2 > size:
                raise DNSFormatError("truncated name")
            return pos + 2
        if length > 63:
            raise DNSFormatError("bad label type")
        pos += length + 1
        if pos - start > 254:
            raise DNSFormatError("name too long")


def _label_text(label: bytes) -> str:
    """Presentation form of one (already lowered) label that holds bytes needing escapes."""
    return "".join([_ESCAPED[b] for b in label])


def _read_question(data: bytes, size: int) -> tuple[bytes, int, str]:
    """Read the first question at offset 12: (question bytes, offset after it, qname)."""
    pos = 12
    labels: list[bytes] = []
    jumps = 0
    resume = -1
    total = 1
    while True:
        if pos >= size:
            raise DNSFormatError("truncated name")
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length >= 0xC0:
            if pos + 2 > size:
                raise DNSFormatError("truncated name")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= pos:
                raise DNSFormatError("forward pointer")
            jumps += 1
            if jumps > _MAX_JUMPS:
                raise DNSFormatError("too many pointers")
            if resume < 0:
                resume = pos + 2
            pos = target
            continue
        if length > 63:
            raise DNSFormatError("bad label type")
        end = pos + 1 + length
        if end > size:
            raise DNSFormatError("truncated name")
        total += length + 1
        if total > 255:
            raise DNSFormatError("name too long")
        labels.append(data[pos + 1:end])
        pos = end
    if resume >= 0:
        pos = resume
    if pos + 4 > size:
        raise DNSFormatError("truncated question")
    if jumps:
        wire = bytearray()
        for label in labels:
            wire.append(len(label))
            wire += label
        wire.append(0)
        question = bytes(wire) + data[pos:pos + 4]
    else:
        question = data[12:pos + 4]
    joined = b".".join(labels).lower()
    if not b"".join(labels).translate(None, _PLAIN):
        qname = joined.decode("ascii")
    else:
        qname = ".".join([_label_text(label.lower()) for label in labels])
    return question, pos + 4, qname


def parse_query(data: bytes) -> Query:
    """Read a request; anything malformed raises DNSFormatError (the caller answers FORMERR).

    Only the first question is answered, like every deployed server; the other sections are
    walked to find the OPT record and to reject overruns, and bytes after them are ignored.
    """
    size = len(data)
    if size < 12:
        raise DNSFormatError("short header")
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if flags & _QR:
        raise DNSFormatError("not a query")
    if qdcount:
        question, pos, qname = _read_question(data, size)
        qtype, qclass = _U16X2.unpack_from(question, len(question) - 4)
        key = question[:-4].lower() + question[-4:]  # the name only: 0x41 is a type, too
        for _ in range(qdcount - 1):
            pos = _skip_name(data, pos, size) + 4
            if pos > size:
                raise DNSFormatError("truncated question")
    else:
        question = key = b""
        qname = ""
        qtype = qclass = 0
        pos = 12
    for _ in range(ancount + nscount):
        pos = _skip_name(data, pos, size) + 10
        if pos > size:
            raise DNSFormatError("truncated record")
        pos += _U16.unpack_from(data, pos - 2)[0]
        if pos > size:
            raise DNSFormatError("rdata overrun")
    edns = False
    edns_size = edns_version = 0
    edns_do = False
    ecs: bytes | None = None
    for _ in range(arcount):
        pos = _skip_name(data, pos, size) + 10
        if pos > size:
            raise DNSFormatError("truncated record")
        rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, pos - 10)
        end = pos + rdlen
        if end > size:
            raise DNSFormatError("rdata overrun")
        if rtype == TYPE_OPT and not edns:
            edns = True
            edns_size = rclass
            edns_version = (ttl >> 16) & 0xFF
            edns_do = bool(ttl & 0x8000)
            while pos < end:
                if pos + 4 > end:
                    raise DNSFormatError("truncated EDNS option")
                code, olen = _U16X2.unpack_from(data, pos)
                pos += 4 + olen
                if pos > end:
                    raise DNSFormatError("EDNS option overrun")
                if code == 8 and ecs is None:
                    ecs = data[pos - olen:pos]
        pos = end
    return Query(qid, (flags >> 11) & 0xF, bool(flags & _RD), bool(flags & _CD), qdcount, qname,
                 qtype, qclass, question, key, edns, edns_size, edns_version, edns_do, ecs)


class RenderOptions(_Frozen):
    """The agent's DNS settings that shape a response (Consul's dns_config): answers in a UDP
    reply to a client without EDNS (capped at MAX_UDP_ANSWERS), whether a UDP reply that lost
    answers sets TC (sending the client to TCP), name compression, and the RA flag."""

    __slots__ = ("compress", "enable_truncate", "recursion_available", "udp_answer_limit")
    udp_answer_limit: int
    enable_truncate: bool
    compress: bool
    recursion_available: bool

    def __init__(self, udp_answer_limit: int = 3, enable_truncate: bool = False,
                 compress: bool = True, recursion_available: bool = False) -> None:
        _set(self, "udp_answer_limit", udp_answer_limit)
        _set(self, "enable_truncate", bool(enable_truncate))
        _set(self, "compress", bool(compress))
        _set(self, "recursion_available", bool(recursion_available))


def _opt_record(query: Query) -> bytes:
    """The OPT record echoed to an EDNS client, with a client-subnet option at scope 0."""
    option = b""
    ecs = query._ecs
    if ecs is not None and len(ecs) >= 4:
        option = _U16X2.pack(8, len(ecs)) + ecs[:3] + b"\0" + ecs[4:]
    return b"\0" + _RR_FIXED.pack(TYPE_OPT, max(query._edns_size, 512),
                                  0x8000 if query._edns_do else 0, len(option)) + option


def _put_name(buf: bytearray, name: Name, table: dict[bytes, int] | None) -> None:
    """Append a compressible name: a pointer for the longest suffix already written."""
    if table is None:
        buf += name.wire
        return
    base = len(buf)
    for key, off in zip(name._keys, name._offs, strict=True):
        target = table.get(key)
        if target is not None:
            if off:
                buf += name.wire[:off]
            buf += _U16.pack(0xC000 | target)
            return
        if base + off < _PTR_LIMIT:
            table[key] = base + off
    buf += name.wire


def _put_record(buf: bytearray, rec: Record, table: dict[bytes, int] | None,
                serial: bytes | None) -> None:
    """Append one resource record."""
    tail = rec._tail
    if tail is None:
        tail = rec._prepare()
    _put_name(buf, rec.name, table)
    kind = rec._kind
    if kind == _FIXED:
        buf += tail
        return
    if kind == _SRV:
        if table is not None:
            target: Name = rec.rdata[3]
            start = len(buf) + 16
            for key, off in zip(target._keys, target._offs, strict=True):
                if start + off >= _PTR_LIMIT:
                    break
                table.setdefault(key, start + off)
        buf += tail
        return
    pos = len(buf)
    buf += tail
    rdata = rec.rdata
    if kind == _ONE_NAME:
        _put_name(buf, rdata, table)
    else:
        _put_name(buf, rdata[0], table)
        _put_name(buf, rdata[1], table)
        buf += rec._soa[0] if serial is None else serial
        buf += rec._soa[1]
    _U16.pack_into(buf, pos + 8, len(buf) - pos - 10)


def _pack(query: Query, plan: Plan, order: list[int], count: int, authority: bool,
          compress: bool, serial: bytes | None, opt: bytes, flags: int) -> bytearray:
    """Write a whole message with the first `count` answers of `order`."""
    question = query._question
    buf = bytearray(12)
    buf += question
    table: dict[bytes, int] | None = None
    if compress:
        table = {}
        if question:
            key = query._key
            stop = len(key) - 4
            pos = 0
            while key[pos]:
                table[key[pos:stop]] = 12 + pos
                pos += key[pos] + 1
    answers = plan.answers
    for k in range(count):
        _put_record(buf, answers[order[k]], table, serial)
    nscount = 0
    if authority:
        for rec in plan.authority:
            _put_record(buf, rec, table, serial)
        nscount = len(plan.authority)
    arcount = 0
    extra_of = plan.extra_of
    if extra_of is not None and count:
        extras = plan.extras
        seen: set[int] = set()
        for k in range(count):
            for index in extra_of[order[k]]:
                if index not in seen:
                    seen.add(index)
                    _put_record(buf, extras[index], table, serial)
        arcount = len(seen)
    if opt:
        buf += opt
        arcount += 1
    _HEADER.pack_into(buf, 0, query._id, flags, 1 if question else 0, count, nscount, arcount)
    return buf


def render(query: Query, plan: Plan, tcp: bool, opts: RenderOptions, rng: Rng) -> bytes:
    """Write the response to `query` from `plan` for one transport.

    Answers are shuffled, capped (plan limit everywhere, the UDP answer limit for clients
    without EDNS) and then cut by binary search until the message fits the transport; the
    additional section always follows the answers that were kept.
    """
    total = len(plan.answers)
    order = list(range(total))
    if plan.shuffle:
        rng.shuffle(order)
    edns = query._edns
    if tcp:
        max_size = MAX_TCP_SIZE
    elif edns:
        max_size = min(max(query._edns_size, MAX_UDP_PLAIN), MAX_TCP_SIZE)
    else:
        max_size = MAX_UDP_PLAIN
    cap = plan.answer_limit if plan.answer_limit > 0 else 0
    if not tcp and not edns:
        limit = opts.udp_answer_limit
        udp_cap = min(limit, MAX_UDP_ANSWERS) if limit > 0 else MAX_UDP_ANSWERS
        cap = min(cap, udp_cap) if cap else udp_cap
    if cap and total > cap:
        del order[cap:]
    count = len(order)
    serial = _U32.pack(int(time.time()) & _M32) if plan.soa_now else None
    opt = _opt_record(query) if edns else b""
    flags = (_QR | (query._opcode << 11) | (_AA if plan.authoritative else 0)
             | (_RD if query._rd else 0) | (_RA if opts.recursion_available else 0)
             | (_CD if query._cd else 0) | (plan.rcode & 0xF))
    compress = opts.compress
    out = _pack(query, plan, order, count, True, compress, serial, opt, flags)
    size = len(out)
    if size > max_size:
        # Start at the count that fits if every answer costs the same (the fixed part makes it
        # at most one too many): usually one or two packs settle it; else a binary search in
        # the side the first probe leaves.
        best = -1
        low, high = 0, count - 1
        est = min(count - 1, count * max_size // size)
        candidate = _pack(query, plan, order, est, True, compress, serial, opt, flags)
        if len(candidate) <= max_size:
            best, out = est, candidate
            low = est + 1
            if low < count:
                candidate = _pack(query, plan, order, low, True, compress, serial, opt, flags)
                if len(candidate) <= max_size:
                    best, out = low, candidate
                    low += 1
                else:
                    high = low - 1
        else:
            high = est - 1
        while low <= high:
            mid = (low + high) // 2
            candidate = _pack(query, plan, order, mid, True, compress, serial, opt, flags)
            if len(candidate) <= max_size:
                best, out = mid, candidate
                low = mid + 1
            else:
                high = mid - 1
        if best < 0:
            best = 0
            out = _pack(query, plan, order, 0, False, compress, serial, opt, flags)
        count = best
    if count < total and opts.enable_truncate and not tcp:
        out[2] |= 0x02
    return bytes(out)


def error_response(query: Query, rcode: int, opts: RenderOptions) -> bytes:
    """A response without records (REFUSED, SERVFAIL, NOTIMP...), echoing question and OPT."""
    flags = (_QR | (query._opcode << 11) | (_RD if query._rd else 0)
             | (_RA if opts.recursion_available else 0) | (_CD if query._cd else 0)
             | (rcode & 0xF))
    question = query._question
    head = _HEADER.pack(query._id, flags, 1 if question else 0, 0, 0, 1 if query._edns else 0)
    if query._edns:
        return head + question + _opt_record(query)
    return head + question


def formerr_response(data: bytes) -> bytes:
    """FORMERR for a request `parse_query` rejected; b"" (send nothing) when it has no usable
    header or is itself a response, so that two servers cannot bounce errors at each other."""
    if len(data) < 12:
        return b""
    qid, flags = _U16X2.unpack_from(data)
    if flags & _QR:
        return b""
    return _HEADER.pack(qid, _QR | (flags & 0x7800) | (flags & _RD) | RCODE_FORMERR, 0, 0, 0, 0)


class Responder:
    """Parse, look the plan up and render: what a DNS listener does per packet.

    Plans are cached under the case-folded question so that a hit never reaches the resolver.
    The cache is cleared wholesale when full: entries are cheap to rebuild and the resolver
    forgets keys as the catalog changes, so an LRU would cost more than it saves.
    """

    __slots__ = ("_cache", "_formerr", "_hits", "_max_plans", "_misses", "_opts", "_rng")

    def __init__(self, opts: RenderOptions, seed: int | None = None,
                 max_plans: int = 65536) -> None:
        self._opts = opts
        self._rng = Rng(seed)
        self._max_plans = max_plans
        self._cache: dict[bytes, Plan] = {}
        self._hits = 0
        self._misses = 0
        self._formerr = 0

    @property
    def opts(self) -> RenderOptions:
        return self._opts

    @property
    def rng(self) -> Rng:
        return self._rng

    @property
    def hits(self) -> int:
        return self._hits

    @property
    def misses(self) -> int:
        return self._misses

    @property
    def formerr(self) -> int:
        return self._formerr

    def lookup(self, data: bytes, tcp: bool) -> bytes | Query:
        """The response bytes (b"": send nothing), or the Query when no plan is cached."""
        try:
            query = parse_query(data)
        except DNSFormatError:
            self._formerr += 1
            return formerr_response(data)
        if not query._qdcount:
            return error_response(query, RCODE_REFUSED, self._opts)
        if query._opcode:
            return error_response(query, RCODE_NOTIMP, self._opts)
        plan = self._cache.get(query._key)
        if plan is None:
            self._misses += 1
            return query
        self._hits += 1
        return render(query, plan, tcp, self._opts, self._rng)

    def store(self, query: Query, plan: Plan) -> None:
        """Cache `plan` for the question of `query`."""
        if len(self._cache) >= self._max_plans:
            self._cache.clear()
        self._cache[query._key] = plan

    def forget(self, key: bytes) -> None:
        """Drop one cached plan, if present."""
        self._cache.pop(key, None)

    def clear(self) -> None:
        """Drop every cached plan."""
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)

    def plan_for(self, key: bytes) -> Plan | None:
        """The cached plan for a cache key, or None."""
        return self._cache.get(key)

    def render(self, query: Query, plan: Plan, tcp: bool) -> bytes:
        """`render` with this responder's options and generator."""
        return render(query, plan, tcp, self._opts, self._rng)


def drain_udp(sock: socket.socket, responder: Responder,
              miss: Callable[[Query, Any], object], budget: int = 256) -> int:
    """Serve datagrams from a non-blocking socket until it is empty or `budget` were read.

    Hits are answered right here; misses go to `miss(query, address)` for resolving. A failed
    send is ignored: UDP is lossy and the client retries. Returns the number of datagrams read.
    """
    recvfrom = sock.recvfrom
    sendto = sock.sendto
    lookup = responder.lookup
    count = 0
    while count < budget:
        try:
            data, addr = recvfrom(65535)
        except OSError:
            break  # empty (EAGAIN), or an error queued on the socket: the next wake-up retries
        count += 1
        result = lookup(data, False)
        if isinstance(result, Query):
            miss(result, addr)
        elif result:
            try:
                sendto(result, addr)
            except OSError:
                pass
    return count
