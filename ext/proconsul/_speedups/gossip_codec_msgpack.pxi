# The msgpack subset memberlist speaks, read and written between C buffers (included by
# gossip_codec.pyx).
#
# The reader accepts exactly what the pure twin's parser accepts, msgpack-python's
# `unpackb(raw=True)` over the rest of the buffer: the same limits (containers longer than the
# input, more than 1024 open containers), the same strict map keys (str or bin only, checked
# once the key's value is complete), the same ext rules (Timestamp for code -1 with its length
# and nanosecond checks, negative codes refused), and it reports them with msgpack's messages so
# both twins reject a packet with the same words. Go's encoder never sends most of this, but
# the receive path is untrusted input and the twins must agree on all of it.

cdef enum:
    MP_NIL = 0
    MP_BOOL = 1
    MP_UINT = 2
    MP_INT = 3
    MP_FLOAT = 4
    MP_RAW = 5
    MP_ARRAY = 6
    MP_MAP = 7
    MP_EXT = 8
    MP_TIMESTAMP = 9
    MP_ABSENT = 10

cdef enum:
    E_OK = 0
    E_INCOMPLETE = 1
    E_FORMAT = 2
    E_STACK = 3
    E_ARRAY_LEN = 4
    E_MAP_LEN = 5
    E_KEY = 6
    E_EXT_CODE = 7
    E_TS_LEN = 8
    E_TS_NSEC = 9

cdef enum:
    # msgpack-python's unpacker stack: a container may not open when this many are open.
    STACK_MAX = 1024
    NSEC_MAX = 999999999

# What msgpack-python hands back for each kind, for messages naming a value's type.
cdef tuple _KIND_NAMES = ("NoneType", "bool", "int", "int", "float", "bytes", "list", "dict",
                          "ExtType", "Timestamp")


cdef struct Item:
    int kind
    uint64_t u              # UINT value, BOOL, container count, RAW/EXT length
    int64_t i               # INT value
    const uint8_t* data     # RAW payload


cdef struct MpErr:
    int code
    int kind                # E_KEY: the kind of the offending key
    uint64_t n              # E_*_LEN: the declared count; E_TS_LEN: the data length


cdef struct Capture:
    # Each field's last value (kind MP_ABSENT: not in the map) and the order fields first
    # appeared, which is how a dict built from the map would hold them.
    const Spec* spec
    Item items[MAX_FIELDS]
    int order[MAX_FIELDS]
    int norder


cdef inline uint16_t be16(const uint8_t* p) noexcept nogil:
    return <uint16_t>((<uint16_t>p[0] << 8) | p[1])


cdef inline uint32_t be32(const uint8_t* p) noexcept nogil:
    return ((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8)
            | <uint32_t>p[3])


cdef inline uint64_t be64(const uint8_t* p) noexcept nogil:
    return (<uint64_t>be32(p) << 32) | be32(p + 4)


cdef inline int _raw(const uint8_t** pp, const uint8_t* data, const uint8_t* end, uint64_t n,
                     Item* it) noexcept nogil:
    if <uint64_t>(end - data) < n:
        return E_INCOMPLETE
    it.kind = MP_RAW
    it.u = n
    it.data = data
    pp[0] = data + n
    return E_OK


cdef inline int _ext(const uint8_t** pp, const uint8_t* code, const uint8_t* end, uint64_t n,
                     Item* it, MpErr* err) noexcept nogil:
    cdef uint64_t nsec = 0
    if <uint64_t>(end - code) < n + 1:
        return E_INCOMPLETE
    if <int8_t>code[0] == -1:
        if n == 8:
            nsec = be64(code + 1) >> 34
        elif n == 12:
            nsec = be32(code + 1)
        elif n != 4:
            err.n = n
            return E_TS_LEN
        if nsec > NSEC_MAX:
            return E_TS_NSEC
        it.kind = MP_TIMESTAMP
    elif <int8_t>code[0] < 0:
        return E_EXT_CODE
    else:
        it.kind = MP_EXT
    pp[0] = code + 1 + n
    return E_OK


