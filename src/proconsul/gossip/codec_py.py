"""memberlist packet codec, pure-Python twin (the selector is `proconsul.gossip.codec`).

Sans-IO: bytes in, message objects or bytes out. This is the per-packet path (every probe,
ack and piggybacked broadcast passes through it), so it is written as plain functions over
static field tables that a compiled twin can mirror name for name.

Wire rules (gossip-wire.md §1-2): one type byte, then one msgpack map keyed by Go field names,
keys sorted, `omitempty` fields dropped, strings and byte slices both in the old "raw" str
family (`msgpack.Packer(use_bin_type=False)`), nil slices as msgpack nil. Decoding is as
lenient as go-msgpack where it matters for interop (missing keys are zero values, unknown keys
and trailing bytes are ignored, nil decodes to the zero value) and strict about types and
integer ranges, so garbage is rejected with `GossipFormatError` instead of reaching the
state machine.

Packet layering, outermost first: label (memberlist >= 0.3.0) -> AES-GCM (no type byte on
UDP) -> CRC prefix -> LZW `compress` -> `compound` -> leaf messages; `ingest` peels them and
`prepare` builds them in exactly the reverse order.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgpack

from proconsul.errors import GossipError, GossipFormatError
from proconsul.gossip.messages import (
    ACK_RESP_MSG,
    ALIVE_MSG,
    COMPOUND_MSG,
    COMPRESS_MSG,
    DEAD_MSG,
    ERR_MSG,
    HAS_CRC_MSG,
    HAS_LABEL_MSG,
    INDIRECT_PING_MSG,
    MESSAGE_TYPE_NAMES,
    NACK_RESP_MSG,
    PING_MSG,
    SUSPECT_MSG,
    USER_MSG,
    Ack,
    Alive,
    Dead,
    ErrResp,
    IndirectPing,
    Message,
    Nack,
    Ping,
    PushNodeState,
    PushPullHeader,
    Suspect,
    UserMsg,
    UserMsgHeader,
)

__all__ = [
    "MAX_COMPOUND_PARTS", "MAX_DECOMPRESSED", "MAX_LABEL_LEN", "MAX_NESTING", "MAX_PACKET_SIZE",
    "META_MAX_SIZE", "UDP_BUFFER_SIZE", "Decrypter", "Encrypter", "add_crc", "add_label",
    "check_crc", "decode", "decode_compress", "decode_header", "decode_node_state",
    "decode_user_msg_header", "encode", "encode_compress", "encode_header",
    "encode_node_state", "encode_user_msg_header", "ingest", "make_compound",
    "make_compounds", "prepare", "split_compound", "strip_label", "unpack_one",
]

#: memberlist 0.2.2 computes `numParts*2` in uint8, so 128+ parts are mis-parsed there.
MAX_COMPOUND_PARTS = 127
#: Each compound part length is a big-endian uint16.
MAX_COMPOUND_PART_LEN = 0xFFFF
#: `udpPacketBufSize`: memberlist never reads more than this from one datagram.
MAX_PACKET_SIZE = 65536
#: `UDPBufferSize`: the piggyback budget per gossip packet.
UDP_BUFFER_SIZE = 1400
#: `MetaMaxSize`: node meta limit.
META_MAX_SIZE = 512
#: Labels are one length byte long; empty means "no label".
MAX_LABEL_LEN = 255
#: memberlist master caps decompressed output at 2 x maxPushStateBytes.
MAX_DECOMPRESSED = 2 * 20 * 1024 * 1024
#: compress/compound may nest; real peers produce depth 2. Deeper is an attack, not gossip.
MAX_NESTING = 8

_CRC_HEADER = struct.Struct(">BI")

# -- field tables ----------------------------------------------------------------------------
# Kinds of Go field, for decode checks and encode conversions.
_STR = 0  # Go string: raw str on the wire, Python str (surrogateescape keeps any bytes)
_BYTES = 1  # []byte where nil and empty mean the same to us: nil decodes to b""
_NBYTES = 2  # []byte where nil is kept as None, so it re-encodes as msgpack nil
_U32 = 3
_U16 = 4
_INT = 5  # Go int (64-bit)
_BOOL = 6

_LIMITS = {_U32: 0xFFFFFFFF, _U16: 0xFFFF, _INT: (1 << 63) - 1}
_ZERO: dict[int, Any] = {_STR: "", _BYTES: b"", _NBYTES: None, _U32: 0, _U16: 0, _INT: 0,
                         _BOOL: False}

# (Go key, attribute, kind, omitempty), sorted by Go key: that order is the wire order.
_Field = tuple[bytes, str, int, bool]

_PING_FIELDS: tuple[_Field, ...] = (
    (b"Node", "node", _STR, False),
    (b"SeqNo", "seq_no", _U32, False),
    (b"SourceAddr", "source_addr", _BYTES, True),
    (b"SourceNode", "source_node", _STR, True),
    (b"SourcePort", "source_port", _U16, True),
)
_INDIRECT_PING_FIELDS: tuple[_Field, ...] = (
    (b"Nack", "nack", _BOOL, False),
    (b"Node", "node", _STR, False),
    (b"Port", "port", _U16, False),
    (b"SeqNo", "seq_no", _U32, False),
    (b"SourceAddr", "source_addr", _BYTES, True),
    (b"SourceNode", "source_node", _STR, True),
    (b"SourcePort", "source_port", _U16, True),
    (b"Target", "target", _BYTES, False),
)
_ACK_FIELDS: tuple[_Field, ...] = (
    (b"Payload", "payload", _NBYTES, False),
    (b"SeqNo", "seq_no", _U32, False),
)
_NACK_FIELDS: tuple[_Field, ...] = ((b"SeqNo", "seq_no", _U32, False),)
_SUSPECT_FIELDS: tuple[_Field, ...] = (
    (b"From", "from_", _STR, False),
    (b"Incarnation", "incarnation", _U32, False),
    (b"Node", "node", _STR, False),
)
_ALIVE_FIELDS: tuple[_Field, ...] = (
    (b"Addr", "addr", _BYTES, False),
    (b"Incarnation", "incarnation", _U32, False),
    (b"Meta", "meta", _NBYTES, False),
    (b"Node", "node", _STR, False),
    (b"Port", "port", _U16, False),
    (b"Vsn", "vsn", _BYTES, False),
)
_ERR_FIELDS: tuple[_Field, ...] = ((b"Error", "error", _STR, False),)
_NODE_STATE_FIELDS: tuple[_Field, ...] = (
    (b"Addr", "addr", _BYTES, False),
    (b"Incarnation", "incarnation", _U32, False),
    (b"Meta", "meta", _NBYTES, False),
    (b"Name", "name", _STR, False),
    (b"Port", "port", _U16, False),
    (b"State", "state", _INT, False),
    (b"Vsn", "vsn", _BYTES, False),
)
_HEADER_FIELDS: tuple[_Field, ...] = (
    (b"Join", "join", _BOOL, False),
    (b"Nodes", "nodes", _INT, False),
    (b"UserStateLen", "user_state_len", _INT, False),
)
_USER_HEADER_FIELDS: tuple[_Field, ...] = ((b"UserMsgLen", "user_msg_len", _INT, False),)

# type byte -> (class, fields) for the single-message types `decode` and `encode` handle.
_BY_TYPE: dict[int, tuple[type[Any], tuple[_Field, ...]]] = {
    PING_MSG: (Ping, _PING_FIELDS),
    INDIRECT_PING_MSG: (IndirectPing, _INDIRECT_PING_FIELDS),
    ACK_RESP_MSG: (Ack, _ACK_FIELDS),
    SUSPECT_MSG: (Suspect, _SUSPECT_FIELDS),
    ALIVE_MSG: (Alive, _ALIVE_FIELDS),
    DEAD_MSG: (Dead, _SUSPECT_FIELDS),
    NACK_RESP_MSG: (Nack, _NACK_FIELDS),
    ERR_MSG: (ErrResp, _ERR_FIELDS),
}
_BY_CLASS: dict[type[Any], tuple[int, tuple[_Field, ...]]] = {
    cls: (t, fields) for t, (cls, fields) in _BY_TYPE.items()
}
# Go key -> (attribute, kind) lookups for decoding.
_LOOKUP: dict[tuple[_Field, ...], dict[bytes, tuple[str, int]]] = {
    fields: {key: (attr, kind) for key, attr, kind, _ in fields}
    for fields in (*(f for _, f in _BY_TYPE.values()), _NODE_STATE_FIELDS, _HEADER_FIELDS,
                   _USER_HEADER_FIELDS)
}


class Decrypter(Protocol):
    """What `ingest` needs from a keyring: try every key, primary first; raise
    `GossipDecryptError` when none opens `buf` (`[vsn][nonce][ciphertext+tag]`)."""

    def decrypt(self, buf: bytes, aad: bytes) -> bytes: ...


class Encrypter(Protocol):
    """What `prepare` needs from a keyring: seal with the primary key as
    `[vsn][nonce][ciphertext+tag]` (vsn 0 pads PKCS#7, vsn 1 does not)."""

    def encrypt(self, buf: bytes, aad: bytes, version: int) -> bytes: ...


# -- msgpack helpers -------------------------------------------------------------------------

def _pack(obj: Any) -> bytes:
    """Old-spec msgpack: fixstr/str16/str32 for str *and* bytes, never str8 or bin."""
    out: bytes = msgpack.packb(obj, use_bin_type=False)
    return out


def unpack_one(buf: bytes, offset: int = 0) -> Any:
    """The first msgpack object at `offset`; trailing bytes are ignored, as Go's decoder does.

    `raw=True` because Go tags binary fields (IPs, meta, ciphertext) as str; bounds follow
    from the input length, so a hostile length prefix cannot allocate more than the packet.
    """
    try:
        return msgpack.unpackb(memoryview(buf)[offset:], raw=True)
    except msgpack.ExtraData as extra:
        return extra.unpacked
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise GossipFormatError(f"bad msgpack body: {exc}") from None


def _convert(kind: int, value: Any, key: bytes) -> Any:
    """Check one decoded value against its Go type; nil becomes the zero value (go-msgpack)."""
    if value is None:
        return _ZERO[kind]
    if kind == _STR:
        if type(value) is bytes:
            return value.decode("utf-8", "surrogateescape")
    elif kind in (_BYTES, _NBYTES):
        if type(value) is bytes:
            return value
    elif kind == _BOOL:
        if type(value) is bool:
            return value
    elif type(value) is int:
        low = -(1 << 63) if kind == _INT else 0
        if low <= value <= _LIMITS[kind]:
            return value
        raise GossipFormatError(f"field {key.decode()}: {value} out of range")
    raise GossipFormatError(f"field {key.decode()}: unexpected {type(value).__name__}")


def _from_map(cls: type[Any], fields: tuple[_Field, ...], obj: Any) -> Any:
    if type(obj) is not dict:
        raise GossipFormatError(f"{cls.__name__}: expected a msgpack map, got "
                                f"{type(obj).__name__}")
    lookup = _LOOKUP[fields]
    values = {attr: _ZERO[kind] for _, attr, kind, _ in fields}
    for key, value in obj.items():
        hit = lookup.get(key)
        if hit is not None:
            values[hit[0]] = _convert(hit[1], value, key)
    return cls(**values)


def _to_map(fields: tuple[_Field, ...], msg: Any) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    for key, attr, kind, omitempty in fields:
        value = getattr(msg, attr)
        if omitempty and not value:
            continue
        if kind == _STR:
            value = value.encode("utf-8", "surrogateescape")
        out[key] = value
    return out


# -- single messages -------------------------------------------------------------------------

def encode(msg: Message) -> bytes:
    """`[type][msgpack map]`, byte-identical to memberlist's output for the same values.

    A `UserMsg` encodes in its UDP form (`[0x08][payload]`, no header); push/pull only exists
    on streams (see `stream.encode_push_pull`).
    """
    if type(msg) is UserMsg:
        return b"\x08" + msg.payload
    entry = _BY_CLASS.get(type(msg))
    if entry is None:
        raise TypeError(f"{type(msg).__name__} is not a single packet message")
    return bytes((entry[0],)) + _pack(_to_map(entry[1], msg))


def decode(buf: bytes) -> Message:
    """One leaf message `[type][body]` -> its message object; containers (compound,
    compress, CRC, label) are `ingest`'s business and are rejected here."""
    if not buf:
        raise GossipFormatError("missing message type byte")
    msg_type = buf[0]
    if msg_type == USER_MSG:
        return UserMsg(bytes(buf[1:]))
    entry = _BY_TYPE.get(msg_type)
    if entry is None:
        name = MESSAGE_TYPE_NAMES.get(msg_type, "unknown")
        raise GossipFormatError(f"message type {msg_type} ({name}) is not a leaf message")
    cls, fields = entry
    result: Message = _from_map(cls, fields, unpack_one(buf, 1))
    return result


def decode_node_state(obj: Any) -> PushNodeState:
    """A push/pull node state from its already-unpacked msgpack map."""
    result: PushNodeState = _from_map(PushNodeState, _NODE_STATE_FIELDS, obj)
    return result


def encode_node_state(state: PushNodeState) -> bytes:
    return _pack(_to_map(_NODE_STATE_FIELDS, state))


def decode_header(obj: Any) -> PushPullHeader:
    """A push/pull header from its already-unpacked msgpack map."""
    result: PushPullHeader = _from_map(PushPullHeader, _HEADER_FIELDS, obj)
    return result


def encode_header(header: PushPullHeader) -> bytes:
    return _pack(_to_map(_HEADER_FIELDS, header))


def decode_user_msg_header(obj: Any) -> UserMsgHeader:
    """A TCP user-message header from its already-unpacked msgpack map."""
    result: UserMsgHeader = _from_map(UserMsgHeader, _USER_HEADER_FIELDS, obj)
    return result


def encode_user_msg_header(header: UserMsgHeader) -> bytes:
    return _pack(_to_map(_USER_HEADER_FIELDS, header))


def encode_compress(compressed: bytes) -> bytes:
    """`[0x09][{"Algo": 0, "Buf": compressed}]`; Algo 0 (LZW) is the only algorithm."""
    return b"\x09" + _pack({b"Algo": 0, b"Buf": compressed})


def decode_compress(buf: bytes) -> bytes:
    """The LZW bytes inside a `[0x09][compress]` message (not yet decompressed)."""
    if not buf or buf[0] != COMPRESS_MSG:
        raise GossipFormatError("not a compress message")
    return _compress_buf(unpack_one(buf, 1))


def _compress_buf(obj: Any) -> bytes:
    """Check an unpacked compress map and return its Buf; shared with the stream reader."""
    if type(obj) is not dict:
        raise GossipFormatError("compress: expected a msgpack map")
    algo = _convert(_INT, obj.get(b"Algo"), b"Algo")
    if algo != 0:
        raise GossipFormatError(f"compress: unknown algorithm {algo}")
    data: bytes = _convert(_BYTES, obj.get(b"Buf"), b"Buf")
    return data


# -- compound --------------------------------------------------------------------------------

def make_compound(parts: Sequence[bytes]) -> bytes:
    """`[0x07][n][n x u16 BE lengths][parts]`, at most MAX_COMPOUND_PARTS parts."""
    count = len(parts)
    if count > MAX_COMPOUND_PARTS:
        raise ValueError(f"{count} parts in one compound (max {MAX_COMPOUND_PARTS}); "
                         "use make_compounds")
    lengths = [len(part) for part in parts]
    if lengths and max(lengths) > MAX_COMPOUND_PART_LEN:
        raise ValueError("compound part longer than 65535 bytes")
    return b"".join((bytes((COMPOUND_MSG, count)), struct.pack(f">{count}H", *lengths), *parts))


def make_compounds(parts: Sequence[bytes]) -> list[bytes]:
    """Split any number of parts into compounds of at most MAX_COMPOUND_PARTS each."""
    return [make_compound(parts[i:i + MAX_COMPOUND_PARTS])
            for i in range(0, len(parts), MAX_COMPOUND_PARTS)]


def split_compound(buf: bytes) -> tuple[list[bytes], int]:
    """The parts of a `[0x07]...` compound and how many were cut off by the packet's end.

    Like memberlist, parts that fit are returned even when later ones are truncated; only a
    header that is itself cut short is an error. The part count is read as a plain int, so
    128..255 parts parse correctly (the 0.2.2 uint8 bug is a sender-side concern).
    """
    if len(buf) < 2 or buf[0] != COMPOUND_MSG:
        raise GossipFormatError("missing compound length byte")
    count = buf[1]
    offset = 2 + 2 * count
    if len(buf) < offset:
        raise GossipFormatError("truncated compound length slice")
    lengths = struct.unpack_from(f">{count}H", buf, 2)
    parts: list[bytes] = []
    end = len(buf)
    for index, length in enumerate(lengths):
        if end - offset < length:
            return parts, count - index
        parts.append(bytes(buf[offset:offset + length]))
        offset += length
    return parts, 0


# -- CRC and label ---------------------------------------------------------------------------

def add_crc(payload: bytes) -> bytes:
    """`[0x0c][CRC-32/IEEE BE][payload]`: a prefix despite memberlist's comment saying "end"."""
    return _CRC_HEADER.pack(HAS_CRC_MSG, zlib.crc32(payload)) + payload


def check_crc(buf: bytes) -> bytes:
    """The payload of a `[0x0c][crc][payload]` message, or GossipFormatError on mismatch."""
    if len(buf) < 5 or buf[0] != HAS_CRC_MSG:
        raise GossipFormatError("truncated CRC header")
    expected = _CRC_HEADER.unpack_from(buf)[1]
    payload = bytes(buf[5:])
    if zlib.crc32(payload) != expected:
        raise GossipFormatError("CRC mismatch")
    return payload


def add_label(buf: bytes, label: bytes) -> bytes:
    """Prefix `[0xf4][len][label]` (memberlist >= 0.3.0); an empty label adds nothing."""
    if not label:
        return buf
    if len(label) > MAX_LABEL_LEN:
        raise ValueError("label longer than 255 bytes")
    return bytes((HAS_LABEL_MSG, len(label))) + label + buf


def strip_label(buf: bytes) -> tuple[bytes, bytes]:
    """(label, rest); (b"", buf) when there is no label prefix."""
    if not buf or buf[0] != HAS_LABEL_MSG:
        return b"", buf
    if len(buf) < 2:
        raise GossipFormatError("label header too short")
    size = buf[1]
    if size < 1:
        raise GossipFormatError("label header cannot be empty when present")
    if len(buf) < 2 + size:
        raise GossipFormatError("label header truncated")
    return bytes(buf[2:2 + size]), buf[2 + size:]


def check_label(got: bytes, label: bytes, skip_inbound_label_check: bool) -> bytes:
    """The label to use as AAD after memberlist's label policy, or GossipFormatError.

    With the check skipped, unlabeled input is taken as ours and a label on it is a "double
    label"; otherwise the label must match exactly (both empty included).
    """
    if skip_inbound_label_check:
        if got:
            raise GossipFormatError("unexpected double label header")
        return label
    if got != label:
        raise GossipFormatError("discarding message with unacceptable label "
                                f"{got.decode('utf-8', 'replace')!r}")
    return label


# -- receive side ----------------------------------------------------------------------------

def _default_decompress() -> Callable[[bytes], bytes]:
    from proconsul.gossip import lzw  # lazy: ingest works without it until LZW input shows up

    fn: Callable[[bytes], bytes] = lzw.decompress
    return fn


def _default_compress() -> Callable[[bytes], bytes]:
    from proconsul.gossip import lzw

    fn: Callable[[bytes], bytes] = lzw.compress
    return fn


def run_decompress(fn: Callable[[bytes], bytes] | None, data: bytes) -> bytes:
    """Call the LZW decoder, turning whatever it raises on garbage into GossipFormatError."""
    if fn is None:
        fn = _default_decompress()
    try:
        out = fn(data)
    except GossipError:
        raise
    except (ValueError, EOFError, IndexError, KeyError, OverflowError) as exc:
        raise GossipFormatError(f"bad LZW data: {exc}") from None
    if not out:
        raise GossipFormatError("compressed payload decompressed to nothing")
    return bytes(out)


def ingest(
    packet: bytes,
    keyring: Decrypter | None = None,
    label: bytes = b"",
    verify_incoming: bool = True,
    decompress: Callable[[bytes], bytes] | None = None,
    *,
    skip_inbound_label_check: bool = False,
    errors: list[str] | None = None,
) -> list[bytes]:
    """Peel one UDP packet down to its leaf messages `[type][body]`, in wire order.

    Order as memberlist's `ingestPacket`/`handleCommand`: label -> decrypt (AAD = label) ->
    CRC (only when the first byte is 0x0c) -> compress/compound, recursively. A problem with
    the packet as a whole raises (GossipFormatError, or GossipDecryptError from the keyring);
    a bad or truncated compound part is dropped, as memberlist drops it, and the reason is
    appended to `errors` when given, so the good parts are still delivered. Leaves are not
    decoded: the caller dispatches on the type byte (unknown types included, so it can log).
    `decompress` defaults to `proconsul.gossip.lzw.decompress`, imported on first use.
    """
    if len(packet) > MAX_PACKET_SIZE:
        raise GossipFormatError(f"packet of {len(packet)} bytes exceeds {MAX_PACKET_SIZE}")
    got, buf = strip_label(bytes(packet))
    aad = check_label(got, label, skip_inbound_label_check)
    if keyring is not None:
        try:
            buf = keyring.decrypt(buf, aad)
        except GossipError:
            if verify_incoming:
                raise
    if not buf:
        raise GossipFormatError("empty packet")
    if buf[0] == HAS_CRC_MSG:
        buf = check_crc(buf)
        if not buf:
            raise GossipFormatError("empty payload after CRC")
    out: list[bytes] = []
    _walk(buf, out, 0, decompress, errors, [0])
    return out


def _walk(buf: bytes, out: list[bytes], depth: int, decompress: Callable[[bytes], bytes] | None,
          errors: list[str] | None, budget: list[int]) -> None:
    """Unwrap compound/compress containers into `out`; `budget[0]` counts bytes inflated."""
    msg_type = buf[0]
    if msg_type != COMPOUND_MSG and msg_type != COMPRESS_MSG:
        out.append(buf)
        return
    if depth >= MAX_NESTING:
        raise GossipFormatError("containers nested too deep")
    if msg_type == COMPRESS_MSG:
        inner = run_decompress(decompress, decode_compress(buf))
        budget[0] += len(inner)
        if budget[0] > MAX_DECOMPRESSED:
            raise GossipFormatError("decompressed size limit exceeded")
        _walk(inner, out, depth + 1, decompress, errors, budget)
        return
    parts, truncated = split_compound(buf)
    if truncated and errors is not None:
        errors.append(f"compound: {truncated} truncated parts")
    for part in parts:
        if not part:
            if errors is not None:
                errors.append("compound: empty part")
            continue
        try:
            _walk(part, out, depth + 1, decompress, errors, budget)
        except GossipFormatError as exc:
            if errors is not None:
                errors.append(f"compound part: {exc}")


# -- send side -------------------------------------------------------------------------------

def prepare(
    msgs: Sequence[bytes],
    *,
    compress: bool | Callable[[bytes], bytes] = False,
    crc: bool = False,
    keyring: Encrypter | None = None,
    label: bytes = b"",
    encrypt_version: int = 1,
) -> bytes:
    """One UDP packet from encoded messages, in memberlist's send order (§2.2).

    Several messages become one compound (at most MAX_COMPOUND_PARTS; split first with
    `make_compounds` and prepare each). LZW is kept only when the wrapped result is shorter.
    `crc` is for peers with PMax >= 5 (memberlist adds it on gossip, not on pings and acks).
    With a keyring the buffer is sealed with the primary key, AAD = label; the label (never
    toward memberlist < 0.3.0) goes outermost. `compress=True` uses `proconsul.gossip.lzw`.
    """
    if not msgs:
        raise ValueError("nothing to send")
    payload = bytes(msgs[0]) if len(msgs) == 1 else make_compound(msgs)
    if compress:
        fn = _default_compress() if compress is True else compress
        assert callable(fn)
        wrapped = encode_compress(fn(payload))
        if len(wrapped) < len(payload):
            payload = wrapped
    if crc:
        payload = add_crc(payload)
    if keyring is not None:
        payload = keyring.encrypt(payload, label, encrypt_version)
    return add_label(payload, label)
