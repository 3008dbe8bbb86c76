# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of proconsul/dns/wire_py.py: DNS queries in, answers out.

Every DNS packet crosses this module, and most are answered from the plan cache, so the cache-hit
path stays in C: the header, question and OPT record are parsed into a C struct, the only Python
objects made are the cache key and the answer bytes, the answer is written into one reused C
buffer, and name compression uses a C hash table keyed by suffix hashes that each Name computes
once. drain_udp moves datagrams with recvmmsg/sendmmsg so a burst costs two system calls per
batch instead of two per packet. Names, signatures and bytes are those of the pure twin (its
contract is notes/dns-wire-spec.md); the selector proconsul/dns/wire.py picks one and the twin
tests hold them equal.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from libc.errno cimport EINTR, errno
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset
from libc.time cimport time

import os

from proconsul.errors import DNSFormatError

__all__ = [
    "CLASS_ANY", "CLASS_IN", "MAX_TCP_SIZE", "MAX_UDP_ANSWERS", "MAX_UDP_PLAIN", "RCODE_FORMERR",
    "RCODE_NOERROR", "RCODE_NOTIMP", "RCODE_NXDOMAIN", "RCODE_REFUSED", "RCODE_SERVFAIL",
    "TYPE_A", "TYPE_AAAA", "TYPE_ANY", "TYPE_AXFR", "TYPE_CNAME", "TYPE_IXFR", "TYPE_NS",
    "TYPE_OPT", "TYPE_PTR", "TYPE_SOA", "TYPE_SRV", "TYPE_TXT", "Name", "Plan", "Query",
    "Record", "RenderOptions", "Responder", "Rng", "drain_udp", "error_response",
    "formerr_response", "parse_query", "render",
]

cdef enum:
    C_A = 1
    C_NS = 2
    C_CNAME = 5
    C_SOA = 6
    C_PTR = 12
    C_TXT = 16
    C_AAAA = 28
    C_SRV = 33
    C_OPT = 41
    C_NOTIMP = 4
    C_REFUSED = 5
    C_UDP_PLAIN = 512
    C_TCP_SIZE = 65523
    C_UDP_ANSWERS = 8
    PTR_LIMIT = 0x4000      # compression pointers reach 14 bits
    MAX_JUMPS = 128
    RECV_SIZE = 65535
    BATCH = 32              # datagrams per recvmmsg/sendmmsg call
    STACK_ANSWERS = 128

cdef enum:
    K_RAW = 0               # rdata fixed at first render
    K_NAME = 1              # NS, CNAME, PTR: one compressible name
    K_SRV = 2               # 6 fixed bytes + an uncompressed target that feeds the table
    K_SOA = 3               # two compressible names + 20 fixed bytes

TYPE_A = C_A
TYPE_NS = C_NS
TYPE_CNAME = C_CNAME
TYPE_SOA = C_SOA
TYPE_PTR = C_PTR
TYPE_TXT = C_TXT
TYPE_AAAA = C_AAAA
TYPE_SRV = C_SRV
TYPE_OPT = C_OPT
TYPE_IXFR = 251
TYPE_AXFR = 252
TYPE_ANY = 255
CLASS_IN = 1
CLASS_ANY = 255
RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = C_NOTIMP
RCODE_REFUSED = C_REFUSED
MAX_UDP_PLAIN = C_UDP_PLAIN
MAX_TCP_SIZE = C_TCP_SIZE
MAX_UDP_ANSWERS = C_UDP_ANSWERS

cdef object _U16 = 0xFFFF
cdef object _U32 = 0xFFFFFFFF
cdef object _U64 = 0xFFFFFFFFFFFFFFFF
cdef uint64_t FNV_BASIS = 14695981039346656037ULL
cdef uint64_t FNV_PRIME = 1099511628211ULL


cdef inline uint8_t _lower(uint8_t c) noexcept nogil:
    return c + 32 if 65 <= c <= 90 else c


