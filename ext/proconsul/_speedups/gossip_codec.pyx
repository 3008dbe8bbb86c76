# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled twin of proconsul/gossip/codec_py.py: memberlist's packet layers and messages.

Every UDP packet a node receives goes through `ingest` and each of its leaves through `decode`;
every probe, ack and broadcast it sends goes through `encode` and `prepare`. The pure twin pays
for a generic msgpack round trip there (a dict per message, then a dataclass built by keyword),
so this module goes straight between C buffers and the message objects:

* decode walks the msgpack once, accepting exactly what msgpack-python's `unpackb(raw=True)`
  accepts (the pure twin's parser; see gossip_codec_msgpack.pxi), and converts each field from
  its last occurrence in first-occurrence order, as the pure twin's dict holds them, so the two
  reject the same input with the same message;
* message objects are allocated without their generated __init__ and their slots filled
  directly; the slot offsets are checked against the dataclasses at import, and a class that
  does not fit (no slots, a __post_init__) is built by keyword instead;
* encode writes go-msgpack's bytes for values of the declared types and hands anything else
  (another type, a subclass, an int msgpack cannot hold, an unset attribute) to the pure twin,
  so results and exceptions stay the pure twin's;
* the small values gossip repeats (addresses, meta, vsn, node names, ports) are interned, so
  decoding an alive about a known node allocates little more than the message itself;
* CRC-32 is computed here (carry-less multiply where the CPU has it, tables otherwise; see
  gossip_codec_crc.pxi), LZW by the compiled twin behind `proconsul.gossip.lzw`, and
  compounds are split by pointer.

Names, signatures, results and exceptions are those of the pure twin; the selector
proconsul/gossip/codec.py picks one and the twin tests hold them equal. Field tables and
constants are taken from the pure twin, so there is one list of Go keys.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_FromUnsignedLongLong
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

import dataclasses

from proconsul.errors import GossipError, GossipFormatError
from proconsul.gossip import codec_py as _py
from proconsul.gossip.messages import MESSAGE_TYPE_NAMES, PushNodeState, PushPullHeader, UserMsg
from proconsul.gossip.messages import UserMsgHeader

__all__ = [
    "MAX_COMPOUND_PARTS", "MAX_PACKET_SIZE", "META_MAX_SIZE", "UDP_BUFFER_SIZE", "add_crc",
    "decode", "decode_compress", "decode_header", "decode_node_state", "decode_user_msg_header",
    "encode", "encode_compress", "encode_header", "encode_node_state", "encode_user_msg_header",
    "ingest", "make_compound", "make_compounds", "prepare", "split_compound",
]

MAX_COMPOUND_PARTS = _py.MAX_COMPOUND_PARTS
MAX_COMPOUND_PART_LEN = _py.MAX_COMPOUND_PART_LEN
MAX_PACKET_SIZE = _py.MAX_PACKET_SIZE
UDP_BUFFER_SIZE = _py.UDP_BUFFER_SIZE
META_MAX_SIZE = _py.META_MAX_SIZE
MAX_LABEL_LEN = _py.MAX_LABEL_LEN
MAX_DECOMPRESSED = _py.MAX_DECOMPRESSED
MAX_NESTING = _py.MAX_NESTING

cdef Py_ssize_t C_MAX_PACKET = MAX_PACKET_SIZE
cdef Py_ssize_t C_MAX_PARTS = MAX_COMPOUND_PARTS
cdef Py_ssize_t C_MAX_DECOMPRESSED = MAX_DECOMPRESSED
cdef int C_MAX_NESTING = MAX_NESTING

cdef enum:
    T_COMPOUND = 0x07
    T_USER = 0x08
    T_COMPRESS = 0x09
    T_CRC = 0x0C
    T_LABEL = 0xF4
    MAX_FIELDS = 8

# Field kinds, numbered as the pure twin numbers them (checked below).
cdef enum:
    K_STR = 0
    K_BYTES = 1
    K_NBYTES = 2
    K_U32 = 3
    K_U16 = 4
    K_INT = 5
    K_BOOL = 6

if (_py._STR, _py._BYTES, _py._NBYTES, _py._U32, _py._U16, _py._INT, _py._BOOL) != tuple(
        range(7)):
    raise ImportError("gossip_codec: the pure twin renumbered its field kinds")

cdef tuple _ZEROS = ("", b"", None, 0, 0, 0, False)
cdef uint64_t _LIMITS[7]
_LIMITS[:] = [0, 0, 0, 0xFFFFFFFFu, 0xFFFFu, 0x7FFFFFFFFFFFFFFFu, 0]


cdef struct Spec:
    int nfields
    const char* keys[MAX_FIELDS]        # Go keys, in wire (sorted) order
    Py_ssize_t keylen[MAX_FIELDS]
    const char* keyenc[MAX_FIELDS]      # the key as go-msgpack writes it (fixstr)
    Py_ssize_t keyenc_len[MAX_FIELDS]
    int kinds[MAX_FIELDS]
    int omit[MAX_FIELDS]
    Py_ssize_t offsets[MAX_FIELDS]      # slot offset of field i's attribute, when `fast`
    bint fast


# -- slots: messages are slotted dataclasses; fill and read them without __init__/getattr ----

cdef extern from *:
    """
    #if PY_VERSION_HEX < 0x030C0000
    #include <structmember.h>
    #define PC_T_OBJECT_EX T_OBJECT_EX
    #define PC_READONLY READONLY
    #else
    #define PC_T_OBJECT_EX Py_T_OBJECT_EX
    #define PC_READONLY Py_READONLY
    #endif

    static PyObject* pc_alloc(PyObject* cls) {
        PyTypeObject* tp = (PyTypeObject*)cls;
        return tp->tp_alloc(tp, 0);
    }

    static CYTHON_INLINE void pc_put(PyObject* obj, Py_ssize_t offset, PyObject* value) {
        PyObject** slot = (PyObject**)((char*)obj + offset);
        PyObject* old = *slot;
        Py_INCREF(value);
        *slot = value;
        Py_XDECREF(old);
    }

    static CYTHON_INLINE PyObject* pc_get(PyObject* obj, Py_ssize_t offset) {
        return *(PyObject**)((char*)obj + offset);
    }

    static Py_ssize_t pc_slot_offset(PyObject* descr) {
        PyMemberDef* m;
        if (Py_TYPE(descr) != &PyMemberDescr_Type) return -1;
        m = ((PyMemberDescrObject*)descr)->d_member;
        if (m->type != PC_T_OBJECT_EX || (m->flags & PC_READONLY)) return -1;
        return m->offset;
    }
    """
    object pc_alloc(object cls)
    void pc_put(object obj, Py_ssize_t offset, object value)
    PyObject* pc_get(object obj, Py_ssize_t offset)
    Py_ssize_t pc_slot_offset(object descr)

cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    void* PyUnicode_DATA(object)
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*)
    object PyUnicode_DecodeUTF8(const char*, Py_ssize_t, const char*)
    long long PyLong_AsLongLongAndOverflow(object, int*) except? -1
    unsigned long long PyLong_AsUnsignedLongLong(object)
    PyObject* PyErr_Occurred()
    void PyErr_Clear()


