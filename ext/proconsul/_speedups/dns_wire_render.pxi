# Rendering for dns_wire.pyx (included there): one reused C output buffer and one reused
# compression hash table, both module-level because rendering runs no Python code between
# starting a message and copying it out (the module is single-threaded and not re-entered).

cdef struct Slot:
    uint64_t hash
    const uint8_t* key          # lowered wire suffix, owned by a Name or the QInfo being rendered
    uint32_t gen                # the slot is live only when this equals _gen
    uint16_t klen
    uint16_t offset


cdef uint8_t* _buf = NULL
cdef Py_ssize_t _cap = 0
cdef Py_ssize_t _len = 0
cdef bint _compress = False
cdef Slot* _tab = NULL
cdef size_t _tab_mask = 0
cdef size_t _tab_count = 0
cdef uint32_t _gen = 1


cdef int _reserve(Py_ssize_t extra) except -1:
    global _buf, _cap
    cdef Py_ssize_t want = _len + extra, cap = _cap if _cap else 4096
    cdef uint8_t* grown
    if want <= _cap:
        return 0
    while cap < want:
        cap *= 2
    grown = <uint8_t*>PyMem_Realloc(_buf, cap)
    if grown == NULL:
        raise MemoryError()
    _buf = grown
    _cap = cap
    return 0


cdef int _tab_resize(size_t slots) except -1:
    """Rehash the live entries into a table of `slots` (a power of two)."""
    global _tab, _tab_mask
    cdef Slot* old = _tab
    cdef size_t old_slots = _tab_mask + 1 if old != NULL else 0, i, j
    cdef Slot* fresh = <Slot*>PyMem_Malloc(slots * sizeof(Slot))
    if fresh == NULL:
        raise MemoryError()
    memset(fresh, 0, slots * sizeof(Slot))
    for i in range(old_slots):
        if old[i].gen == _gen:
            j = old[i].hash & (slots - 1)
            while fresh[j].gen == _gen:
                j = (j + 1) & (slots - 1)
            fresh[j] = old[i]
    PyMem_Free(old)
    _tab = fresh
    _tab_mask = slots - 1
    return 0


cdef int _tab_reset() except -1:
    """Empty the table in O(1) by moving to a new generation."""
    global _gen, _tab_count
    if _tab == NULL:
        _tab_resize(256)
    _gen += 1
    if _gen == 0:
        memset(_tab, 0, (_tab_mask + 1) * sizeof(Slot))
        _gen = 1
    _tab_count = 0
    return 0


cdef inline int _tab_find(const uint8_t* key, int klen, uint64_t h) noexcept:
    cdef size_t i = h & _tab_mask
    cdef Slot* s
    while True:
        s = &_tab[i]
        if s.gen != _gen:
            return -1
        if s.hash == h and s.klen == klen and memcmp(s.key, key, klen) == 0:
            return s.offset
        i = (i + 1) & _tab_mask


cdef inline int _tab_add(const uint8_t* key, int klen, uint64_t h, Py_ssize_t offset) except -1:
    """Enter a key known to be absent."""
    global _tab_count
    cdef size_t i
    if (_tab_count + 1) * 2 > _tab_mask + 1:
        _tab_resize((_tab_mask + 1) * 2)
    i = h & _tab_mask
    while _tab[i].gen == _gen:
        i = (i + 1) & _tab_mask
    _tab[i].hash = h
    _tab[i].key = key
    _tab[i].klen = <uint16_t>klen
    _tab[i].offset = <uint16_t>offset
    _tab[i].gen = _gen
    _tab_count += 1
    return 0


cdef int _put_name(Name name, bint compressible) except -1:
    """Write a name at _len; the caller reserved room. Compressible names end in a pointer to
    the longest suffix already written; others (SRV targets) are written whole but still enter
    their suffixes so later owners can point at them."""
    global _len
    cdef const uint8_t* wire = <const uint8_t*>PyBytes_AS_STRING(name.wire)
    cdef const uint8_t* lwire
    cdef Py_ssize_t wlen = PyBytes_GET_SIZE(name.wire), base = _len, at
    cdef int i, found, off
    if _compress and name._n:
        lwire = <const uint8_t*>PyBytes_AS_STRING(name._lwire)
        for i in range(name._n):
            off = name._off[i]
            found = _tab_find(lwire + off, <int>(wlen - off), name._hash[i])
            if found >= 0:
                if compressible:
                    memcpy(_buf + base, wire, off)
                    _put16(_buf + base + off, 0xC000 | found)
                    _len = base + off + 2
                    return 0
                continue
            at = base + off
            if at < PTR_LIMIT:
                _tab_add(lwire + off, <int>(wlen - off), name._hash[i], at)
    memcpy(_buf + base, wire, wlen)
    _len = base + wlen
    return 0