cdef inline int mp_head(const uint8_t** pp, const uint8_t* end, Item* it,
                        MpErr* err) noexcept nogil:
    """Read one item's header (and a string's or ext's payload), advancing `pp` past it."""
    cdef const uint8_t* p = pp[0]
    cdef Py_ssize_t avail = end - p
    cdef uint8_t b
    cdef int need
    if avail < 1:
        return E_INCOMPLETE
    b = p[0]
    if b <= 0x7F:
        it.kind = MP_UINT
        it.u = b
        pp[0] = p + 1
        return E_OK
    if b >= 0xE0:
        it.kind = MP_INT
        it.i = <int8_t>b
        pp[0] = p + 1
        return E_OK
    if b <= 0x8F:
        it.kind = MP_MAP
        it.u = b & 0x0F
        pp[0] = p + 1
        return E_OK
    if b <= 0x9F:
        it.kind = MP_ARRAY
        it.u = b & 0x0F
        pp[0] = p + 1
        return E_OK
    if b <= 0xBF:
        return _raw(pp, p + 1, end, b & 0x1F, it)
    if b == 0xC0:
        it.kind = MP_NIL
        pp[0] = p + 1
        return E_OK
    if b == 0xC1:
        return E_FORMAT
    if b <= 0xC3:
        it.kind = MP_BOOL
        it.u = b & 1
        pp[0] = p + 1
        return E_OK
    # Everything left has a fixed-size header part after the lead byte.
    if b == 0xC4 or b == 0xD9 or b == 0xCC or b == 0xD0 or b == 0xC7:
        need = 2
    elif b == 0xC5 or b == 0xDA or b == 0xCD or b == 0xD1 or b == 0xDC or b == 0xDE:
        need = 3
    elif b == 0xC8:
        need = 4
    elif b == 0xC6 or b == 0xDB or b == 0xCE or b == 0xD2 or b == 0xCA or b == 0xDD or b == 0xDF:
        need = 5
    elif b == 0xC9:
        need = 6
    elif b == 0xCF or b == 0xD3 or b == 0xCB:
        need = 9
    else:  # fixext 0xd4..0xd8: the type byte is checked with the data
        need = 1
    if avail < need:
        return E_INCOMPLETE
    if b == 0xC4 or b == 0xD9:
        return _raw(pp, p + 2, end, p[1], it)
    if b == 0xC5 or b == 0xDA:
        return _raw(pp, p + 3, end, be16(p + 1), it)
    if b == 0xC6 or b == 0xDB:
        return _raw(pp, p + 5, end, be32(p + 1), it)
    if b == 0xC7:
        return _ext(pp, p + 2, end, p[1], it, err)
    if b == 0xC8:
        return _ext(pp, p + 3, end, be16(p + 1), it, err)
    if b == 0xC9:
        return _ext(pp, p + 5, end, be32(p + 1), it, err)
    if b >= 0xD4 and b <= 0xD8:
        return _ext(pp, p + 1, end, 1u << (b - 0xD4), it, err)
    pp[0] = p + need
    if b == 0xCA or b == 0xCB:
        it.kind = MP_FLOAT
    elif b == 0xCC:
        it.kind = MP_UINT
        it.u = p[1]
    elif b == 0xCD:
        it.kind = MP_UINT
        it.u = be16(p + 1)
    elif b == 0xCE:
        it.kind = MP_UINT
        it.u = be32(p + 1)
    elif b == 0xCF:
        it.kind = MP_UINT
        it.u = be64(p + 1)
    elif b == 0xD0:
        it.kind = MP_INT
        it.i = <int8_t>p[1]
    elif b == 0xD1:
        it.kind = MP_INT
        it.i = <int16_t>be16(p + 1)
    elif b == 0xD2:
        it.kind = MP_INT
        it.i = <int32_t>be32(p + 1)
    elif b == 0xD3:
        it.kind = MP_INT
        it.i = <int64_t>be64(p + 1)
    elif b == 0xDC or b == 0xDE:
        it.kind = MP_ARRAY if b == 0xDC else MP_MAP
        it.u = be16(p + 1)
    else:
        it.kind = MP_ARRAY if b == 0xDD else MP_MAP
        it.u = be32(p + 1)
    return E_OK


