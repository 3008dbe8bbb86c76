# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of proconsul/raft/log_codec_py.py: Raft log record framing and the segment
recovery scan.

Framing runs on every append and the scan over every byte of every segment at start-up, so both
work on C buffers here. The checksum is XXH64 computed in C from its published algorithm, which
keeps a per-record Python call out of the loop; the tests hold it equal to the xxhash package
that the pure twin calls. Names, signatures, bytes and error messages are those of the pure twin
(its docstring documents the format and the recovery rule); the selector
proconsul/raft/log_codec.py picks one.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from array import array

from proconsul.errors import LogCorruption
from proconsul.raft.log import Log
from proconsul.raft.log_codec_py import ScanResult

__all__ = [
    "FORMAT_VERSION",
    "RECORD_OVERHEAD",
    "ScanResult",
    "decode_entries",
    "encode_entries",
    "scan",
]

cdef enum:
    C_VERSION = 1
    C_OVERHEAD = 32
    C_HEAD = 24

FORMAT_VERSION = C_VERSION
RECORD_OVERHEAD = C_OVERHEAD

cdef object _MAX_U64 = (1 << 64) - 1

cdef uint64_t P1 = 0x9E3779B185EBCA87ULL
cdef uint64_t P2 = 0xC2B2AE3D27D4EB4FULL
cdef uint64_t P3 = 0x165667B19E3779F9ULL
cdef uint64_t P4 = 0x85EBCA77C2B2AE63ULL
cdef uint64_t P5 = 0x27D4EB2F165667C5ULL


# -- little-endian access that is correct on any host (compilers fold it into one load) ------

cdef inline uint64_t rd64(const uint8_t* p) noexcept nogil:
    return (<uint64_t>p[0] | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16)
            | (<uint64_t>p[3] << 24) | (<uint64_t>p[4] << 32) | (<uint64_t>p[5] << 40)
            | (<uint64_t>p[6] << 48) | (<uint64_t>p[7] << 56))


cdef inline uint32_t rd32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16)
            | (<uint32_t>p[3] << 24))


cdef inline void wr64(uint8_t* p, uint64_t v) noexcept nogil:
    cdef int i
    for i in range(8):
        p[i] = <uint8_t>(v >> (8 * i))


cdef inline void wr32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>v
    p[1] = <uint8_t>(v >> 8)
    p[2] = <uint8_t>(v >> 16)
    p[3] = <uint8_t>(v >> 24)


# -- XXH64, seed 0 ---------------------------------------------------------------------------

cdef inline uint64_t rotl(uint64_t x, int r) noexcept nogil:
    return (x << r) | (x >> (64 - r))


cdef inline uint64_t xround(uint64_t acc, uint64_t lane) noexcept nogil:
    acc = acc + lane * P2
    acc = rotl(acc, 31)
    return acc * P1


cdef inline uint64_t xmerge(uint64_t acc, uint64_t v) noexcept nogil:
    acc = acc ^ xround(0, v)
    return acc * P1 + P4


cdef uint64_t xxh64(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef const uint8_t* end = p + n
    cdef const uint8_t* limit
    cdef uint64_t v1, v2, v3, v4, h
    if n >= 32:
        limit = end - 32
        v1 = P1 + P2
        v2 = P2
        v3 = 0
        v4 = 0 - P1
        while p <= limit:
            v1 = xround(v1, rd64(p))
            v2 = xround(v2, rd64(p + 8))
            v3 = xround(v3, rd64(p + 16))
            v4 = xround(v4, rd64(p + 24))
            p += 32
        h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)
        h = xmerge(h, v1)
        h = xmerge(h, v2)
        h = xmerge(h, v3)
        h = xmerge(h, v4)
    else:
        h = P5
    h = h + <uint64_t>n
    while p + 8 <= end:
        h = h ^ xround(0, rd64(p))
        h = rotl(h, 27) * P1 + P4
        p += 8
    if p + 4 <= end:
        h = h ^ (<uint64_t>rd32(p) * P1)
        h = rotl(h, 23) * P2 + P3
        p += 4
    while p < end:
        h = h ^ (<uint64_t>p[0] * P5)
        h = rotl(h, 11) * P1
        p += 1
    h = h ^ (h >> 33)
    h = h * P2
    h = h ^ (h >> 29)
    h = h * P3
    h = h ^ (h >> 32)
    return h