cdef int _put_record(Record rec, bint soa_now, uint32_t serial) except -1:
    global _len
    cdef Py_ssize_t rdpos, raw_len = PyBytes_GET_SIZE(rec._raw)
    _reserve(3 * MAX_NAME + 40 + raw_len)
    _put_name(rec.name, True)
    memcpy(_buf + _len, rec._head, 8)
    rdpos = _len + 8
    _len += 10
    if rec._kind == K_NAME:
        _put_name(rec._n1, True)
    elif rec._kind == K_SRV:
        memcpy(_buf + _len, PyBytes_AS_STRING(rec._raw), 6)
        _len += 6
        _put_name(rec._n2, False)
    elif rec._kind == K_SOA:
        _put_name(rec._n1, True)
        _put_name(rec._n2, True)
        memcpy(_buf + _len, PyBytes_AS_STRING(rec._raw), 20)
        if soa_now:
            _put32(_buf + _len, serial)
        _len += 20
    else:
        memcpy(_buf + _len, PyBytes_AS_STRING(rec._raw), raw_len)
        _len += raw_len
    _put16(_buf + rdpos, <uint32_t>(_len - rdpos - 2))
    return 0


cdef int _put_opt(QInfo* q) except -1:
    """The OPT record echoed to an EDNS client: its size, DO bit, and ECS with scope 0."""
    global _len
    cdef bint ecs = q.ecs != NULL and q.ecs_len >= 4
    cdef Py_ssize_t olen = 4 + q.ecs_len if ecs else 0
    cdef uint8_t* p
    _reserve(11 + olen)
    p = _buf + _len
    p[0] = 0
    _put16(p + 1, C_OPT)
    _put16(p + 3, q.edns_size if q.edns_size > 512 else 512)
    _put32(p + 5, 0x8000 if q.edns_do else 0)
    _put16(p + 9, <uint32_t>olen)
    if ecs:
        _put16(p + 11, 8)
        _put16(p + 13, <uint32_t>q.ecs_len)
        memcpy(p + 15, q.ecs, q.ecs_len)
        p[15 + 3] = 0
    _len += 11 + olen
    return 0


cdef inline void _put_header(QInfo* q, uint32_t flags, uint32_t an, uint32_t ns,
                             uint32_t ar) noexcept:
    _put16(_buf, q.id)
    _put16(_buf + 2, flags)
    _put16(_buf + 4, 1 if q.qlen else 0)
    _put16(_buf + 6, an)
    _put16(_buf + 8, ns)
    _put16(_buf + 10, ar)


cdef struct Pack:
    QInfo* q
    const int* order            # answer indexes after shuffle and cap
    uint8_t* seen               # per extras index: written in this pack
    Py_ssize_t nextras
    uint32_t flags
    uint32_t serial
    bint soa_now
    int qn                      # question labels, their offsets and suffix hashes
    uint8_t qoff[128]
    uint64_t qhash[128]


cdef Py_ssize_t _pack(Pack* c, Plan plan, Py_ssize_t count, bint authority) except -1:
    """Write the whole message with the first `count` answers into _buf; its length."""
    global _len
    cdef QInfo* q = c.q
    cdef Py_ssize_t k, j, ns = 0, ar = 0
    cdef int i, index
    cdef Record rec
    _len = 0
    _reserve(12 + q.qlen)
    memcpy(_buf + 12, q.question, q.qlen)
    _len = 12 + q.qlen
    if _compress:
        _tab_reset()
        for i in range(c.qn):
            _tab_add(q.key + c.qoff[i], q.nlen - c.qoff[i], c.qhash[i], 12 + c.qoff[i])
    for k in range(count):
        _put_record(<Record>plan._ans[c.order[k]], c.soa_now, c.serial)
    if authority:
        for rec in plan._auth:
            _put_record(rec, c.soa_now, c.serial)
        ns = len(plan._auth)
    if plan._xo != NULL and count:
        memset(c.seen, 0, c.nextras)
        for k in range(count):
            for j in range(plan._xo_at[c.order[k]], plan._xo_at[c.order[k] + 1]):
                index = plan._xo[j]
                if not c.seen[index]:
                    c.seen[index] = 1
                    _put_record(<Record>plan._ext[index], c.soa_now, c.serial)
                    ar += 1
    if q.edns:
        _put_opt(q)
        ar += 1
    _put_header(q, c.flags, <uint32_t>count, <uint32_t>ns, <uint32_t>ar)
    return _len