cdef inline void _put16(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 8)
    p[1] = <uint8_t>v


cdef inline void _put32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 24)
    p[1] = <uint8_t>(v >> 16)
    p[2] = <uint8_t>(v >> 8)
    p[3] = <uint8_t>v


cdef inline uint16_t _get16(const uint8_t* p) noexcept nogil:
    return <uint16_t>((p[0] << 8) | p[1])


cdef int _suffix_hashes(const uint8_t* lwire, int nlab, const uint8_t* off,
                        uint64_t* out) noexcept nogil:
    """Chain FNV-1a from the last label backwards, so equal suffixes hash equal in O(length)."""
    cdef uint64_t h = FNV_BASIS
    cdef int i, j, ln
    for i in range(nlab - 1, -1, -1):
        ln = lwire[off[i]]
        for j in range(ln + 1):
            h = (h ^ lwire[off[i] + j]) * FNV_PRIME
        out[i] = h
    return 0


cdef inline object _u(object value, object mask, str what):
    """A Python int checked against an unsigned range: caller bugs fail loudly, never wrap."""
    value = int(value)
    if value < 0 or value > mask:
        raise ValueError(f"{what} out of range: {value}")
    return value


# ---------------------------------------------------------------- Name, Record, Plan, Rng


cdef class Name:
    """A domain name with its wire form and compression keys computed once, at construction.

    Plans are rendered many times, so per-render work on a name is only a hash-table probe per
    label; the keys are the ASCII-lowered wire suffixes (case-insensitive compression).
    """

    def __cinit__(self) -> None:
        self._off = NULL
        self._hash = NULL
        self._n = 0

    def __dealloc__(self) -> None:
        PyMem_Free(self._off)
        PyMem_Free(self._hash)

    def __init__(self, str text) -> None:
        cdef bytes encoded = text.encode("utf-8")
        cdef list labels = encoded.split(b".") if encoded else []
        cdef bytes label
        cdef Py_ssize_t total = 1, at = 0
        cdef int i
        for label in labels:
            if not label:
                raise DNSFormatError(f"empty label in {text!r}")
            if len(label) > 63:
                raise DNSFormatError(f"label longer than 63 bytes in {text!r}")
            total += 1 + len(label)
        if total > MAX_NAME:
            raise DNSFormatError(f"name longer than 255 bytes: {text!r}")
        PyMem_Free(self._off)
        PyMem_Free(self._hash)
        self._off = NULL
        self._hash = NULL
        self._n = len(labels)
        self._off = <uint8_t*>PyMem_Malloc(self._n + 1)
        self._hash = <uint64_t*>PyMem_Malloc((self._n + 1) * sizeof(uint64_t))
        if self._off == NULL or self._hash == NULL:
            raise MemoryError()
        parts = []
        for i in range(self._n):
            label = labels[i]
            self._off[i] = <uint8_t>at
            parts.append(bytes((len(label),)))
            parts.append(label)
            at += 1 + len(label)
        parts.append(b"\x00")
        self.text = text
        self.wire = b"".join(parts)
        self._lwire = self.wire.lower()
        _suffix_hashes(<const uint8_t*>PyBytes_AS_STRING(self._lwire), self._n, self._off,
                       self._hash)

    def __repr__(self) -> str:
        return f"Name({self.text!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Name):
            return NotImplemented
        return self._lwire == (<Name>other)._lwire

    def __hash__(self) -> int:
        return hash(self._lwire)