def _slot_offsets(cls, attrs):
    """Slot offsets of `attrs` when `cls` may be built slot by slot, else None.

    That holds for a slotted dataclass whose fields are exactly `attrs`, with the generated
    __init__ (which only assigns) and no __post_init__; anything else is built by keyword.
    """
    if type(cls) is not type or not dataclasses.is_dataclass(cls):
        return None
    if not cls.__dataclass_params__.init or hasattr(cls, "__post_init__"):
        return None
    if cls.__new__ is not object.__new__:
        return None
    if {f.name for f in dataclasses.fields(cls)} != set(attrs):
        return None
    offsets = [pc_slot_offset(cls.__dict__.get(attr)) for attr in attrs]
    return None if min(offsets) < 0 else offsets


# -- field tables, from the pure twin's --------------------------------------------------------

cdef enum:
    S_COUNT = 13
    S_NODE_STATE = 8
    S_HEADER = 9
    S_USER_HEADER = 10
    S_USER = 11
    S_COMPRESS = 12

cdef Spec SPECS[S_COUNT]
cdef int TYPE_SPEC[256]
cdef list _CLASSES = []         # spec -> class (None for the compress wrapper)
cdef list _ATTRS = []           # spec -> attribute names, wire order
cdef list _GO_KEYS = []         # spec -> Go key names (str), for messages
cdef list _LOOKUPS = []         # spec -> {Go key bytes: field index}
cdef list _KEEP = []            # owners of the key bytes the specs point into
cdef dict _SPEC_OF_CLASS = {}   # leaf class -> (spec, type byte)