# -- encoding --------------------------------------------------------------------------------

cdef inline void _check_fields(object index, object term, object kind, Py_ssize_t size) except *:
    # the same checks, order and words as the pure twin
    if not isinstance(index, int) or not 0 < index <= _MAX_U64:
        raise ValueError(f"log index {index!r} is out of range")
    if not isinstance(term, int) or not 0 <= term <= _MAX_U64:
        raise ValueError(f"log term {term!r} is out of range")
    if not isinstance(kind, int) or not 0 <= kind <= 255:
        raise ValueError(f"log type {kind!r} is out of range")
    if size > 0xFFFFFFFF:
        raise ValueError(f"log data of {size} bytes is too large for one record")


cdef struct Fields:
    uint64_t index
    uint64_t term
    uint8_t kind


def encode_entries(logs):
    """Frame a batch as one buffer, so a whole group commit is a single write.

    The indexes must be consecutive: a batch is always one run of the log, and catching a gap
    here keeps it out of the file.
    """
    cdef list items = logs if type(logs) is list else list(logs)
    cdef Py_ssize_t count = len(items)
    cdef Py_ssize_t total = 0
    cdef Py_ssize_t i, size
    cdef list datas = []
    cdef object log, data, index, term, kind
    cdef uint64_t c_prev = 0
    cdef Fields* fields
    cdef uint8_t* out
    cdef uint8_t* rec
    cdef bytes result
    if count == 0:
        return b""
    fields = <Fields*>PyMem_Malloc(count * sizeof(Fields))
    if fields == NULL:
        raise MemoryError()
    try:
        # one pass validates everything (in the pure twin's order) before any byte is built
        for i in range(count):
            log = items[i]
            index = log.index
            term = log.term
            kind = log.type
            data = log.data
            if not isinstance(data, bytes):
                data = memoryview(data).tobytes()
            size = PyBytes_GET_SIZE(data)
            _check_fields(index, term, kind, size)
            fields[i].index = index
            if i > 0 and fields[i].index != c_prev + 1:
                raise ValueError(f"log indexes are not consecutive: {index} after {c_prev}")
            c_prev = fields[i].index
            fields[i].term = term
            fields[i].kind = <uint8_t>(<int>kind)
            datas.append(data)
            total += size + C_OVERHEAD
        result = PyBytes_FromStringAndSize(NULL, total)
        out = <uint8_t*>PyBytes_AS_STRING(result)
        for i in range(count):
            data = datas[i]
            size = PyBytes_GET_SIZE(data)
            rec = out
            wr32(rec, <uint32_t>size)
            rec[4] = fields[i].kind
            rec[5] = C_VERSION
            rec[6] = 0
            rec[7] = 0
            wr64(rec + 8, fields[i].index)
            wr64(rec + 16, fields[i].term)
            if size:
                memcpy(rec + C_HEAD, PyBytes_AS_STRING(data), size)
            wr64(rec + C_HEAD + size, xxh64(rec, C_HEAD + size))
            out += size + C_OVERHEAD
    finally:
        PyMem_Free(fields)
    return result


# -- decoding and scanning -------------------------------------------------------------------

cdef enum:
    OK = 0
    TRUNCATED = 1
    BAD_HEADER = 2
    PAST_END = 3
    MISMATCH = 4


cdef inline int _problem(const uint8_t* base, Py_ssize_t pos, Py_ssize_t size) noexcept nogil:
    cdef const uint8_t* p = base + pos
    cdef Py_ssize_t length
    if size - pos < C_OVERHEAD:
        return TRUNCATED
    if p[5] != C_VERSION or p[6] != 0 or p[7] != 0:
        return BAD_HEADER
    length = <Py_ssize_t>rd32(p)
    if length > size - pos - C_OVERHEAD:
        return PAST_END
    if rd64(p + C_HEAD + length) != xxh64(p, C_HEAD + length):
        return MISMATCH
    return OK


cdef str _reason(int problem, const uint8_t* base, Py_ssize_t pos):
    if problem == TRUNCATED:
        return "truncated header"
    if problem == BAD_HEADER:
        return "bad header"
    if problem == PAST_END:
        return f"length {rd32(base + pos)} runs past the end"
    if problem == MISMATCH:
        return "checksum mismatch"
    return ""


