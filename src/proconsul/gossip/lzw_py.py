"""Pure-Python twin of memberlist's LZW layer: Go `compress/lzw`, LSB bit order, literal width 8.

memberlist wraps compressed packets and streams as `[0x09][msgpack {"Algo": 0, "Buf": ...}]`, and
`Buf` is whatever Go's `compress/lzw` writer produced. Python has no LZW in the standard library,
and a generic LZW is not enough: UDP packets are only sent compressed when that makes them
shorter, and the vectors are checked byte for byte, so `compress` must make exactly the codes Go
makes. The parameters (gossip-wire.md §2.7) are:

* codes 0..255 are literals, 256 is *clear*, 257 is *end*, the first table entry is 258;
* codes start 9 bits wide and are packed least-significant bit first; the writer widens after the
  code that makes its next free entry reach 512, 1024 or 2048, and the reader widens at the same
  point (its entry counter runs in step with the writer's);
* when the next free entry would be 4095 the writer emits *clear* (still 12 bits wide) and starts
  over with an empty table, so 4095 is never assigned by a Go writer;
* Go >= 1.17 writers start every stream with *clear*; older ones start with a literal, so the
  reader accepts both;
* the writer always finishes with *end* and pads the last byte with zero bits; the reader stops at
  *end* and ignores anything after it.

Greedy longest-match is all the writer does, so the output depends only on the table contents,
not on how the table is stored: here it is a dict keyed by `code << 8 | next byte`.

Decoding is untrusted input from the network: every malformed stream (a code not yet defined, a
stream that ends before *end*, more output than `limit`) raises GossipFormatError and nothing
else, and memory stays within `limit` plus one table. The compiled twin is
`proconsul._speedups.gossip_lzw`; the selector `proconsul.gossip.lzw` picks one.
"""

from __future__ import annotations

from proconsul.errors import GossipFormatError

__all__ = ["DEFAULT_LIMIT", "compress", "decompress"]

#: Largest decompressed size accepted by default: memberlist master caps a decompressed push/pull
#: at twice the 20 MiB stream limit; a single gossip packet is under 64 KiB, so callers that know
#: their transport pass a tighter limit.
DEFAULT_LIMIT = 10 << 20

_CLEAR = 256
_EOF = 257
_FIRST = 258
_MAX_CODE = 4095
_MAX_WIDTH = 12


def compress(data: bytes) -> bytes:
    """LZW-encode `data` exactly as Go's `lzw.NewWriter(w, lzw.LSB, 8)` followed by Close does.

    The result is what memberlist puts in `Buf`; byte identity with Go matters because the sender
    compares the compressed size with the original to decide whether to compress at all.
    """
    src = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    out = bytearray()
    bits = 0  # pending bits, LSB first
    nbits = 0
    width = 9
    hi = _EOF  # the last code assigned (or implied); the next entry is hi + 1
    overflow = 1 << 9
    table: dict[int, int] = {}

    # Go >= 1.17 always starts with a clear code, even for empty input.
    bits |= _CLEAR << nbits
    nbits += width
    n = len(src)
    if n == 0:
        code = -1
    else:
        code = src[0]
        for i in range(1, n):
            literal = src[i]
            key = (code << 8) | literal
            found = table.get(key)
            if found is not None:
                code = found
                continue
            # Emit the longest match so far; the byte that broke it starts the next one.
            bits |= code << nbits
            nbits += width
            while nbits >= 8:
                out.append(bits & 0xFF)
                bits >>= 8
                nbits -= 8
            code = literal
            hi += 1
            if hi == overflow:
                width += 1
                overflow <<= 1
            if hi == _MAX_CODE:
                # Table full: Go emits clear at the current width and starts a new table
                # without recording the entry that would have been 4095.
                bits |= _CLEAR << nbits
                nbits += width
                width = 9
                hi = _EOF
                overflow = 1 << 9
                table.clear()
                continue
            table[key] = hi

    if code >= 0:
        bits |= code << nbits
        nbits += width
        hi += 1
        if hi == overflow:
            width += 1
            overflow <<= 1
        if hi == _MAX_CODE:
            bits |= _CLEAR << nbits
            nbits += width
            width = 9
    bits |= _EOF << nbits
    nbits += width
    while nbits > 0:
        out.append(bits & 0xFF)
        bits >>= 8
        nbits -= 8
    return bytes(out)


def decompress(data: bytes, limit: int = DEFAULT_LIMIT) -> bytes:
    """Decode a Go `compress/lzw` (LSB, literal width 8) stream, at most `limit` bytes of output.

    Mirrors Go's reader: it accepts streams with or without the leading clear code and with
    anything after the end code, and it raises GossipFormatError where Go returns an error
    ("invalid code", "unexpected EOF") and when the output would exceed `limit`. An empty result
    (a stream of only clear + end) is returned as `b""`; whether that is acceptable is the
    caller's business (memberlist master rejects it, 0.2.2 does not).
    """
    if limit < 0:
        raise ValueError("limit must not be negative")
    src = data if isinstance(data, bytes) else bytes(data)
    n = len(src)
    pos = 0
    bits = 0
    nbits = 0
    width = 9
    hi = _EOF  # the next entry to be defined
    overflow = 1 << 9
    last: bytes | None = None  # expansion of the previous code; None right after a clear
    # Index = code; literals are fixed, entries from 258 on are (re)assigned as they are defined.
    table: list[bytes] = [bytes((i,)) for i in range(256)] + [b"", b""]
    table.extend(b"" for _ in range(_MAX_CODE + 1 - len(table)))
    out = bytearray()
    size = 0
    mask = (1 << width) - 1

    while True:
        while nbits < width:
            if pos >= n:
                raise GossipFormatError("lzw: unexpected EOF")
            bits |= src[pos] << nbits
            pos += 1
            nbits += 8
        code = bits & mask
        bits >>= width
        nbits -= width

        if code < _CLEAR:
            entry = table[code]
        elif code == _CLEAR:
            width = 9
            mask = 0x1FF
            hi = _EOF
            overflow = 1 << 9
            last = None
            continue
        elif code == _EOF:
            return bytes(out)
        elif code < hi:
            entry = table[code]
        elif code == hi and last is not None:
            # The code being defined by this very step ("KwKwK"): the previous expansion
            # followed by its own first byte.
            entry = last + last[:1]
        elif code == hi and hi == _MAX_CODE:
            # Go's reader keeps decoding once the table is full without a clear; entry 4095 was
            # defined by the step that filled it.
            entry = table[code]
        else:
            raise GossipFormatError("lzw: invalid code")

        size += len(entry)
        if size > limit:
            raise GossipFormatError(f"lzw: decompressed data exceeds {limit} bytes")
        out += entry
        if last is not None:
            table[hi] = last + entry[:1]
        last = entry
        hi += 1
        if hi >= overflow:
            if width == _MAX_WIDTH:
                # Full table and no clear: Go stops adding entries (and keeps hi at 4095).
                last = None
                hi -= 1
            else:
                width += 1
                mask = (1 << width) - 1
                overflow <<= 1