cdef inline bint _same(const char* a, const uint8_t* b, uint64_t n) noexcept nogil:
    """`a[:n] == b[:n]` for Go field names (3 to 16 bytes) in two overlapping word compares."""
    cdef uint64_t x0, y0, x1, y1
    cdef uint32_t u0, v0, u1, v1
    if 8 <= n <= 16:
        memcpy(&x0, a, 8)
        memcpy(&y0, b, 8)
        memcpy(&x1, a + n - 8, 8)
        memcpy(&y1, b + n - 8, 8)
        return x0 == y0 and x1 == y1
    if 4 <= n < 8:
        memcpy(&u0, a, 4)
        memcpy(&v0, b, 4)
        memcpy(&u1, a + n - 4, 4)
        memcpy(&v1, b + n - 4, 4)
        return u0 == v0 and u1 == v1
    return memcmp(a, b, n) == 0


cdef inline int _match(const Spec* spec, int hint, const uint8_t* key, uint64_t n) noexcept nogil:
    """The field whose Go key is `key`, trying `hint` (the next one in sorted order) first."""
    cdef int i
    if hint < spec.nfields and <uint64_t>spec.keylen[hint] == n and _same(spec.keys[hint], key, n):
        return hint
    for i in range(spec.nfields):
        if <uint64_t>spec.keylen[i] == n and _same(spec.keys[i], key, n):
            return i
    return -1


cdef inline int _open(const Item* it, int depth, uint64_t buf_len, MpErr* err) noexcept nogil:
    """msgpack-python's checks when a container opens with `depth` containers already open."""
    if depth >= STACK_MAX:
        err.code = E_STACK
    elif it.kind == MP_ARRAY and it.u > buf_len:
        err.code = E_ARRAY_LEN
        err.n = it.u
    elif it.kind == MP_MAP and it.u > buf_len // 2:
        err.code = E_MAP_LEN
        err.n = it.u
    else:
        return E_OK
    return err.code


cdef int mp_skip(const uint8_t** pp, const uint8_t* end, uint64_t buf_len, int depth,
                 Item* first, MpErr* err) noexcept nogil:
    """Check one whole object with `depth` containers open around it; `first` gets its header.

    The innermost level's counters live in locals and outer levels on an explicit stack, so
    nesting costs no C recursion and the common flat case no stack traffic.
    """
    cdef uint64_t rem_stack[STACK_MAX]
    cdef uint8_t map_stack[STACK_MAX]
    cdef int8_t pend_stack[STACK_MAX]
    cdef int top = 0                # containers open inside this object
    cdef uint64_t rem = 0           # items left at the innermost open level
    cdef bint ismap = False
    cdef int pending = -1           # kind of a non-string key whose value is being read
    cdef Item it
    cdef int rc = mp_head(pp, end, first, err)
    if rc != E_OK:
        err.code = rc
        return rc
    it = first[0]
    while True:
        if it.kind == MP_ARRAY or it.kind == MP_MAP:
            rc = _open(&it, depth + top, buf_len, err)
            if rc != E_OK:
                return rc
            if it.u > 0:
                if top > 0:
                    rem_stack[top - 1] = rem
                    map_stack[top - 1] = ismap
                    pend_stack[top - 1] = <int8_t>pending
                top += 1
                ismap = it.kind == MP_MAP
                rem = it.u * 2 if ismap else it.u
                pending = -1
                rc = mp_head(pp, end, &it, err)
                if rc != E_OK:
                    err.code = rc
                    return rc
                if ismap and it.kind != MP_RAW:
                    pending = it.kind
                continue
        # One item is complete: count it against the containers it completes.
        while top > 0:
            rem -= 1
            if ismap and (rem & 1) == 0 and pending >= 0:
                err.code = E_KEY
                err.kind = pending
                return E_KEY
            if rem > 0:
                break
            top -= 1
            if top > 0:
                rem = rem_stack[top - 1]
                ismap = map_stack[top - 1]
                pending = pend_stack[top - 1]
        if top == 0:
            return E_OK
        rc = mp_head(pp, end, &it, err)
        if rc != E_OK:
            err.code = rc
            return rc
        if ismap and (rem & 1) == 0 and it.kind != MP_RAW:
            pending = it.kind


