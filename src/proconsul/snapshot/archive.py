"""The snapshot archive that `/v1/snapshot` serves and accepts, laid out as Consul lays it out.

Backup tooling treats `consul snapshot save` output as an opaque file, but operators also move
archives between clusters, inspect them, and restore them in a hurry after an outage.  A restore
replaces everything a cluster holds, so an archive is checked completely (compression, tar layout,
SHA-256 sums, metadata) before anything trusts a byte of it, and every problem comes back as a
`SnapshotError` whose text says what is wrong, in Consul's words where Consul has words for it.

The layout (Consul's snapshot/archive.go and snapshot/snapshot.go): one gzip stream holding a
tar with exactly three regular files in this order,

- `meta.json`: hashicorp/raft's `SnapshotMeta` as JSON (`Version`, `ID`, `Index`, `Term`,
  `Peers`, `Configuration`, `ConfigurationIndex`, `Size`) followed by a newline;
- `state.bin`: the FSM's own serialisation, `Size` bytes long;
- `SHA256SUMS`: one `<hex sha256>  <name>` line for each of the two files above;

then the tar end-of-archive marker (two zero blocks) and nothing after it.  Go's tar writer adds no
record padding, and Consul's verifier rejects any decompressed byte left after the marker, so this
writer pads nothing either: the archives it makes verify under `consul snapshot inspect`.

`state.bin` is proconsul's FSM snapshot: the msgpack map of `Store.dump()`.  `inspect_state`
walks it record by record to report what `consul snapshot inspect` reports: how many records of
each type and how many bytes they take, plus the KV key-prefix breakdown.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import time
import zlib
from collections.abc import Mapping
from typing import Any, BinaryIO

import msgpack

from proconsul.errors import SnapshotError

META_NAME = "meta.json"
STATE_NAME = "state.bin"
SUMS_NAME = "SHA256SUMS"
#: The members of an archive, in the only order Consul writes them.
MEMBERS = (META_NAME, STATE_NAME, SUMS_NAME)

#: hashicorp/raft's SnapshotVersionMin and SnapshotVersionMax.
SNAPSHOT_VERSION_MIN = 0
SNAPSHOT_VERSION_MAX = 1

#: Consul's default for `snapshot inspect -kvdepth`.
DEFAULT_KV_DEPTH = 2

_BLOCK = tarfile.BLOCKSIZE
_END_MARKER = bytes(2 * _BLOCK)
_GZIP_MAGIC = b"\x1f\x8b"
#: Go's compress/gzip DefaultCompression is flate level 6.
_GZIP_LEVEL = 6
_UINT64_MAX = (1 << 64) - 1
_INT64_MAX = (1 << 63) - 1
_SUM_LINE = re.compile(r"([0-9a-fA-F]{64})  (\S+)")

# Top-level keys of a `Store.dump()` map whose values are lists of records, with the message-type
# name Consul's inspect prints for the equivalent records.  Consul snapshots nodes, services and
# checks all as RegisterRequest records, so all three count as `Register` here too, and each
# coordinate as a one-element CoordinateBatchUpdate record.
_RECORD_TYPES = {
    "KVs": "KVS",
    "Tombstones": "Tombstone",
    "Sessions": "Session",
    "Nodes": "Register",
    "Services": "Register",
    "Checks": "Register",
    "Coordinates": "CoordinateBatchUpdate",
}
# The table-index map: Consul snapshots each table's index as one `Index` record.
_INDEX_KEY = "Index"
_INDEX_TYPE = "Index"
# Header fields of the dump, not records (Consul's snapshot header is not counted either).
_HEADER_KEYS = frozenset({"Version"})


# ----------------------------------------------------------------------------------------------
# Metadata


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_uint(meta: Mapping[str, Any], key: str, high: int, required: bool) -> None:
    if key not in meta:
        if required:
            raise SnapshotError(f"snapshot metadata is missing {json.dumps(key)}")
        return
    value = meta[key]
    if not _is_int(value) or not 0 <= value <= high:
        raise SnapshotError(
            f"snapshot metadata field {json.dumps(key)} must be an unsigned integer, "
            f"not {json.dumps(value)}")


def check_meta(meta: Mapping[str, Any], state_size: int) -> None:
    """Refuse metadata Raft could not restore from, or that does not describe `state_size` bytes.

    Both the writer and the reader call this, so nothing is ever written that reading rejects.
    Unknown extra fields are allowed because Go's JSON decoding ignores them.
    """
    if "ID" not in meta:
        raise SnapshotError('snapshot metadata is missing "ID"')
    if not isinstance(meta["ID"], str):
        raise SnapshotError(
            f'snapshot metadata field "ID" must be a string, not {json.dumps(meta["ID"])}')
    _check_uint(meta, "Index", _UINT64_MAX, True)
    _check_uint(meta, "Term", _UINT64_MAX, True)
    _check_uint(meta, "Size", _INT64_MAX, True)
    _check_uint(meta, "ConfigurationIndex", _UINT64_MAX, False)
    if "Version" not in meta:
        raise SnapshotError('snapshot metadata is missing "Version"')
    version = meta["Version"]
    if not _is_int(version) or not SNAPSHOT_VERSION_MIN <= version <= SNAPSHOT_VERSION_MAX:
        raise SnapshotError(
            f"unsupported snapshot version {json.dumps(version)} (this agent restores versions "
            f"{SNAPSHOT_VERSION_MIN} to {SNAPSHOT_VERSION_MAX})")
    if meta.get("Peers") is not None and not isinstance(meta["Peers"], str):
        raise SnapshotError('snapshot metadata field "Peers" must be base64 text or null')
    configuration = meta.get("Configuration")
    if configuration is not None and not isinstance(configuration, dict):
        raise SnapshotError('snapshot metadata field "Configuration" must be an object or null')
    if meta["Size"] != state_size:
        raise SnapshotError(
            f"snapshot metadata gives Size {meta['Size']} but {STATE_NAME} holds "
            f"{state_size} bytes")


def _encode_meta(meta: Mapping[str, Any]) -> bytes:
    """JSON as Go's json.Encoder writes it: compact, HTML characters escaped, newline-ended."""
    try:
        text = json.dumps(dict(meta), ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"failed to encode snapshot metadata: {exc}") from None
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return (text + "\n").encode("utf-8")