cdef void _add_spec(int s, cls, fields) except *:
    cdef Spec* spec = &SPECS[s]
    cdef int i
    spec.nfields = len(fields)
    for i, (key, attr, kind, omitempty) in enumerate(fields):
        enc = bytes((0xA0 | len(key),)) + key
        _KEEP.extend((key, enc))
        spec.keys[i] = key
        spec.keylen[i] = len(key)
        spec.keyenc[i] = enc
        spec.keyenc_len[i] = len(enc)
        spec.kinds[i] = kind
        spec.omit[i] = omitempty
    attrs = tuple(field[1] for field in fields)
    offsets = _slot_offsets(cls, attrs) if cls is not None else None
    spec.fast = offsets is not None
    if offsets is not None:
        for i in range(spec.nfields):
            spec.offsets[i] = offsets[i]
    _CLASSES.append(cls)
    _ATTRS.append(attrs)
    _GO_KEYS.append(tuple(field[0].decode() for field in fields))
    _LOOKUPS.append({field[0]: i for i, field in enumerate(fields)})


cdef void _init_specs() except *:
    cdef int s = 0
    for t in range(256):
        TYPE_SPEC[t] = -1
    for msg_type, (cls, fields) in sorted(_py._BY_TYPE.items()):
        TYPE_SPEC[msg_type] = s
        _SPEC_OF_CLASS[cls] = (s, msg_type)
        _add_spec(s, cls, fields)
        s += 1
    if s != S_NODE_STATE:
        raise ImportError("gossip_codec: the pure twin's leaf table changed size")
    _add_spec(S_NODE_STATE, PushNodeState, _py._NODE_STATE_FIELDS)
    _add_spec(S_HEADER, PushPullHeader, _py._HEADER_FIELDS)
    _add_spec(S_USER_HEADER, UserMsgHeader, _py._USER_HEADER_FIELDS)
    _add_spec(S_USER, UserMsg, ((b"", "payload", K_BYTES, False),))
    _add_spec(S_COMPRESS, None, ((b"Algo", "algo", K_INT, False),
                                 (b"Buf", "buf", K_BYTES, False)))


_init_specs()

include "gossip_codec_msgpack.pxi"
include "gossip_codec_crc.pxi"


# -- interning: the small values gossip repeats -------------------------------------------------
#
# The same nodes are gossiped about over and over, so an alive's address, meta, vsn, name and
# port are mostly values this process has already built. A direct-mapped table per kind keeps
# one object per slot, with the full hash of its bytes, and hands it out again when the bytes
# match exactly: a hash and a compare instead of an allocation and, later, a free. A slot
# changes hands only after REPLACE_AFTER misses, because evicting costs a free of the old
# value: measured on 4096 distinct alives (more than the tables hold), replacing on every miss
# made decode about 30% slower than not interning at all, this way about 8%, while a known
# node's alive decodes about 15% faster. Only immutable values are shared, so callers cannot
# tell, and each table holds at most INTERN_SLOTS small objects.

cdef enum:
    INTERN_BITS = 10
    INTERN_SLOTS = 1 << INTERN_BITS
    INTERN_MAX = 64
    REPLACE_AFTER = 8

