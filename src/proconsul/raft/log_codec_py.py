"""Pure-Python twin of the Raft log record framing and the segment recovery scan.

Every append frames its entries here and every start-up scans every segment here, so this is one
of the project's hot paths with a compiled twin (`proconsul._speedups.raft_log`) of identical
names, signatures, bytes and messages; `log_codec.py` picks one. It is sans-IO: bytes in, values
out, and values in, bytes out. The file log store owns the files.

A segment is records back to back, nothing else. A record is, little-endian::

    offset  size  field
    0       4     payload length N
    4       1     log type
    5       1     format version, 1
    6       2     reserved, zero
    8       8     index (>= 1)
    16      8     term
    24      N     payload
    24+N    8     XXH64 (seed 0) of bytes 0 .. 24+N of the record

A record is *whole* when 32 bytes remain for header and checksum, the version and reserved
fields hold 1 and 0, the payload ends inside the buffer and the checksum matches.

Recovery rule (`scan`). Records are walked from offset 0; each whole record must carry the index
after the previous one. The walk stops at the first record X that is not whole, then:

* in a segment that is not the last one, X is corruption: a segment is only left behind after
  everything in it was made durable, so nothing in it can be torn;
* in the last segment, every byte offset after X is searched for a whole record. If one exists,
  X is corruption in the middle (a torn write cannot be followed by data that verifies); if none
  does, the bytes from X on are a torn tail and the segment is cut back to X.

A whole record with the wrong index is always corruption, since its checksum proves it holds
the bytes that were written. Corruption raises LogCorruption naming the segment and the byte
offset; it is never skipped, because skipping could drop an acknowledged entry.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from typing import NamedTuple

from xxhash import xxh64_intdigest

from proconsul.errors import LogCorruption
from proconsul.raft.log import Log

__all__ = [
    "FORMAT_VERSION",
    "RECORD_OVERHEAD",
    "ScanResult",
    "decode_entries",
    "encode_entries",
    "scan",
]

#: Value of the version byte of every record written by this code.
FORMAT_VERSION = 1
#: Bytes a record adds around its payload: the 24-byte header and the 8-byte checksum.
RECORD_OVERHEAD = 32

_HEADER = struct.Struct("<IBBHQQ")
_SUM = struct.Struct("<Q")
_HEAD = _HEADER.size
_MAX_U64 = (1 << 64) - 1
_MAX_LEN = (1 << 32) - 1
# bytes 5..7 of every whole record: the version and the zero reserved field, the anchor the
# search for a record after a bad one looks for
_MARK = bytes([FORMAT_VERSION, 0, 0])


class ScanResult(NamedTuple):
    """What a recovery scan found in one segment.

    The offsets are kept instead of decoded entries so a store can index a 64 MiB segment
    without holding its payloads in memory.
    """

    #: index of the first whole record, 0 when there is none
    first_index: int
    #: byte offset of every whole record, in index order
    offsets: array[int]
    #: where the valid data ends: the length the segment is cut back to
    end: int
    #: bytes scanned
    size: int
    #: why the bytes after `end` were treated as a torn tail, "" when there were none
    reason: str

    @property
    def torn(self) -> bool:
        """Whether a torn tail follows the whole records."""
        return self.end < self.size

    @property
    def last_index(self) -> int:
        """Index of the last whole record, 0 when there is none."""
        return self.first_index + len(self.offsets) - 1 if self.offsets else 0


def _check_fields(index: object, term: object, kind: object, size: int) -> None:
    # explicit range checks so both twins refuse the same inputs with the same words
    if not isinstance(index, int) or not 0 < index <= _MAX_U64:
        raise ValueError(f"log index {index!r} is out of range")
    if not isinstance(term, int) or not 0 <= term <= _MAX_U64:
        raise ValueError(f"log term {term!r} is out of range")
    if not isinstance(kind, int) or not 0 <= kind <= 255:
        raise ValueError(f"log type {kind!r} is out of range")
    if size > _MAX_LEN:
        raise ValueError(f"log data of {size} bytes is too large for one record")


def encode_entries(logs: Sequence[Log]) -> bytes:
    """Frame a batch as one buffer, so a whole group commit is a single write.

    The indexes must be consecutive: a batch is always one run of the log, and catching a gap
    here keeps it out of the file.
    """
    if not logs:
        return b""
    out = bytearray()
    previous = -1
    pack = _HEADER.pack
    pack_sum = _SUM.pack
    for log in logs:
        index, term, kind, data = log.index, log.term, log.type, log.data
        if not isinstance(data, bytes):
            data = memoryview(data).tobytes()
        _check_fields(index, term, kind, len(data))
        if previous >= 0 and index != previous + 1:
            raise ValueError(f"log indexes are not consecutive: {index} after {previous}")
        previous = index
        record = pack(len(data), kind, FORMAT_VERSION, 0, index, term) + data
        out += record
        out += pack_sum(xxh64_intdigest(record))
    return bytes(out)


def _problem(view: memoryview, pos: int, size: int) -> str:
    """Why the record at `pos` is not whole, or "" when it is."""
    if size - pos < RECORD_OVERHEAD:
        return "truncated header"
    length, _kind, version, reserved, _index, _term = _HEADER.unpack_from(view, pos)
    if version != FORMAT_VERSION or reserved != 0:
        return "bad header"
    stop = pos + _HEAD + length
    if stop + 8 > size:
        return f"length {length} runs past the end"
    if _SUM.unpack_from(view, stop)[0] != xxh64_intdigest(view[pos:stop]):
        return "checksum mismatch"
    return ""


def decode_entries(
    buf: bytes | bytearray | memoryview, offset: int = 0, segment: str = "<buffer>"
) -> tuple[list[Log], int]:
    """Decode the whole records from `offset`, stopping before a record cut short by the end
    of `buf`; returns them and the offset after the last one.

    Stopping rather than failing at a short record lets a reader decode a chunk read from the
    middle of a segment. A complete record that does not verify raises LogCorruption.
    """
    view = memoryview(buf).cast("B")
    size = len(view)
    if not 0 <= offset <= size:
        raise ValueError(f"offset {offset} is outside a buffer of {size} bytes")
    logs: list[Log] = []
    pos = offset
    unpack = _HEADER.unpack_from
    while size - pos >= RECORD_OVERHEAD:
        length, kind, version, reserved, index, term = unpack(view, pos)
        if version != FORMAT_VERSION or reserved != 0:
            raise LogCorruption(f"log segment {segment}: bad record header at byte offset {pos}")
        stop = pos + _HEAD + length
        if stop + 8 > size:
            break
        if _SUM.unpack_from(view, stop)[0] != xxh64_intdigest(view[pos:stop]):
            raise LogCorruption(f"log segment {segment}: checksum mismatch at byte offset {pos}")
        logs.append(Log(index, term, kind, bytes(view[pos + _HEAD:stop])))
        pos = stop + 8
    return logs, pos


def _next_whole(view: memoryview, data: bytes, start: int, size: int) -> int:
    """Offset of the first whole record at or after `start`, or -1."""
    find = data.find
    at = find(_MARK, start + 5)
    while at >= 0:
        pos = at - 5
        if size - pos < RECORD_OVERHEAD:
            return -1
        if not _problem(view, pos, size):
            return pos
        at = find(_MARK, at + 1)
    return -1


def scan(buf: bytes | bytearray | memoryview, segment: str = "<buffer>",
         last: bool = True) -> ScanResult:
    """Walk a segment for recovery under the rule in the module docstring: returns the whole
    records and where the valid data ends, or raises LogCorruption for damage that cannot be a
    torn tail. `last` says whether this is the newest segment, the only one that may be torn.
    """
    view = memoryview(buf).cast("B")
    size = len(view)
    offsets: array[int] = array("Q")
    first = 0
    expected = 0
    pos = 0
    reason = ""
    unpack = _HEADER.unpack_from
    while pos < size:
        reason = _problem(view, pos, size)
        if reason:
            break
        length, _kind, _version, _reserved, index, _term = unpack(view, pos)
        if (expected and index != expected) or index == 0:
            want = expected if expected else "at least 1"
            raise LogCorruption(
                f"log segment {segment}: record at byte offset {pos} has index {index}, "
                f"expected {want}"
            )
        if not first:
            first = index
        expected = index + 1
        offsets.append(pos)
        pos += length + RECORD_OVERHEAD
    if pos >= size:
        return ScanResult(first, offsets, pos, size, "")
    if not last:
        raise LogCorruption(
            f"log segment {segment}: corrupt record at byte offset {pos} ({reason}) in a "
            f"segment that is not the last"
        )
    after = _next_whole(view, bytes(view) if not isinstance(buf, bytes) else buf, pos + 1, size)
    if after >= 0:
        raise LogCorruption(
            f"log segment {segment}: corrupt record at byte offset {pos} ({reason}) followed "
            f"by a valid record at byte offset {after}"
        )
    return ScanResult(first, offsets, pos, size, reason)