def _decode_meta(raw: bytes) -> dict[str, Any]:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SnapshotError(f"failed to decode snapshot metadata: {exc}") from None
    if not isinstance(meta, dict):
        raise SnapshotError("failed to decode snapshot metadata: not a JSON object")
    return meta


# ----------------------------------------------------------------------------------------------
# Writing


def _tar_member(name: str, body: bytes, mtime: int) -> bytes:
    """One USTAR member as Go's archive/tar writes it: mode 0600, padded to whole blocks."""
    info = tarfile.TarInfo(name)
    info.size = len(body)
    info.mode = 0o600
    info.mtime = mtime
    info.type = tarfile.REGTYPE
    header = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    return header + body + bytes(-len(body) % _BLOCK)


def _sums(files: list[tuple[str, bytes]]) -> bytes:
    return "".join(f"{hashlib.sha256(body).hexdigest()}  {name}\n"
                   for name, body in files).encode("ascii")


def write_archive(meta: Mapping[str, Any], state: bytes, *, mtime: float | None = None) -> bytes:
    """A gzipped snapshot archive of `state` described by `meta` (raft's SnapshotMeta fields).

    The metadata is written in the caller's key order and must already be valid for `state`
    (its `Size` equal to `len(state)`): an archive that would fail verification is never made.
    `mtime` (the tar members' modification time, seconds) defaults to now, as in Consul.
    """
    check_meta(meta, len(state))
    meta_raw = _encode_meta(meta)
    stamp = int(time.time() if mtime is None else mtime)
    sums = _sums([(META_NAME, meta_raw), (STATE_NAME, state)])
    tar = b"".join((_tar_member(META_NAME, meta_raw, stamp),
                    _tar_member(STATE_NAME, state, stamp),
                    _tar_member(SUMS_NAME, sums, stamp),
                    _END_MARKER))
    out: bytes = zlib.compress(tar, _GZIP_LEVEL, wbits=16 + zlib.MAX_WBITS)
    # zlib leaves the gzip OS byte as "Unix"; Go's writer leaves it at 255 ("unknown").
    return out[:9] + b"\xff" + out[10:]


# ----------------------------------------------------------------------------------------------
# Reading


def _gunzip(raw: bytes) -> bytes:
    """The whole decompressed stream; every gzip member's CRC-32 and length are checked.

    Concatenated gzip members are read as one stream (Go's gzip reader does the same); anything
    after the last member that is not another member is an error, as it is for Go.
    """
    if raw[:2] != _GZIP_MAGIC:
        raise SnapshotError("failed to decompress snapshot: gzip: invalid header")
    parts: list[bytes] = []
    rest = raw
    while rest:
        if rest[:2] != _GZIP_MAGIC:
            raise SnapshotError(
                f"failed to decompress snapshot: gzip: invalid header "
                f"({len(rest)} bytes after the end of the compressed stream)")
        stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            parts.append(stream.decompress(rest))
            parts.append(stream.flush())
        except zlib.error as exc:
            raise SnapshotError(f"failed to decompress snapshot: {exc}") from None
        if not stream.eof:
            raise SnapshotError("failed to decompress snapshot: unexpected EOF "
                                "(the compressed stream is truncated)")
        rest = stream.unused_data
    return b"".join(parts)