cdef inline int _item(const uint8_t** pp, const uint8_t* end, uint64_t buf_len, Item* it,
                      MpErr* err) noexcept nogil:
    """One whole item inside the top map: a scalar directly, a container through mp_skip.

    Field names (fixstr) and small ints, most of any memberlist map, are read inline.
    """
    cdef const uint8_t* p = pp[0]
    cdef uint8_t b
    cdef uint64_t n
    cdef int rc
    if p < end:
        b = p[0]
        if 0xA0 <= b <= 0xBF:
            n = b & 0x1F
            if <uint64_t>(end - p - 1) >= n:
                it.kind = MP_RAW
                it.u = n
                it.data = p + 1
                pp[0] = p + 1 + n
                return E_OK
        elif b <= 0x7F:
            it.kind = MP_UINT
            it.u = b
            pp[0] = p + 1
            return E_OK
        elif (0x80 <= b <= 0x9F) or (0xDC <= b <= 0xDF):
            return mp_skip(pp, end, buf_len, 1, it, err)
    rc = mp_head(pp, end, it, err)
    if rc != E_OK:
        err.code = rc
    return rc


cdef int mp_walk(const uint8_t** pp, const uint8_t* end, uint64_t buf_len, Capture* cap,
                 MpErr* err, int* top_kind) noexcept nogil:
    """Check one whole msgpack object; when it is a map, note where `cap`'s fields are."""
    cdef Item it, key
    cdef int rc, field
    cdef int hint = 0
    cdef uint64_t e
    cdef const uint8_t* start = pp[0]
    rc = mp_head(pp, end, &it, err)
    if rc != E_OK:
        err.code = rc
        return rc
    top_kind[0] = it.kind
    if it.kind != MP_MAP:
        pp[0] = start
        return mp_skip(pp, end, buf_len, 0, &it, err)
    rc = _open(&it, 0, buf_len, err)
    if rc != E_OK:
        return rc
    for e in range(it.u):
        rc = _item(pp, end, buf_len, &key, err)
        if rc != E_OK:
            return rc
        field = -1
        if key.kind == MP_RAW:
            field = _match(cap.spec, hint, key.data, key.u)
        rc = _item(pp, end, buf_len, &it, err)
        if rc != E_OK:
            return rc
        if key.kind != MP_RAW:
            err.code = E_KEY
            err.kind = key.kind
            return E_KEY
        if field >= 0:
            if cap.items[field].kind == MP_ABSENT:
                cap.order[cap.norder] = field
                cap.norder += 1
            # field by field: a struct copy reloads `it` wider than it was stored
            cap.items[field].kind = it.kind
            cap.items[field].u = it.u
            cap.items[field].i = it.i
            cap.items[field].data = it.data
            hint = field + 1
    return E_OK


cdef str _mp_message(MpErr* err, uint64_t buf_len):
    """msgpack-python's words for the same failure."""
    cdef int code = err.code
    if code == E_INCOMPLETE:
        return "Unpack failed: incomplete input"
    if code == E_ARRAY_LEN:
        return f"{err.n} exceeds max_array_len({buf_len})"
    if code == E_MAP_LEN:
        return f"{err.n} exceeds max_map_len({buf_len // 2})"
    if code == E_KEY:
        return f"{_KIND_NAMES[err.kind]} is not allowed for map key when strict_map_key=True"
    if code == E_EXT_CODE:
        return "code must be 0~127"
    if code == E_TS_LEN:
        return f"invalid timestamp data (length {err.n})"
    if code == E_TS_NSEC:
        return "nanoseconds must be a non-negative integer not greater than 999999999."
    return ""  # FormatError (0xc1) and StackError carry no text


cdef int mp_capture(const Spec* spec, const uint8_t* p, const uint8_t* end, Capture* cap,
                    int s) except -1:
    """Walk the body `p..end` as the pure twin's `unpack_one` + map check would, noting fields
    (`s` names the spec in messages)."""
    cdef MpErr err
    cdef int top_kind = MP_NIL
    cdef int i
    cdef uint64_t buf_len = <uint64_t>(end - p)
    cap.spec = spec
    cap.norder = 0
    for i in range(spec.nfields):
        cap.items[i].kind = MP_ABSENT
    if mp_walk(&p, end, buf_len, cap, &err, &top_kind) != E_OK:
        raise GossipFormatError(f"bad msgpack body: {_mp_message(&err, buf_len)}")
    if top_kind != MP_MAP:
        if s == S_COMPRESS:
            raise GossipFormatError("compress: expected a msgpack map")
        raise GossipFormatError(f"{_CLASSES[s].__name__}: expected a msgpack map, got "
                                f"{_KIND_NAMES[top_kind]}")
    return 0


