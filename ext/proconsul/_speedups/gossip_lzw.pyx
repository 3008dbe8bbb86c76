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
  entry is just (offset, length) into the output and decoding a code is one memcpy.

Names, signatures, results and exceptions are those of the pure twin; the selector
proconsul/gossip/lzw.py picks one and the twin tests hold them equal.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
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


cdef int _grow(uint8_t** buf, Py_ssize_t* cap, Py_ssize_t need, Py_ssize_t limit) except -1:
    cdef Py_ssize_t new_cap = cap[0] * 2
    if new_cap < need:
        new_cap = need
    if new_cap > limit and need <= limit:
        new_cap = limit
    cdef uint8_t* grown = <uint8_t*>PyMem_Realloc(buf[0], new_cap if new_cap > 0 else 1)
    if grown == NULL:
        raise MemoryError()
    buf[0] = grown
    cap[0] = new_cap
    return 0


def decompress(data, Py_ssize_t limit=DEFAULT_LIMIT):
    """Decode a Go `compress/lzw` (LSB, literal width 8) stream, at most `limit` bytes of output.

    Same acceptance and errors as the pure twin: GossipFormatError for an undefined code, a
    stream without an end code, or output beyond `limit`.
    """
    if limit < 0:
        raise ValueError("limit must not be negative")
    cdef const uint8_t[::1] src = data
    cdef Py_ssize_t n = src.shape[0]
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t cap = 4 * n + 64
    if cap > limit:
        cap = limit
    cdef uint8_t* out = <uint8_t*>PyMem_Malloc(cap if cap > 0 else 1)
    if out == NULL:
        raise MemoryError()
    # Entry c (258 <= c <= 4095) is out[off[c] : off[c] + ln[c]].
    cdef Py_ssize_t off[MAX_CODE + 1]
    cdef uint16_t ln[MAX_CODE + 1]
    cdef Py_ssize_t o = 0
    cdef uint64_t bits = 0
    cdef int nbits = 0
    cdef int width = 9
    cdef uint32_t mask = 0x1FF
    cdef uint32_t hi = EOF_CODE
    cdef uint32_t overflow = 512
    cdef uint32_t code
    cdef bint have_last = False
    cdef Py_ssize_t last_pos = 0
    cdef Py_ssize_t length = 0
    cdef Py_ssize_t last_len = 0
    cdef object error = None
    try:
        while True:
            while nbits < width:
                if pos >= n:
                    error = "lzw: unexpected EOF"
                    break
                bits |= (<uint64_t>src[pos]) << nbits
                pos += 1
                nbits += 8
            if error is not None:
                break
            code = <uint32_t>(bits & mask)
            bits >>= width
            nbits -= width

            if code == CLEAR:
                width = 9
                mask = 0x1FF
                hi = EOF_CODE
                overflow = 512
                have_last = False
                continue
            if code == EOF_CODE:
                return PyBytes_FromStringAndSize(<char*>out, o)
            if code < CLEAR:
                length = 1
            elif code < hi or (code == hi and not have_last and hi == MAX_CODE):
                length = ln[code]
            elif code == hi and have_last:
                length = last_len + 1
            else:
                error = "lzw: invalid code"
                break
            if o + length > limit:
                error = f"lzw: decompressed data exceeds {limit} bytes"
                break
            if o + length > cap:
                _grow(&out, &cap, o + length, limit)
            if code < CLEAR:
                out[o] = <uint8_t>code
            elif code == hi and have_last and not (hi == MAX_CODE and not have_last):
                # KwKwK: the previous expansion, then its own first byte.
                memcpy(out + o, out + last_pos, last_len)
                out[o + last_len] = out[last_pos]
            else:
                memcpy(out + o, out + off[code], length)
            if have_last:
                # The new entry is the previous expansion plus this one's first byte, which
                # sits right after it in the output.
                off[hi] = last_pos
                ln[hi] = <uint16_t>(last_len + 1)
            have_last = True
            last_pos = o
            last_len = length
            o += length
            hi += 1
            if hi >= overflow:
                if width == MAX_WIDTH:
                    have_last = False
                    hi -= 1
                else:
                    width += 1
                    mask = (1u << width) - 1
                    overflow <<= 1
        raise GossipFormatError(error)
    finally:
        PyMem_Free(out)