cdef PyObject* _bytes_seen[INTERN_SLOTS]
cdef PyObject* _str_seen[INTERN_SLOTS]
cdef PyObject* _int_seen[INTERN_SLOTS]
cdef uint64_t _bytes_hash[INTERN_SLOTS]
cdef uint64_t _str_hash[INTERN_SLOTS]
cdef uint64_t _int_value[INTERN_SLOTS]
# Misses since the slot's value was last handed out: a slot is only taken over after
# REPLACE_AFTER of them, so a stream of one-off values does not churn a table of useful ones.
cdef uint8_t _bytes_misses[INTERN_SLOTS]
cdef uint8_t _str_misses[INTERN_SLOTS]
cdef uint8_t _int_misses[INTERN_SLOTS]


cdef inline uint64_t _word(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Up to 8 of the bytes at `p` (n >= 2) in one word, read without byte-wise stores."""
    cdef uint64_t w
    cdef uint32_t lo, hi
    if n >= 8:
        memcpy(&w, p, 8)
        return w
    if n >= 4:
        memcpy(&lo, p, 4)
        memcpy(&hi, p + n - 4, 4)
        return lo | (<uint64_t>hi << 32)
    return p[0] | (<uint64_t>p[n >> 1] << 8) | (<uint64_t>p[n - 1] << 16)


cdef inline uint64_t _hash(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """A 64-bit hash of `p[:n]` (2 <= n): 8-byte words, the last one overlapping the tail.
    Its top bits pick the table slot; all of it is kept there, so a different value in the
    slot is told apart without touching that object."""
    cdef uint64_t h = <uint64_t>n * 0x9E3779B97F4A7C15ULL
    cdef Py_ssize_t k = 0
    if n < 8:
        h = (h ^ _word(p, n)) * 0xFF51AFD7ED558CCDULL
    else:
        while k + 8 < n:
            h = (h ^ _word(p + k, 8)) * 0xFF51AFD7ED558CCDULL
            h ^= h >> 32
            k += 8
        h = (h ^ _word(p + n - 8, 8)) * 0xFF51AFD7ED558CCDULL
    return (h ^ (h >> 29)) * 0x9E3779B97F4A7C15ULL


cdef inline bint _equal(const uint8_t* a, const uint8_t* b, Py_ssize_t n) noexcept nogil:
    """`a[:n] == b[:n]` for 2 <= n, in words (the last one overlapping) instead of a call."""
    cdef Py_ssize_t k = 0
    if n < 8:
        return _word(a, n) == _word(b, n)
    while k + 8 < n:
        if _word(a + k, 8) != _word(b + k, 8):
            return False
        k += 8
    return _word(a + n - 8, 8) == _word(b + n - 8, 8)


cdef inline bint _take(PyObject** table, uint8_t* misses, uint32_t slot) noexcept nogil:
    """Whether a missed slot goes to the new value (empty, or missed often enough)."""
    if table[slot] == NULL:
        return True
    misses[slot] += 1
    if misses[slot] < REPLACE_AFTER:
        return False
    misses[slot] = 0
    return True


cdef inline void _remember(PyObject** table, uint32_t slot, object value) noexcept:
    cdef PyObject* old = table[slot]
    Py_INCREF(value)
    table[slot] = <PyObject*>value
    Py_XDECREF(old)


cdef inline object _bytes_at(const uint8_t* p, Py_ssize_t n):
    cdef uint64_t h
    cdef uint32_t slot
    cdef PyObject* seen
    if n <= 1 or n > INTERN_MAX:  # CPython already shares b"" and single bytes
        return PyBytes_FromStringAndSize(<const char*>p, n)
    h = _hash(p, n)
    slot = <uint32_t>(h >> (64 - INTERN_BITS))
    seen = _bytes_seen[slot]
    if (_bytes_hash[slot] == h and seen != NULL and PyBytes_GET_SIZE(<object>seen) == n
            and _equal(<const uint8_t*>PyBytes_AS_STRING(<object>seen), p, n)):
        _bytes_misses[slot] = 0
        return <object>seen
    res = PyBytes_FromStringAndSize(<const char*>p, n)
    if _take(_bytes_seen, _bytes_misses, slot):
        _bytes_hash[slot] = h
        _remember(_bytes_seen, slot, res)
    return res


cdef object _str_at(const uint8_t* p, Py_ssize_t n):
    """`p[:n].decode("utf-8", "surrogateescape")`; ASCII results are shared."""
    cdef uint64_t h
    cdef uint32_t slot
    cdef PyObject* seen
    if n <= 1 or n > INTERN_MAX:
        return PyUnicode_DecodeUTF8(<const char*>p, n, "surrogateescape")
    h = _hash(p, n)
    slot = <uint32_t>(h >> (64 - INTERN_BITS))
    seen = _str_seen[slot]
    if (_str_hash[slot] == h and seen != NULL and PyUnicode_GET_LENGTH(<object>seen) == n
            and _equal(<const uint8_t*>PyUnicode_DATA(<object>seen), p, n)):
        _str_misses[slot] = 0
        return <object>seen
    res = PyUnicode_DecodeUTF8(<const char*>p, n, "surrogateescape")
    # only ASCII: then the characters compared above are the bytes
    if PyUnicode_IS_COMPACT_ASCII(res) and _take(_str_seen, _str_misses, slot):
        _str_hash[slot] = h
        _remember(_str_seen, slot, res)
    return res


cdef inline object _uint(uint64_t u):
    cdef uint32_t slot
    if u < 257:  # CPython's small ints
        return PyLong_FromUnsignedLongLong(u)
    slot = <uint32_t>((u * 0x9E3779B97F4A7C15ULL) >> (64 - INTERN_BITS))
    if _int_seen[slot] != NULL and _int_value[slot] == u:
        _int_misses[slot] = 0
        return <object>_int_seen[slot]
    res = PyLong_FromUnsignedLongLong(u)
    if _take(_int_seen, _int_misses, slot):
        _int_value[slot] = u
        _remember(_int_seen, slot, res)
    return res


# -- decode ------------------------------------------------------------------------------------

cdef inline object _convert_at(int s, int i, const Capture* cap):
    """Field i's value as the pure twin's `_convert` (mp_walk already checked the bytes)."""
    cdef int kind = SPECS[s].kinds[i]
    cdef const Item* it = &cap.items[i]
    if it.kind == MP_NIL:
        return _ZEROS[kind]
    if kind == K_STR:
        if it.kind == MP_RAW:
            return _str_at(it.data, <Py_ssize_t>it.u)
    elif kind == K_BYTES or kind == K_NBYTES:
        if it.kind == MP_RAW:
            return _bytes_at(it.data, <Py_ssize_t>it.u)
    elif kind == K_BOOL:
        if it.kind == MP_BOOL:
            return it.u != 0
    elif it.kind == MP_UINT:
        if it.u <= _LIMITS[kind]:
            return _uint(it.u)
        raise GossipFormatError(f"field {_GO_KEYS[s][i]}: {it.u} out of range")
    elif it.kind == MP_INT:
        if kind == K_INT or (it.i >= 0 and <uint64_t>it.i <= _LIMITS[kind]):
            return it.i
        raise GossipFormatError(f"field {_GO_KEYS[s][i]}: {it.i} out of range")
    raise GossipFormatError(f"field {_GO_KEYS[s][i]}: unexpected {_KIND_NAMES[it.kind]}")


cdef object _build(int s, Capture* cap):
    """The message of spec `s` from the fields `cap` found; absent fields are zero values."""
    cdef const Spec* spec = &SPECS[s]
    cdef int i, j
    cls = _CLASSES[s]
    if spec.fast:
        obj = pc_alloc(cls)
        for i in range(spec.nfields):
            if cap.items[i].kind == MP_ABSENT:
                pc_put(obj, spec.offsets[i], _ZEROS[spec.kinds[i]])
        for j in range(cap.norder):
            i = cap.order[j]
            pc_put(obj, spec.offsets[i], _convert_at(s, i, cap))
        return obj
    attrs = _ATTRS[s]
    values = {attrs[i]: _ZEROS[spec.kinds[i]] for i in range(spec.nfields)}
    for j in range(cap.norder):
        i = cap.order[j]
        values[attrs[i]] = _convert_at(s, i, cap)
    return cls(**values)


cdef object _new_user(bytes payload):
    if SPECS[S_USER].fast:
        obj = pc_alloc(UserMsg)
        pc_put(obj, SPECS[S_USER].offsets[0], payload)
        return obj
    return UserMsg(payload)


def decode(buf):
    """One leaf message `[type][body]` -> its message object; containers (compound,
    compress, CRC, label) are `ingest`'s business and are rejected here."""
    cdef Capture cap
    cdef const uint8_t* p
    cdef Py_ssize_t n
    cdef int s
    if type(buf) is not bytes:
        if type(buf) is not bytearray:
            return _py.decode(buf)
        buf = bytes(buf)
    n = PyBytes_GET_SIZE(buf)
    if n == 0:
        raise GossipFormatError("missing message type byte")
    p = <const uint8_t*>PyBytes_AS_STRING(buf)
    if p[0] == T_USER:
        return _new_user(_bytes_at(p + 1, n - 1))
    s = TYPE_SPEC[p[0]]
    if s < 0:
        raise GossipFormatError(f"message type {p[0]} "
                                f"({MESSAGE_TYPE_NAMES.get(p[0], 'unknown')}) is not a leaf message")
    mp_capture(&SPECS[s], p + 1, p + n, &cap, s)
    return _build(s, &cap)


cdef object _convert_obj(int s, int i, value):
    """The pure twin's `_convert` over an already-unpacked value."""
    cdef int kind = SPECS[s].kinds[i]
    if value is None:
        return _ZEROS[kind]
    tp = type(value)
    if kind == K_STR:
        if tp is bytes:
            return PyUnicode_DecodeUTF8(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value),
                                        "surrogateescape")
    elif kind == K_BYTES or kind == K_NBYTES:
        if tp is bytes:
            return value
    elif kind == K_BOOL:
        if tp is bool:
            return value
    elif tp is int:
        if (-(1 << 63) if kind == K_INT else 0) <= value <= _LIMITS[kind]:
            return value
        raise GossipFormatError(f"field {_GO_KEYS[s][i]}: {value} out of range")
    raise GossipFormatError(f"field {_GO_KEYS[s][i]}: unexpected {tp.__name__}")


