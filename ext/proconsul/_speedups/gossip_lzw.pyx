# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled twin of proconsul/gossip/lzw_py.py: memberlist's LZW (Go compress/lzw, LSB, width 8).

Every compressed gossip packet and every compressed push/pull passes through here, and memberlist
tries to compress every outgoing packet (keeping the result only if it is shorter), so both
directions are per-packet work. The codes, widths, clear/end handling and error cases are those
of the pure twin (its docstring has the format); this module only changes how the tables are
kept:

* compress: an open-addressing hash table of `key << 12 | code` words (key = prefix code << 8 |
  byte), sized to the input so a small packet does not clear a large table;
* decompress: no per-entry strings at all. An entry's expansion is always a run that is already
  in the output (the previous expansion plus the next byte, which directly follows it), so an
  entry is just (offset, length) into the output. Most runs in a gossip packet are one to a few
  bytes, where a libc memcpy call per code cost more than the copying, so a run moves in 8-byte
  words (the output keeps a few bytes of slack for the overshoot); codes come from a 64-bit bit
  buffer refilled a word at a time; the loop is a nogil C function with its state in locals,
  which returns to the Python-level caller only to grow the output or to finish; and an output
  of one packet's size is built on the stack, so a packet costs no heap allocation besides the
  result.

Names, signatures, results and exceptions are those of the pure twin; the selector
proconsul/gossip/lzw.py picks one and the twin tests hold them equal.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from proconsul.errors import GossipFormatError

__all__ = ["DEFAULT_LIMIT", "compress", "decompress"]

DEFAULT_LIMIT = 10 << 20

cdef enum:
    CLEAR = 256
    EOF_CODE = 257
    MAX_CODE = 4095
    MAX_WIDTH = 12
    TABLE_MAX_BITS = 13     # 8192 slots: load stays under one half with 3837 entries


cdef inline uint32_t _slot(uint32_t key, int shift) nogil:
    # Fibonacci hashing: keys are dense small integers, the multiply spreads them.
    return (key * <uint32_t>2654435761u) >> shift