cdef bytes _render(QInfo* q, Plan plan, bint tcp, RenderOptions opts, Rng rng):
    global _compress
    cdef Py_ssize_t total = len(plan._ans), count, cap, udp_cap, max_size, size
    cdef Py_ssize_t low, high, mid, best, last, est
    cdef int stack_order[STACK_ANSWERS]
    cdef uint8_t stack_seen[STACK_ANSWERS]
    cdef int* order = stack_order
    cdef int pos = 0
    cdef Pack c
    if not plan._ready:
        plan._prepare()
    c.q = q
    c.nextras = len(plan._ext)
    c.seen = stack_seen
    try:
        if total > STACK_ANSWERS:
            order = <int*>PyMem_Malloc(total * sizeof(int))
            if order == NULL:
                raise MemoryError()
        if c.nextras > STACK_ANSWERS:
            c.seen = <uint8_t*>PyMem_Malloc(c.nextras)
            if c.seen == NULL:
                raise MemoryError()
        for count in range(total):
            order[count] = <int>count
        if plan.shuffle:
            rng._shuffle_idx(order, total)
        if tcp:
            max_size = C_TCP_SIZE
        elif q.edns:
            max_size = min(max(<Py_ssize_t>q.edns_size, C_UDP_PLAIN), C_TCP_SIZE)
        else:
            max_size = C_UDP_PLAIN
        cap = plan._limit
        if not tcp and not q.edns:
            udp_cap = (min(opts.udp_answer_limit, C_UDP_ANSWERS) if opts.udp_answer_limit > 0
                       else C_UDP_ANSWERS)
            cap = min(cap, udp_cap) if cap else udp_cap
        count = cap if cap and total > cap else total
        c.order = order
        c.soa_now = plan.soa_now
        c.serial = <uint32_t>time(NULL) if plan.soa_now else 0
        c.flags = (0x8000 | (q.opcode << 11) | (0x0400 if plan.authoritative else 0)
                   | (0x0100 if q.rd else 0) | (0x0080 if opts.recursion_available else 0)
                   | (0x0010 if q.cd else 0) | plan._rcode)
        _compress = opts.compress
        c.qn = 0
        if _compress and q.qlen:
            while q.key[pos] != 0:
                c.qoff[c.qn] = <uint8_t>pos
                c.qn += 1
                pos += 1 + q.key[pos]
            _suffix_hashes(q.key, c.qn, c.qoff, c.qhash)
        size = _pack(&c, plan, count, True)
        if size > max_size:
            # Same search as the pure twin, step for step: sizes need not be monotonic in the
            # answer count (compression), so any other search could pick another count. It
            # starts where equal-sized answers would stop fitting (one or two packs, usually).
            best = -1
            low = 0
            high = count - 1
            est = min(count - 1, count * max_size // size)
            last = est
            if _pack(&c, plan, est, True) <= max_size:
                best = est
                low = est + 1
                if low < count:
                    last = low
                    if _pack(&c, plan, low, True) <= max_size:
                        best = low
                        low += 1
                    else:
                        high = low - 1
            else:
                high = est - 1
            while low <= high:
                mid = (low + high) // 2
                last = mid
                if _pack(&c, plan, mid, True) <= max_size:
                    best = mid
                    low = mid + 1
                else:
                    high = mid - 1
            if best < 0:
                best = 0
                _pack(&c, plan, 0, False)
            elif last != best:
                _pack(&c, plan, best, True)
            count = best
        if count < total and opts.enable_truncate and not tcp:
            _buf[2] |= 0x02
        return PyBytes_FromStringAndSize(<char*>_buf, _len)
    finally:
        if order != stack_order:
            PyMem_Free(order)
        if c.seen != stack_seen:
            PyMem_Free(c.seen)


cdef bytes _error(QInfo* q, int rcode, RenderOptions opts):
    global _len
    cdef uint32_t flags = (0x8000 | (q.opcode << 11) | (0x0100 if q.rd else 0)
                           | (0x0080 if opts.recursion_available else 0)
                           | (0x0010 if q.cd else 0) | (rcode & 0xF))
    _len = 0
    _reserve(12 + q.qlen)
    memcpy(_buf + 12, q.question, q.qlen)
    _len = 12 + q.qlen
    if q.edns:
        _put_opt(q)
    _put_header(q, flags, 0, 0, 1 if q.edns else 0)
    return PyBytes_FromStringAndSize(<char*>_buf, _len)


cdef bytes _formerr(const uint8_t* p, Py_ssize_t n):
    cdef uint8_t out[12]
    if n < 12 or p[2] & 0x80:
        return b""
    memset(out, 0, 12)
    out[0] = p[0]
    out[1] = p[1]
    out[2] = 0x80 | (p[2] & 0x79)       # QR, opcode and RD copied
    out[3] = 1                          # FORMERR
    return PyBytes_FromStringAndSize(<char*>out, 12)


def render(Query query not None, Plan plan not None, bint tcp, RenderOptions opts not None,
           Rng rng not None) -> bytes:
    """Write the response to `query` from `plan` for one transport (see the contract)."""
    return _render(&query.q, plan, tcp, opts, rng)


def error_response(Query query not None, rcode: int, RenderOptions opts not None) -> bytes:
    """A response without records (REFUSED, SERVFAIL, NOTIMP...), echoing question and OPT."""
    return _error(&query.q, <int>(int(rcode) & 0xF), opts)


def formerr_response(data: bytes) -> bytes:
    """FORMERR for a request parse_query rejected; b"" when there is no usable header or it is
    itself a response, so two servers cannot bounce errors at each other."""
    cdef bytes raw = data if type(data) is bytes else bytes(data)
    return _formerr(<const uint8_t*>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