# -- writer: go-msgpack's choices (old-spec raw for str and []byte, smallest ints) -------------

cdef enum:
    V_SKIP = 0
    V_NIL = 1
    V_FALSE = 2
    V_TRUE = 3
    V_UINT = 4
    V_INT = 5
    V_RAW = 6


cdef struct EncVal:
    int tag
    uint64_t u              # V_UINT value, V_RAW length
    int64_t i
    const char* ptr
    Py_ssize_t size         # bytes this value takes on the wire


cdef inline Py_ssize_t _raw_size(Py_ssize_t n) noexcept nogil:
    return n + (1 if n < 32 else 3 if n < 65536 else 5)


cdef inline Py_ssize_t _uint_size(uint64_t u) noexcept nogil:
    if u < 128:
        return 1
    if u < 256:
        return 2
    if u < 65536:
        return 3
    if u <= 0xFFFFFFFFu:
        return 5
    return 9


cdef inline Py_ssize_t _int_size(int64_t i) noexcept nogil:
    if i >= -32:
        return 1
    if i >= -128:
        return 2
    if i >= -32768:
        return 3
    if i >= -2147483648LL:
        return 5
    return 9


cdef inline uint8_t* _w16(uint8_t* w, uint8_t lead, uint32_t v) noexcept nogil:
    w[0] = lead
    w[1] = <uint8_t>(v >> 8)
    w[2] = <uint8_t>v
    return w + 3


cdef inline uint8_t* _w32(uint8_t* w, uint8_t lead, uint32_t v) noexcept nogil:
    w[0] = lead
    w[1] = <uint8_t>(v >> 24)
    w[2] = <uint8_t>(v >> 16)
    w[3] = <uint8_t>(v >> 8)
    w[4] = <uint8_t>v
    return w + 5


cdef inline uint8_t* _w64(uint8_t* w, uint8_t lead, uint64_t v) noexcept nogil:
    cdef int k
    w[0] = lead
    for k in range(8):
        w[1 + k] = <uint8_t>(v >> (56 - 8 * k))
    return w + 9


cdef inline uint8_t* _w_raw(uint8_t* w, const char* data, Py_ssize_t n) noexcept nogil:
    if n < 32:
        w[0] = <uint8_t>(0xA0 | n)
        w += 1
    elif n < 65536:
        w = _w16(w, 0xDA, <uint32_t>n)
    else:
        w = _w32(w, 0xDB, <uint32_t>n)
    memcpy(w, data, n)
    return w + n


cdef inline uint8_t* _w_val(uint8_t* w, EncVal* v) noexcept nogil:
    cdef uint64_t u
    cdef int64_t i
    if v.tag == V_RAW:
        return _w_raw(w, v.ptr, <Py_ssize_t>v.u)
    if v.tag == V_NIL or v.tag == V_FALSE or v.tag == V_TRUE:
        w[0] = 0xC0 if v.tag == V_NIL else 0xC2 if v.tag == V_FALSE else 0xC3
        return w + 1
    if v.tag == V_UINT:
        u = v.u
        if u < 128:
            w[0] = <uint8_t>u
            return w + 1
        if u < 256:
            w[0] = 0xCC
            w[1] = <uint8_t>u
            return w + 2
        if u < 65536:
            return _w16(w, 0xCD, <uint32_t>u)
        if u <= 0xFFFFFFFFu:
            return _w32(w, 0xCE, <uint32_t>u)
        return _w64(w, 0xCF, u)
    i = v.i
    if i >= -32:
        w[0] = <uint8_t>i
        return w + 1
    if i >= -128:
        w[0] = 0xD0
        w[1] = <uint8_t>i
        return w + 2
    if i >= -32768:
        return _w16(w, 0xD1, <uint32_t><uint16_t>i)
    if i >= -2147483648LL:
        return _w32(w, 0xD2, <uint32_t>i)
    return _w64(w, 0xD3, <uint64_t>i)
