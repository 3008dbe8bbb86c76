# Query parsing for dns_wire.pyx (included there): from raw bytes to a QInfo struct in C, and
# the Query object that wraps one for the miss path and the public API.


cdef int _fail(QInfo* q, const char* reason) noexcept nogil:
    q.err = reason
    return -1


cdef int _read_question_name(const uint8_t* p, Py_ssize_t n, Py_ssize_t* pos,
                             QInfo* q) noexcept nogil:
    """Decompress the first question's name into q.question; pointers must go strictly back."""
    cdef Py_ssize_t i = pos[0], resume = -1, target
    cdef int jumps = 0, out = 0, ln
    cdef uint8_t b
    while True:
        if i >= n:
            return _fail(q, "name overruns the message")
        b = p[i]
        if b >= 0xC0:
            if i + 1 >= n:
                return _fail(q, "name pointer overruns the message")
            target = ((b & 0x3F) << 8) | p[i + 1]
            if target >= i:
                return _fail(q, "name pointer does not point backwards")
            jumps += 1
            if jumps > MAX_JUMPS:
                return _fail(q, "too many name pointers")
            if resume < 0:
                resume = i + 2
            i = target
            continue
        if b & 0xC0:
            return _fail(q, "unsupported label type")
        if b == 0:
            q.question[out] = 0
            out += 1
            pos[0] = resume if resume >= 0 else i + 1
            q.nlen = out
            return 0
        ln = b
        if i + 1 + ln > n:
            return _fail(q, "label overruns the message")
        if out + 1 + ln + 1 > MAX_NAME:
            return _fail(q, "name longer than 255 bytes")
        memcpy(q.question + out, p + i, ln + 1)
        out += 1 + ln
        i += 1 + ln