def _read_error(text: str) -> SnapshotError:
    return SnapshotError(f"failed to read snapshot file: {text}")


def _untar(tar: bytes) -> dict[str, bytes]:
    """The three members by name, after checking their names, order, types and sizes."""
    found: dict[str, bytes] = {}
    offset = 0
    for expected in MEMBERS:
        block = tar[offset:offset + _BLOCK]
        if not block or block == bytes(_BLOCK):
            raise _read_error(f"snapshot is missing {json.dumps(expected)}")
        if len(block) < _BLOCK:
            raise _read_error("failed reading snapshot: unexpected EOF in a tar header")
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise _read_error(
                f"failed reading snapshot: invalid tar header at offset {offset} ({exc})") from None
        if info.size < 0:
            raise _read_error(
                f"failed reading snapshot: invalid tar header at offset {offset} (negative size)")
        name = info.name
        if name != expected:
            if name in found:
                raise _read_error(f"duplicate file {json.dumps(name)} in snapshot")
            if name in MEMBERS:
                raise _read_error(f"file {json.dumps(name)} is out of order in snapshot "
                                  f"(expected {json.dumps(expected)})")
            raise _read_error(f"unexpected file {json.dumps(name)} in snapshot")
        if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise _read_error(f"{json.dumps(name)} in snapshot is not a regular file")
        start = offset + _BLOCK
        body = tar[start:start + info.size]
        if len(body) != info.size:
            raise _read_error(f"failed reading snapshot: unexpected EOF in {json.dumps(name)}")
        found[name] = body
        offset = start + info.size + (-info.size % _BLOCK)
    tail = tar[offset:]
    if tail != _END_MARKER:
        if len(tail) >= _BLOCK and tail[:_BLOCK] != bytes(_BLOCK):
            try:
                extra = tarfile.TarInfo.frombuf(tail[:_BLOCK], "utf-8", "surrogateescape").name
            except tarfile.HeaderError:
                extra = ""
            if extra:
                raise _read_error(f"unexpected file {json.dumps(extra)} in snapshot")
        if tail.startswith(_END_MARKER):
            raise _read_error(f"{len(tail) - len(_END_MARKER)} unread uncompressed bytes remain")
        raise _read_error("failed reading snapshot: missing or damaged end-of-archive marker")
    return found


def _verify_sums(sums: bytes, files: dict[str, bytes]) -> None:
    def fail(text: str) -> SnapshotError:
        return _read_error(f"failed checking integrity of snapshot: {text}")

    try:
        text = sums.decode("ascii")
    except UnicodeDecodeError:
        raise fail(f"{SUMS_NAME} is not a text file") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    listed: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        m = _SUM_LINE.fullmatch(line)
        if m is None:
            raise fail(f"malformed line {number} in {SUMS_NAME}: {json.dumps(line)}")
        digest, name = m.group(1).lower(), m.group(2)
        if name not in files:
            raise fail(f"list missing hash for {json.dumps(name)}")
        if name in listed:
            raise fail(f"{SUMS_NAME} lists {json.dumps(name)} twice")
        listed[name] = digest
    for name, body in files.items():
        if name not in listed:
            raise fail(f"file missing for {json.dumps(name)}")
        if hashlib.sha256(body).hexdigest() != listed[name]:
            raise fail(f"hash check failed for {json.dumps(name)}")


def _as_bytes(data: bytes | bytearray | memoryview | BinaryIO) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raw = data.read()
    if not isinstance(raw, bytes | bytearray):
        raise SnapshotError("snapshot source did not return bytes")
    return bytes(raw)


def read_archive(data: bytes | bytearray | memoryview | BinaryIO) -> tuple[dict[str, Any], bytes]:
    """The metadata and state of a snapshot archive, returned only once all of it checks out.

    Verified, in order: the gzip stream (CRC-32 and length of every member, nothing trailing),
    the tar layout (exactly meta.json, state.bin, SHA256SUMS as regular files in that order,
    whole, then the end-of-archive marker and nothing more), both SHA-256 sums, and the metadata
    (required fields present with sane values, `Size` equal to the state's length).
    """
    raw = _as_bytes(data)
    if not raw:
        raise SnapshotError("failed to decompress snapshot: EOF (the archive is empty)")
    files = _untar(_gunzip(raw))
    _verify_sums(files[SUMS_NAME], {META_NAME: files[META_NAME], STATE_NAME: files[STATE_NAME]})
    meta = _decode_meta(files[META_NAME])
    check_meta(meta, len(files[STATE_NAME]))
    return meta, files[STATE_NAME]