cdef object _from_dict(int s, obj):
    """The pure twin's `_from_map`: a message from an already-unpacked msgpack map."""
    cdef const Spec* spec = &SPECS[s]
    cdef int i
    cdef uint32_t seen = 0
    cls = _CLASSES[s]
    if type(obj) is not dict:
        raise GossipFormatError(f"{cls.__name__}: expected a msgpack map, got "
                                f"{type(obj).__name__}")
    lookup = <dict>_LOOKUPS[s]
    if spec.fast:
        res = pc_alloc(cls)
        for key, value in (<dict>obj).items():
            hit = lookup.get(key)
            if hit is not None:
                i = hit
                pc_put(res, spec.offsets[i], _convert_obj(s, i, value))
                seen |= 1u << i
        for i in range(spec.nfields):
            if not seen & (1u << i):
                pc_put(res, spec.offsets[i], _ZEROS[spec.kinds[i]])
        return res
    attrs = _ATTRS[s]
    values = {attrs[i]: _ZEROS[spec.kinds[i]] for i in range(spec.nfields)}
    for key, value in (<dict>obj).items():
        hit = lookup.get(key)
        if hit is not None:
            values[attrs[hit]] = _convert_obj(s, hit, value)
    return cls(**values)


def decode_node_state(obj):
    """A push/pull node state from its already-unpacked msgpack map."""
    return _from_dict(S_NODE_STATE, obj)