def decode_entries(buf, Py_ssize_t offset=0, str segment="<buffer>"):
    """Decode the whole records from `offset`, stopping before a record cut short by the end
    of `buf`; returns them and the offset after the last one.

    Stopping rather than failing at a short record lets a reader decode a chunk read from the
    middle of a segment. A complete record that does not verify raises LogCorruption.
    """
    cdef const uint8_t[::1] view = memoryview(buf).cast("B")
    cdef Py_ssize_t size = view.shape[0]
    cdef const uint8_t* base
    cdef const uint8_t* p
    cdef Py_ssize_t pos, length
    cdef list logs = []
    if not 0 <= offset <= size:
        raise ValueError(f"offset {offset} is outside a buffer of {size} bytes")
    if size == 0:
        return logs, 0
    base = &view[0]
    pos = offset
    while size - pos >= C_OVERHEAD:
        p = base + pos
        if p[5] != C_VERSION or p[6] != 0 or p[7] != 0:
            raise LogCorruption(f"log segment {segment}: bad record header at byte offset {pos}")
        length = <Py_ssize_t>rd32(p)
        if length > size - pos - C_OVERHEAD:
            break
        if rd64(p + C_HEAD + length) != xxh64(p, C_HEAD + length):
            raise LogCorruption(f"log segment {segment}: checksum mismatch at byte offset {pos}")
        logs.append(Log(rd64(p + 8), rd64(p + 16), p[4],
                        PyBytes_FromStringAndSize(<const char*>(p + C_HEAD), length)))
        pos += length + C_OVERHEAD
    return logs, pos


cdef Py_ssize_t _next_whole(const uint8_t* base, Py_ssize_t start, Py_ssize_t size) noexcept nogil:
    """Offset of the first whole record at or after `start`, or -1."""
    cdef Py_ssize_t pos = start
    cdef const uint8_t* p
    while size - pos >= C_OVERHEAD:
        p = base + pos
        if p[5] == C_VERSION and p[6] == 0 and p[7] == 0 and _problem(base, pos, size) == OK:
            return pos
        pos += 1
    return -1


def scan(buf, str segment="<buffer>", bint last=True):
    """Walk a segment for recovery under the rule in the pure twin's docstring: returns the
    whole records and where the valid data ends, or raises LogCorruption for damage that cannot
    be a torn tail. `last` says whether this is the newest segment, the only one that may be
    torn.
    """
    cdef const uint8_t[::1] view = memoryview(buf).cast("B")
    cdef Py_ssize_t size = view.shape[0]
    cdef const uint8_t* base = NULL
    cdef Py_ssize_t pos = 0, after, count = 0, room = 0
    cdef uint64_t index, first = 0, expected = 0
    cdef uint64_t* offs = NULL
    cdef uint64_t* grown
    cdef int problem = OK
    cdef object offsets = array("Q")
    if size:
        base = &view[0]
    try:
        while pos < size:
            problem = _problem(base, pos, size)
            if problem != OK:
                break
            index = rd64(base + pos + 8)
            if (expected and index != expected) or index == 0:
                want = expected if expected else "at least 1"
                raise LogCorruption(
                    f"log segment {segment}: record at byte offset {pos} has index {index}, "
                    f"expected {want}"
                )
            if not first:
                first = index
            expected = index + 1
            if count == room:
                room = room * 2 if room else 1024
                grown = <uint64_t*>PyMem_Realloc(offs, room * sizeof(uint64_t))
                if grown == NULL:
                    raise MemoryError()
                offs = grown
            offs[count] = <uint64_t>pos
            count += 1
            pos += <Py_ssize_t>rd32(base + pos) + C_OVERHEAD
        if count:
            offsets.frombytes(PyBytes_FromStringAndSize(<const char*>offs,
                                                        count * sizeof(uint64_t)))
    finally:
        PyMem_Free(offs)
    if pos >= size:
        return ScanResult(first, offsets, pos, size, "")
    reason = _reason(problem, base, pos)
    if not last:
        raise LogCorruption(
            f"log segment {segment}: corrupt record at byte offset {pos} ({reason}) in a "
            f"segment that is not the last"
        )
    with nogil:
        after = _next_whole(base, pos + 1, size)
    if after >= 0:
        raise LogCorruption(
            f"log segment {segment}: corrupt record at byte offset {pos} ({reason}) followed "
            f"by a valid record at byte offset {after}"
        )
    return ScanResult(first, offsets, pos, size, reason)