cdef class Record:
    """One resource record; its fixed bytes are encoded at the first render and then reused.

    Shape errors surface at render time (as in the pure twin), so building a Plan never fails
    on rdata that would only matter once it is answered.
    """

    def __init__(self, Name name not None, rtype: int, ttl: int, rdata: object) -> None:
        self.name = name
        self.rtype = rtype
        self.ttl = ttl
        self.rdata = rdata
        self._ready = False

    def __repr__(self) -> str:
        return f"Record({self.name!r}, {self.rtype!r}, {self.ttl!r}, {self.rdata!r})"

    cdef int _prepare(self) except -1:
        cdef object rtype = _u(self.rtype, _U16, "rtype")
        cdef int t = rtype
        cdef uint32_t ttl = <uint32_t>(int(self.ttl) & _U32)
        cdef object rd = self.rdata
        _put16(self._head, t)
        _put16(self._head + 2, 1)
        _put32(self._head + 4, ttl)
        self._n1 = None
        self._n2 = None
        if t == C_NS or t == C_CNAME or t == C_PTR:
            if not isinstance(rd, Name):
                raise TypeError(f"rdata of type {t} must be a Name, not {type(rd).__name__}")
            self._kind = K_NAME
            self._n1 = <Name>rd
        elif t == C_SRV:
            priority, weight, port, target = rd
            if not isinstance(target, Name):
                raise TypeError("SRV target must be a Name")
            self._kind = K_SRV
            self._n2 = <Name>target
            self._raw = (_u(priority, _U16, "SRV priority").to_bytes(2, "big")
                         + _u(weight, _U16, "SRV weight").to_bytes(2, "big")
                         + _u(port, _U16, "SRV port").to_bytes(2, "big"))
        elif t == C_SOA:
            mname, rname, serial, refresh, retry, expire, minimum = rd
            if not isinstance(mname, Name) or not isinstance(rname, Name):
                raise TypeError("SOA mname and rname must be Names")
            self._kind = K_SOA
            self._n1 = <Name>mname
            self._n2 = <Name>rname
            self._raw = b"".join([(int(v) & _U32).to_bytes(4, "big")
                                  for v in (serial, refresh, retry, expire, minimum)])
        elif t == C_TXT:
            if isinstance(rd, (bytes, str)):
                raise TypeError("TXT rdata must be a tuple of bytes")
            parts = []
            for chunk in rd:
                if not isinstance(chunk, bytes):
                    raise TypeError("TXT strings must be bytes")
                if len(chunk) > 255:
                    raise ValueError("TXT string longer than 255 bytes")
                parts.append(bytes((len(chunk),)))
                parts.append(chunk)
            self._kind = K_RAW
            self._raw = b"".join(parts)
        else:
            if not isinstance(rd, bytes):
                raise TypeError(f"rdata of type {t} must be bytes, not {type(rd).__name__}")
            self._kind = K_RAW
            self._raw = rd
            if t == C_A and len(self._raw) != 4:
                raise ValueError("A rdata must be 4 bytes")
            if t == C_AAAA and len(self._raw) != 16:
                raise ValueError("AAAA rdata must be 16 bytes")
        if self._kind == K_RAW and len(self._raw) > 0xFFFF:
            raise ValueError("rdata longer than 65535 bytes")
        self._ready = True
        return 0


cdef tuple _records(object items, str what):
    cdef tuple out = tuple(items) if items is not None else ()
    for item in out:
        if not isinstance(item, Record):
            raise TypeError(f"{what} must hold Records, not {type(item).__name__}")
    return out