def decode_header(obj):
    """A push/pull header from its already-unpacked msgpack map."""
    return _from_dict(S_HEADER, obj)


def decode_user_msg_header(obj):
    """A TCP user-message header from its already-unpacked msgpack map."""
    return _from_dict(S_USER_HEADER, obj)


# -- encode ------------------------------------------------------------------------------------

cdef bint _enc_value(object v, int kind, int omit, EncVal* out) except -1:
    """How msgpack would write `v` (after the pure twin's str -> bytes step), or False when
    `v` is outside what this writer handles and the pure twin must encode the message."""
    cdef Py_ssize_t n
    cdef long long ll
    cdef int overflow = 0
    cdef uint64_t u
    cdef const char* data
    tp = type(v)
    if kind == K_STR:
        if tp is not str:
            return False
        n = PyUnicode_GET_LENGTH(v)
        if n == 0 and omit:
            out.tag = V_SKIP
            return True
        if PyUnicode_IS_COMPACT_ASCII(v):
            data = <const char*>PyUnicode_DATA(v)
        else:
            data = PyUnicode_AsUTF8AndSize(v, &n)
            if data == NULL:  # lone surrogates: surrogateescape is the pure twin's business
                PyErr_Clear()
                return False
    elif v is None:
        out.tag = V_SKIP if omit else V_NIL
        out.size = 1
        return True
    elif tp is bytes:
        n = PyBytes_GET_SIZE(v)
        data = PyBytes_AS_STRING(v)
    elif tp is bool:
        if omit and v is False:
            out.tag = V_SKIP
        else:
            out.tag = V_TRUE if v is True else V_FALSE
        out.size = 1
        return True
    elif tp is int:
        ll = PyLong_AsLongLongAndOverflow(v, &overflow)
        if overflow == 0:
            if ll == 0 and omit:
                out.tag = V_SKIP
            elif ll >= 0:
                out.tag = V_UINT
                out.u = <uint64_t>ll
                out.size = _uint_size(out.u)
            else:
                out.tag = V_INT
                out.i = ll
                out.size = _int_size(ll)
            return True
        if overflow < 0:
            return False
        u = PyLong_AsUnsignedLongLong(v)
        if u == <uint64_t>-1 and PyErr_Occurred():
            PyErr_Clear()
            return False
        out.tag = V_UINT
        out.u = u
        out.size = 9
        return True
    else:
        return False
    if n == 0 and omit:
        out.tag = V_SKIP
        return True
    if n > <Py_ssize_t>0xFFFFFFFF:
        return False
    out.tag = V_RAW
    out.ptr = data
    out.u = <uint64_t>n
    out.size = _raw_size(n)
    return True