def compress(data):
    """LZW-encode `data` exactly as Go's `lzw.NewWriter(w, lzw.LSB, 8)` followed by Close does."""
    cdef const uint8_t[::1] src = data
    cdef Py_ssize_t n = src.shape[0]
    cdef Py_ssize_t cap = (12 * (n + n // 3838 + 4) + 7) // 8 + 8
    cdef uint8_t* out = <uint8_t*>PyMem_Malloc(cap)
    cdef int tbits = 6
    while tbits < TABLE_MAX_BITS and (1 << tbits) < 2 * (n + 2):
        tbits += 1
    cdef uint32_t tsize = 1u << tbits
    cdef uint32_t tmask = tsize - 1
    cdef int shift = 32 - tbits
    cdef uint32_t* table = <uint32_t*>PyMem_Malloc(tsize * sizeof(uint32_t))
    if out == NULL or table == NULL:
        PyMem_Free(out)
        PyMem_Free(table)
        raise MemoryError()
    memset(table, 0, tsize * sizeof(uint32_t))

    cdef Py_ssize_t o = 0, i
    cdef uint64_t bits = CLEAR  # Go >= 1.17 starts every stream with a clear code
    cdef int nbits = 9
    cdef int width = 9
    cdef uint32_t hi = EOF_CODE
    cdef uint32_t overflow = 512
    cdef uint32_t code, literal, key, entry, h
    cdef bint have_code = n > 0
    cdef bint hit
    try:
        if have_code:
            code = src[0]
            for i in range(1, n):
                literal = src[i]
                key = (code << 8) | literal
                h = _slot(key, shift)
                hit = False
                while True:
                    entry = table[h]
                    if entry == 0:
                        break
                    if (entry >> 12) == key:
                        hit = True
                        break
                    h = (h + 1) & tmask
                if hit:
                    code = entry & 0xFFF
                    continue
                bits |= (<uint64_t>code) << nbits
                nbits += width
                while nbits >= 8:
                    out[o] = <uint8_t>bits
                    o += 1
                    bits >>= 8
                    nbits -= 8
                code = literal
                hi += 1
                if hi == overflow:
                    width += 1
                    overflow <<= 1
                if hi == MAX_CODE:
                    bits |= (<uint64_t>CLEAR) << nbits
                    nbits += width
                    while nbits >= 8:
                        out[o] = <uint8_t>bits
                        o += 1
                        bits >>= 8
                        nbits -= 8
                    width = 9
                    hi = EOF_CODE
                    overflow = 512
                    memset(table, 0, tsize * sizeof(uint32_t))
                    continue
                # h is the empty slot the probe stopped at.
                table[h] = (key << 12) | hi
            bits |= (<uint64_t>code) << nbits
            nbits += width
            hi += 1
            if hi == overflow:
                width += 1
                overflow <<= 1
            if hi == MAX_CODE:
                bits |= (<uint64_t>CLEAR) << nbits
                nbits += width
                width = 9
            while nbits >= 8:
                out[o] = <uint8_t>bits
                o += 1
                bits >>= 8
                nbits -= 8
        bits |= (<uint64_t>EOF_CODE) << nbits
        nbits += width
        while nbits > 0:
            out[o] = <uint8_t>bits
            o += 1
            bits >>= 8
            nbits -= 8
        return PyBytes_FromStringAndSize(<char*>out, o)
    finally:
        PyMem_Free(out)
        PyMem_Free(table)


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* Little-endian 64-bit load from any alignment (one mov on x86-64). */
    static inline uint64_t lzw_load64(const unsigned char *p) {
        uint64_t v;
        memcpy(&v, p, 8);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap64(v);
    #endif
        return v;
    }
    /* Copy an earlier run of the output to its end in 8-byte moves. Valid because the run ends
       at or before `dst` (so every byte that matters is read before anything is written over
       it); it writes up to 7 bytes past dst + n, which the buffer's slack absorbs. */
    static inline void lzw_run(unsigned char *dst, const unsigned char *src, Py_ssize_t n) {
        uint64_t v;
        do {
            memcpy(&v, src, 8);
            memcpy(dst, &v, 8);
            dst += 8;
            src += 8;
            n -= 8;
        } while (n > 0);
    }
    """
    uint64_t lzw_load64(const uint8_t* p) nogil
    void lzw_run(uint8_t* dst, const uint8_t* src, Py_ssize_t n) nogil

cdef enum:
    # _expand's outcomes
    DONE = 0
    TRUNCATED = 1
    TOO_LONG = 2
    INVALID_CODE = 3
    NEED_ROOM = 4

cdef enum:
    SLACK = 16          # bytes past the logical capacity, for lzw_run's overshoot
    STACK_OUT = 2048    # outputs this small (one gossip packet) never touch the heap


ctypedef struct _Decoder:
    const uint8_t* src
    Py_ssize_t n
    Py_ssize_t pos
    uint8_t* out
    Py_ssize_t o            # output so far
    Py_ssize_t cap          # usable size of out (SLACK more is allocated)
    Py_ssize_t limit
    Py_ssize_t need         # with NEED_ROOM: the size the next run needs
    uint64_t bits
    int nbits
    int width
    uint32_t hi             # the next entry to be defined
    Py_ssize_t last_pos     # the previous expansion; last_len == 0 right after a clear
    Py_ssize_t last_len
    Py_ssize_t off[MAX_CODE + 1]    # entry c (258 <= c <= 4095) is out[off[c] : off[c] + ln[c]]
    uint16_t ln[MAX_CODE + 1]


cdef int _expand(_Decoder* d) noexcept nogil:
    """Decode until the end code, an error, or a run that does not fit in d.cap (NEED_ROOM,
    with that code left unread so the call can resume after the buffer grows).

    Plain C with the state in locals: the loop is a few instructions per code, and keeping it
    apart from the Python-level function keeps its variables in registers.
    """
    cdef const uint8_t* src = d.src
    cdef Py_ssize_t n = d.n
    cdef Py_ssize_t pos = d.pos
    cdef uint8_t* out = d.out
    cdef Py_ssize_t o = d.o
    cdef Py_ssize_t cap = d.cap
    cdef uint64_t bits = d.bits
    cdef int nbits = d.nbits
    cdef int width = d.width
    cdef uint32_t hi = d.hi
    cdef Py_ssize_t last_pos = d.last_pos
    cdef Py_ssize_t last_len = d.last_len
    cdef Py_ssize_t* off = d.off
    cdef uint16_t* ln = d.ln
    cdef Py_ssize_t length
    cdef uint32_t code
    cdef int status
    while True:
        if nbits < width:
            if pos + 8 <= n:
                # Whole-word refill: the bits above nbits are the next byte's own low bits, so
                # OR-ing them in again on the next refill changes nothing.
                bits |= lzw_load64(src + pos) << nbits
                pos += (63 - nbits) >> 3
                nbits |= 56
            else:
                while nbits < width and pos < n:
                    bits |= (<uint64_t>src[pos]) << nbits
                    pos += 1
                    nbits += 8
                if nbits < width:
                    status = TRUNCATED
                    break
        code = <uint32_t>bits & ((1u << width) - 1)
        if code < CLEAR:
            if o >= cap:
                length = 1
                status = NEED_ROOM
                break
            out[o] = <uint8_t>code
            length = 1
        elif code < hi and code > EOF_CODE or (code == hi and last_len == 0 and hi == MAX_CODE):
            length = ln[code]
            if o + length > cap:
                status = NEED_ROOM
                break
            lzw_run(out + o, out + off[code], length)
        elif code == CLEAR:
            bits >>= width
            nbits -= width
            width = 9
            hi = EOF_CODE
            last_len = 0
            continue
        elif code == EOF_CODE:
            status = DONE
            break
        elif code == hi and last_len != 0:
            # KwKwK: the previous expansion, then its own first byte.
            length = last_len + 1
            if o + length > cap:
                status = NEED_ROOM
                break
            lzw_run(out + o, out + last_pos, last_len)
            out[o + last_len] = out[last_pos]
        else:
            status = INVALID_CODE
            break
        bits >>= width
        nbits -= width
        if last_len != 0:
            # The new entry is the previous expansion plus this one's first byte, which sits
            # right after it in the output.
            off[hi] = last_pos
            ln[hi] = <uint16_t>(last_len + 1)
        last_pos = o
        last_len = length
        o += length
        hi += 1
        if (hi >> width) != 0:
            if width == MAX_WIDTH:
                # Full table and no clear: Go stops adding entries (and keeps hi at 4095).
                last_len = 0
                hi -= 1
            else:
                width += 1
    if status == NEED_ROOM:
        d.need = o + length
    d.pos = pos
    d.o = o
    d.bits = bits
    d.nbits = nbits
    d.width = width
    d.hi = hi
    d.last_pos = last_pos
    d.last_len = last_len
    return status


def decompress(data, Py_ssize_t limit=DEFAULT_LIMIT):
    """Decode a Go `compress/lzw` (LSB, literal width 8) stream, at most `limit` bytes of output.

    Same acceptance and errors as the pure twin: GossipFormatError for an undefined code, a
    stream without an end code, or output beyond `limit`.
    """
    if limit < 0:
        raise ValueError("limit must not be negative")
    cdef Py_buffer view
    if type(data) is bytes:
        return _decode(<const uint8_t*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), limit)
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return _decode(<const uint8_t*>view.buf, view.len, limit)
    finally:
        PyBuffer_Release(&view)


cdef object _decode(const uint8_t* src, Py_ssize_t n, Py_ssize_t limit):
    cdef uint8_t local[STACK_OUT + SLACK]
    cdef _Decoder d
    d.src = src
    d.n = n
    d.pos = 0
    d.o = 0
    d.limit = limit
    d.bits = 0
    d.nbits = 0
    d.width = 9
    d.hi = EOF_CODE
    d.last_pos = 0
    d.last_len = 0
    d.out = local
    d.cap = STACK_OUT if limit > STACK_OUT else limit
    cdef Py_ssize_t guess = 4 * n + 64
    if guess > limit:
        guess = limit
    if guess > d.cap:
        _grow(&d, local, guess)
    cdef int status
    try:
        while True:
            status = _expand(&d)
            if status == DONE:
                return PyBytes_FromStringAndSize(<char*>d.out, d.o)
            if status != NEED_ROOM:
                break
            if d.need > limit:
                status = TOO_LONG
                break
            _grow(&d, local, d.need)
        if status == TOO_LONG:
            raise GossipFormatError(f"lzw: decompressed data exceeds {limit} bytes")
        if status == TRUNCATED:
            raise GossipFormatError("lzw: unexpected EOF")
        raise GossipFormatError("lzw: invalid code")
    finally:
        if d.out != local:
            PyMem_Free(d.out)


cdef int _grow(_Decoder* d, uint8_t* local, Py_ssize_t need) except -1:
    """Moves the output to a heap buffer of `need` (<= d.limit) bytes or more, doubling up to
    d.limit: the capacity never exceeds the limit, which is how a run past it is noticed."""
    cdef Py_ssize_t new_cap = d.cap * 2
    if new_cap < need:
        new_cap = need
    if new_cap > d.limit:
        new_cap = d.limit
    cdef uint8_t* grown
    if d.out == local:
        grown = <uint8_t*>PyMem_Malloc(new_cap + SLACK)
        if grown != NULL:
            memcpy(grown, local, d.o)
    else:
        grown = <uint8_t*>PyMem_Realloc(d.out, new_cap + SLACK)
    if grown == NULL:
        raise MemoryError()
    d.out = grown
    d.cap = new_cap
    return 0