# ----------------------------------------------------------------------------------------------
# Inspection


class _Tally:
    """Count and byte total per name, kept in first-seen order until sorted for output."""

    def __init__(self) -> None:
        self.stats: dict[str, list[int]] = {}
        self.total = 0

    def add(self, name: str, size: int) -> None:
        entry = self.stats.setdefault(name, [0, 0])
        entry[0] += size
        entry[1] += 1
        self.total += size

    def rows(self) -> list[dict[str, Any]]:
        """Largest first, ties by name: the order Consul's inspect prints."""
        ordered = sorted(self.stats.items(), key=lambda item: (-item[1][0], item[0]))
        return [{"Name": name, "Sum": s, "Count": c} for name, (s, c) in ordered]


def kv_prefix(key: str, depth: int) -> str:
    """The first `depth` `/`-separated parts of `key` (all of it when it has fewer)."""
    return "/".join(key.split("/")[:depth])


def _meta_summary(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {name: meta.get(name, default) for name, default in
            (("ID", ""), ("Size", 0), ("Index", 0), ("Term", 0), ("Version", 0))}


def inspect_state(meta: Mapping[str, Any], state: bytes, *, kv_details: bool = False,
                  kv_depth: int = DEFAULT_KV_DEPTH, kv_filter: str = "") -> dict[str, Any]:
    """What `consul snapshot inspect` reports about a snapshot, in its JSON output's shape.

    Keys: `Meta` (ID, Size, Index, Term, Version), `Stats` (one `{Name, Sum, Count}` per record
    type, largest first), `StatsKV` (the same per KV key prefix when `kv_details`, else None),
    `TotalSize` and `TotalSizeKV`.  Sizes are the bytes each record takes in `state.bin`, measured
    on the encoded stream, so the numbers describe the file rather than a re-encoding of it.
    With `kv_details`, KV records whose key starts with `kv_filter` are grouped by their first
    `kv_depth` key parts, as Consul groups them.
    """
    if kv_depth < 0:
        raise ValueError("-kvdepth must not be negative")
    types = _Tally()
    kvs = _Tally()
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False,
                                max_buffer_size=max(len(state), 1))
    unpacker.feed(state)
    try:
        fields = unpacker.read_map_header()
        for _ in range(fields):
            key = unpacker.unpack()
            if key == _INDEX_KEY:
                for _ in range(unpacker.read_map_header()):
                    start = unpacker.tell()
                    unpacker.skip()
                    unpacker.skip()
                    types.add(_INDEX_TYPE, unpacker.tell() - start)
                continue
            if key in _HEADER_KEYS or not isinstance(key, str):
                unpacker.skip()
                continue
            name = _RECORD_TYPES.get(key, key)
            try:
                count = unpacker.read_array_header()
            except ValueError:
                # Not a list of records: a header-like field of a newer dump format.
                unpacker.skip()
                continue
            for _ in range(count):
                start = unpacker.tell()
                record = unpacker.unpack()
                size = unpacker.tell() - start
                types.add(name, size)
                if kv_details and name == "KVS" and isinstance(record, dict):
                    kv_key = record.get("Key")
                    if isinstance(kv_key, str) and kv_key.startswith(kv_filter):
                        kvs.add(kv_prefix(kv_key, kv_depth), size)
        leftover = len(state) - unpacker.tell()
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise SnapshotError(f"failed to decode {STATE_NAME}: {exc or type(exc).__name__}") from None
    if leftover:
        raise SnapshotError(f"failed to decode {STATE_NAME}: {leftover} bytes after the state map")
    kv_rows = kvs.rows()
    return {
        "Meta": _meta_summary(meta),
        "Stats": types.rows(),
        "StatsKV": kv_rows or None,
        "TotalSize": types.total,
        "TotalSizeKV": kvs.total,
    }


def inspect_archive(data: bytes | bytearray | memoryview | BinaryIO, *, kv_details: bool = False,
                    kv_depth: int = DEFAULT_KV_DEPTH, kv_filter: str = "") -> dict[str, Any]:
    """`inspect_state` of a verified archive (a damaged archive raises before anything is read)."""
    meta, state = read_archive(data)
    return inspect_state(meta, state, kv_details=kv_details, kv_depth=kv_depth,
                         kv_filter=kv_filter)