cdef object _encode_fields(int s, object msg, int type_byte):
    """go-msgpack's bytes for `msg` (a `type(msg)` exactly of spec `s`), after `type_byte`
    when it is not -1; None when the pure twin has to do it."""
    cdef const Spec* spec = &SPECS[s]
    cdef EncVal vals[MAX_FIELDS]
    cdef PyObject* o
    cdef int i
    cdef int count = 0
    cdef Py_ssize_t size = 1 if type_byte < 0 else 2
    cdef uint8_t* w
    if not spec.fast:
        return None
    for i in range(spec.nfields):
        o = pc_get(msg, spec.offsets[i])
        if o == NULL:
            return None
        if not _enc_value(<object>o, spec.kinds[i], spec.omit[i], &vals[i]):
            return None
        if vals[i].tag != V_SKIP:
            size += spec.keyenc_len[i] + vals[i].size
            count += 1
    res = PyBytes_FromStringAndSize(NULL, size)
    w = <uint8_t*>PyBytes_AS_STRING(res)
    if type_byte >= 0:
        w[0] = <uint8_t>type_byte
        w += 1
    w[0] = <uint8_t>(0x80 | count)
    w += 1
    for i in range(spec.nfields):
        if vals[i].tag != V_SKIP:
            memcpy(w, spec.keyenc[i], spec.keyenc_len[i])
            w = _w_val(w + spec.keyenc_len[i], &vals[i])
    return res