cdef inline Py_ssize_t _skip_name(const uint8_t* p, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    """Step over a name without following pointers; -1 when it overruns or is malformed."""
    cdef uint8_t b
    cdef Py_ssize_t start = i
    while True:
        if i >= n:
            return -1
        b = p[i]
        if b >= 0xC0:
            return i + 2 if i + 2 <= n else -1
        if b & 0xC0:
            return -1
        if b == 0:
            return i + 1
        i += 1 + b
        if i - start > 254:
            return -1


cdef int _parse(const uint8_t* p, Py_ssize_t n, QInfo* q) noexcept nogil:
    """Fill q from a query message; -1 with q.err set when the message is malformed."""
    cdef uint16_t flags, ancount, nscount, arcount, rtype, rdlen, olen
    cdef uint32_t ttl
    cdef Py_ssize_t pos = 12, i, end, opos
    cdef int k
    q.err = NULL
    q.edns = False
    q.edns_size = 0
    q.edns_version = 0
    q.edns_do = False
    q.ecs = NULL
    q.ecs_len = 0
    q.nlen = 0
    q.qlen = 0
    q.qtype = 0
    q.qclass = 0
    if n < 12:
        return _fail(q, "short header")
    flags = _get16(p + 2)
    if flags & 0x8000:
        return _fail(q, "not a query")
    q.id = _get16(p)
    q.opcode = (flags >> 11) & 0xF
    q.rd = (flags & 0x0100) != 0
    q.cd = (flags & 0x0010) != 0
    q.qdcount = _get16(p + 4)
    ancount = _get16(p + 6)
    nscount = _get16(p + 8)
    arcount = _get16(p + 10)
    if q.qdcount:
        if _read_question_name(p, n, &pos, q) < 0:
            return -1
        if pos + 4 > n:
            return _fail(q, "question overruns the message")
        memcpy(q.question + q.nlen, p + pos, 4)
        q.qtype = _get16(p + pos)
        q.qclass = _get16(p + pos + 2)
        q.qlen = q.nlen + 4
        pos += 4
        # Only the name is lowered: type and class bytes such as 0x41 are numbers, and lowering
        # them would give type 65 and type 97 one cache entry.
        for k in range(q.nlen):
            q.key[k] = _lower(q.question[k])
        memcpy(q.key + q.nlen, q.question + q.nlen, 4)
    for i in range(<Py_ssize_t>q.qdcount - 1):
        pos = _skip_name(p, n, pos)
        if pos < 0 or pos + 4 > n:
            return _fail(q, "question overruns the message")
        pos += 4
    for i in range(<Py_ssize_t>ancount + nscount + arcount):
        pos = _skip_name(p, n, pos)
        if pos < 0 or pos + 10 > n:
            return _fail(q, "record overruns the message")
        rtype = _get16(p + pos)
        rdlen = _get16(p + pos + 8)
        end = pos + 10 + rdlen
        if end > n:
            return _fail(q, "rdata overruns the message")
        if rtype == C_OPT and i >= <Py_ssize_t>ancount + nscount and not q.edns:
            q.edns = True
            q.edns_size = _get16(p + pos + 2)
            ttl = (<uint32_t>_get16(p + pos + 4) << 16) | _get16(p + pos + 6)
            q.edns_version = (ttl >> 16) & 0xFF
            q.edns_do = (ttl & 0x8000) != 0
            opos = pos + 10
            while opos < end:
                if opos + 4 > end:
                    return _fail(q, "EDNS option overruns the OPT record")
                olen = _get16(p + opos + 2)
                if opos + 4 + olen > end:
                    return _fail(q, "EDNS option overruns the OPT record")
                if _get16(p + opos) == 8 and q.ecs == NULL:
                    q.ecs = p + opos + 4
                    q.ecs_len = olen
                opos += 4 + olen
        pos = end
    return 0


cdef str _presentation(const uint8_t* name):
    """Presentation text of a (lowered) wire name: \\DDD for unprintables, \\. and \\\\ escaped."""
    cdef char buf[MAX_NAME * 4 + 1]
    cdef Py_ssize_t o = 0
    cdef int i = 0, j, ln
    cdef uint8_t c
    while name[i] != 0:
        ln = name[i]
        if i:
            buf[o] = 46
            o += 1
        for j in range(i + 1, i + 1 + ln):
            c = name[j]
            if c == 46 or c == 92:
                buf[o] = 92
                buf[o + 1] = <char>c
                o += 2
            elif c < 0x21 or c > 0x7E:
                buf[o] = 92
                buf[o + 1] = <char>(48 + c // 100)
                buf[o + 2] = <char>(48 + (c // 10) % 10)
                buf[o + 3] = <char>(48 + c % 10)
                o += 4
            else:
                buf[o] = <char>c
                o += 1
        i += 1 + ln
    return buf[:o].decode("ascii")


cdef class Query:
    """A parsed query; attributes read straight from the C struct the parser filled."""

    def __init__(self, id: int = 0, opcode: int = 0, bint rd=False, bint cd=False,
                 qdcount: int = 1, qname: str = "", qtype: int = 0, qclass: int = 0,
                 bytes question=b"", key: bytes | None = None, bint edns=False,
                 edns_size: int = 0, edns_version: int = 0, bint edns_do=False,
                 ecs: bytes | None = None) -> None:
        cdef Py_ssize_t pos = 0, n = len(question)
        cdef int k
        self.q.id = id
        self.q.opcode = opcode
        self.q.rd = rd
        self.q.cd = cd
        self.q.qdcount = qdcount
        self.q.qtype = qtype
        self.q.qclass = qclass
        self.q.nlen = 0
        self.q.qlen = 0
        if n:
            if _read_question_name(<const uint8_t*>PyBytes_AS_STRING(question), n, &pos,
                                   &self.q) < 0 or pos + 4 != n:
                raise ValueError("question must be an uncompressed name + qtype + qclass")
            memcpy(self.q.question, PyBytes_AS_STRING(question), n)
            self.q.qlen = <int>n
            for k in range(self.q.nlen):
                self.q.key[k] = _lower(self.q.question[k])
            memcpy(self.q.key + self.q.nlen, self.q.question + self.q.nlen, 4)
        self.q.edns = edns
        self.q.edns_size = edns_size
        self.q.edns_version = edns_version
        self.q.edns_do = edns_do
        self._question = question
        self._key = key
        self._qname = qname
        self._set_ecs(ecs)

    cdef void _set_ecs(self, bytes ecs) noexcept:
        self._ecs = ecs
        self.q.ecs = NULL
        self.q.ecs_len = 0
        if ecs is not None:
            self.q.ecs = <const uint8_t*>PyBytes_AS_STRING(ecs)
            self.q.ecs_len = PyBytes_GET_SIZE(ecs)

    @property
    def id(self) -> int:
        return self.q.id

    @property
    def opcode(self) -> int:
        return self.q.opcode

    @property
    def rd(self) -> bool:
        return self.q.rd

    @property
    def cd(self) -> bool:
        return self.q.cd

    @property
    def qdcount(self) -> int:
        return self.q.qdcount

    @property
    def qname(self) -> str:
        if self._qname is None:
            self._qname = _presentation(self.q.key) if self.q.qlen else ""
        return self._qname

    @property
    def qtype(self) -> int:
        return self.q.qtype

    @property
    def qclass(self) -> int:
        return self.q.qclass

    @property
    def question(self) -> bytes:
        if self._question is None:
            self._question = PyBytes_FromStringAndSize(<char*>self.q.question, self.q.qlen)
        return self._question

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = PyBytes_FromStringAndSize(<char*>self.q.key, self.q.qlen)
        return self._key

    @property
    def edns(self) -> bool:
        return self.q.edns

    @property
    def edns_size(self) -> int:
        return self.q.edns_size

    @property
    def edns_version(self) -> int:
        return self.q.edns_version

    @property
    def edns_do(self) -> bool:
        return self.q.edns_do

    @property
    def ecs(self) -> bytes | None:
        return self._ecs

    def __repr__(self) -> str:
        return (f"Query(id={self.q.id}, opcode={self.q.opcode}, qname={self.qname!r}, "
                f"qtype={self.q.qtype}, qclass={self.q.qclass}, edns={self.q.edns})")


cdef Query _query_from(QInfo* q, bytes key):
    """The miss path's Query: the struct copied, the client-subnet data moved into bytes."""
    cdef Query query = Query.__new__(Query)
    memcpy(&query.q, q, sizeof(QInfo))
    query._key = key
    query._set_ecs(None if q.ecs == NULL
                   else PyBytes_FromStringAndSize(<const char*>q.ecs, q.ecs_len))
    return query


def parse_query(data: bytes) -> Query:
    """Parse a query message; DNSFormatError (with a short reason) when it is malformed."""
    cdef bytes raw = data if type(data) is bytes else bytes(data)
    cdef QInfo q
    if _parse(<const uint8_t*>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), &q) < 0:
        raise DNSFormatError(q.err.decode("ascii"))
    return _query_from(&q, None)