cdef class Plan:
    """What the resolver decided for one question; immutable, cached and rendered many times."""

    def __cinit__(self) -> None:
        self._xo = NULL
        self._xo_at = NULL

    def __dealloc__(self) -> None:
        PyMem_Free(self._xo)
        PyMem_Free(self._xo_at)

    def __init__(self, rcode: int, answers: list, authority: list | None = None,
                 extras: list | None = None, extra_of: list | None = None,
                 bint shuffle=False, answer_limit: int = 0, bint soa_now=False,
                 bint authoritative=True) -> None:
        cdef Py_ssize_t i, total = 0, nans
        cdef int* xo
        cdef Py_ssize_t* xo_at
        self.rcode = rcode
        self.answers = answers
        self.authority = [] if authority is None else authority
        self.extras = [] if extras is None else extras
        self.extra_of = extra_of
        self.shuffle = shuffle
        self.answer_limit = answer_limit
        self.soa_now = soa_now
        self.authoritative = authoritative
        self._rcode = <int>(int(rcode) & 0xF)
        self._limit = max(<Py_ssize_t>int(answer_limit), 0)
        self._ans = _records(answers, "answers")
        self._auth = _records(authority, "authority")
        self._ext = _records(extras, "extras")
        self._ready = False
        nans = len(self._ans)
        if extra_of is None:
            return
        groups = [tuple(group) for group in extra_of]
        if len(groups) != nans:
            raise ValueError("extra_of must have one entry per answer")
        for group in groups:
            total += len(group)
        xo = <int*>PyMem_Malloc((total + 1) * sizeof(int))
        xo_at = <Py_ssize_t*>PyMem_Malloc((nans + 1) * sizeof(Py_ssize_t))
        if xo == NULL or xo_at == NULL:
            PyMem_Free(xo)
            PyMem_Free(xo_at)
            raise MemoryError()
        PyMem_Free(self._xo)
        PyMem_Free(self._xo_at)
        self._xo = xo
        self._xo_at = xo_at
        total = 0
        for i in range(nans):
            xo_at[i] = total
            for index in groups[i]:
                if not 0 <= index < len(self._ext):
                    raise ValueError(f"extra_of[{i}] refers to a missing extra: {index}")
                xo[total] = index
                total += 1
        xo_at[nans] = total

    def __repr__(self) -> str:
        return (f"Plan(rcode={self.rcode!r}, answers={len(self._ans)}, "
                f"authority={len(self._auth)}, extras={len(self._ext)})")

    cdef int _prepare(self) except -1:
        cdef Record rec
        for group in (self._ans, self._auth, self._ext):
            for rec in group:
                if not rec._ready:
                    rec._prepare()
        self._ready = True
        return 0


cdef class Rng:
    """xorshift64: the answer shuffle needs to be cheap and reproducible, not cryptographic."""

    def __init__(self, seed: int | None = None) -> None:
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        cdef uint64_t x = <uint64_t>(seed & _U64)
        self._x = x if x != 0 else 0x9E3779B97F4A7C15ULL

    cdef uint64_t _next(self) noexcept:
        cdef uint64_t x = self._x
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        self._x = x
        return x

    def next(self) -> int:
        """The next 64-bit value of the sequence."""
        return self._next()

    def shuffle(self, items: list) -> None:
        """Fisher-Yates in place, drawing j = next() % (i + 1) from the top index down."""
        cdef Py_ssize_t i, j
        for i in range(len(items) - 1, 0, -1):
            j = <Py_ssize_t>(self._next() % <uint64_t>(i + 1))
            items[i], items[j] = items[j], items[i]

    cdef void _shuffle_idx(self, int* items, Py_ssize_t n) noexcept:
        cdef Py_ssize_t i, j
        cdef int tmp
        for i in range(n - 1, 0, -1):
            j = <Py_ssize_t>(self._next() % <uint64_t>(i + 1))
            tmp = items[i]
            items[i] = items[j]
            items[j] = tmp


cdef class RenderOptions:
    """The agent's dns_config knobs that shape every answer."""

    def __init__(self, udp_answer_limit: int = 3, bint enable_truncate=False,
                 bint compress=True, bint recursion_available=False) -> None:
        self.udp_answer_limit = udp_answer_limit
        self.enable_truncate = enable_truncate
        self.compress = compress
        self.recursion_available = recursion_available

    def __repr__(self) -> str:
        return (f"RenderOptions(udp_answer_limit={self.udp_answer_limit}, "
                f"enable_truncate={self.enable_truncate}, compress={self.compress}, "
                f"recursion_available={self.recursion_available})")


include "dns_wire_parse.pxi"
include "dns_wire_render.pxi"
include "dns_wire_serve.pxi"