def encode(msg):
    """`[type][msgpack map]`, byte-identical to memberlist's output for the same values.

    A `UserMsg` encodes in its UDP form (`[0x08][payload]`, no header); push/pull only exists
    on streams (see `stream.encode_push_pull`).
    """
    cdef PyObject* o
    cdef Py_ssize_t n
    tp = type(msg)
    if tp is UserMsg and SPECS[S_USER].fast:
        o = pc_get(msg, SPECS[S_USER].offsets[0])
        if o != NULL and type(<object>o) is bytes:
            n = PyBytes_GET_SIZE(<object>o)
            res = PyBytes_FromStringAndSize(NULL, n + 1)
            PyBytes_AS_STRING(res)[0] = T_USER
            memcpy(PyBytes_AS_STRING(res) + 1, PyBytes_AS_STRING(<object>o), n)
            return res
        return _py.encode(msg)
    entry = _SPEC_OF_CLASS.get(tp)
    if entry is None:
        return _py.encode(msg)
    res = _encode_fields(entry[0], msg, entry[1])
    return _py.encode(msg) if res is None else res


def encode_node_state(state):
    res = _encode_fields(S_NODE_STATE, state, -1) if type(state) is PushNodeState else None
    return _py.encode_node_state(state) if res is None else res


def encode_header(header):
    res = _encode_fields(S_HEADER, header, -1) if type(header) is PushPullHeader else None
    return _py.encode_header(header) if res is None else res


def encode_user_msg_header(header):
    res = _encode_fields(S_USER_HEADER, header, -1) if type(header) is UserMsgHeader else None
    return _py.encode_user_msg_header(header) if res is None else res


def encode_compress(compressed):
    """`[0x09][{"Algo": 0, "Buf": compressed}]`; Algo 0 (LZW) is the only algorithm."""
    cdef Py_ssize_t n
    cdef uint8_t* w
    if type(compressed) is not bytes or PyBytes_GET_SIZE(compressed) > <Py_ssize_t>0xFFFFFFFF:
        return _py.encode_compress(compressed)
    n = PyBytes_GET_SIZE(compressed)
    res = PyBytes_FromStringAndSize(NULL, 12 + _raw_size(n))
    w = <uint8_t*>PyBytes_AS_STRING(res)
    memcpy(w, b"\x09\x82\xa4Algo\x00\xa3Buf", 12)
    _w_raw(w + 12, PyBytes_AS_STRING(compressed), n)
    return res


# -- compress wrapper ---------------------------------------------------------------------------

cdef bytes _compress_buf(const uint8_t* p, Py_ssize_t n):
    """The Buf of the compress message at `p` (its type byte included), checked as the pure
    twin's `decode_compress` checks it: Algo first, then Buf."""
    cdef Capture cap
    mp_capture(&SPECS[S_COMPRESS], p + 1, p + n, &cap, S_COMPRESS)
    algo = _convert_at(S_COMPRESS, 0, &cap) if cap.items[0].kind != MP_ABSENT else 0
    if algo != 0:
        raise GossipFormatError(f"compress: unknown algorithm {algo}")
    if cap.items[1].kind == MP_ABSENT:
        return b""
    return _convert_at(S_COMPRESS, 1, &cap)


def decode_compress(buf):
    """The LZW bytes inside a `[0x09][compress]` message (not yet decompressed)."""
    if type(buf) is not bytes:
        if type(buf) is not bytearray:
            return _py.decode_compress(buf)
        buf = bytes(buf)
    if PyBytes_GET_SIZE(buf) == 0 or (<const uint8_t*>PyBytes_AS_STRING(buf))[0] != T_COMPRESS:
        raise GossipFormatError("not a compress message")
    return _compress_buf(<const uint8_t*>PyBytes_AS_STRING(buf), PyBytes_GET_SIZE(buf))


include "gossip_codec_packet.pxi"
