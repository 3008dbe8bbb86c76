"""Serf message codec: `[serf type][msgpack]` to message objects and back, byte for byte.

Mirrors hashicorp/serf `serf/messages.go` (`encodeMessage`, `decodeMessage`,
`encodeRelayMessage`, `encodeFilter`) and `serf.go` (`encodeTags`, `decodeTags`). Same rules as
the memberlist codec (gossip-wire.md §1): one msgpack map keyed by Go field names in sorted
order, strings and byte slices both in the old raw-str family (`use_bin_type=False`), nil
slices and maps as msgpack nil, integers in their smallest form. Decoding is as lenient as
go-msgpack where interop needs it (missing keys are zero values, unknown keys and trailing
bytes are ignored, nil decodes to the zero value) and strict about types and integer ranges,
so anything else raises `GossipFormatError` instead of reaching the Serf state machine.

Field tables (Go key, attribute, decoder, encoder) are sorted by Go key, which makes them the
wire order; nested structs, slices and maps compose from the same small converters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import msgpack

from proconsul.errors import GossipFormatError
from proconsul.gossip.serf.messages import (
    CONFLICT_RESPONSE_MSG,
    FILTER_NODE,
    FILTER_TAG,
    JOIN_MSG,
    KEY_REQUEST_MSG,
    KEY_RESPONSE_MSG,
    LEAVE_MSG,
    MESSAGE_TYPE_NAMES,
    META_MAX_SIZE,
    PUSH_PULL_MSG,
    QUERY_MSG,
    QUERY_RESPONSE_MSG,
    RELAY_MSG,
    TAG_MAGIC_BYTE,
    USER_EVENT_MSG,
    ConflictResponse,
    Filter,
    Join,
    KeyRequest,
    KeyResponse,
    Leave,
    Member,
    Message,
    NodeFilter,
    PushPull,
    Query,
    QueryResponse,
    Relay,
    RelayHeader,
    TagFilter,
    UDPAddr,
    UserEvent,
    UserEventEntry,
    UserEvents,
)

__all__ = [
    "TAGS_TOO_LARGE", "decode", "decode_filter", "decode_relay", "decode_tags", "encode",
    "encode_filter", "encode_relay", "encode_tags", "message_type_name", "pack", "unpack",
]

#: serf's error text when encoded tags do not fit in node meta (`Create`, `SetTags`).
TAGS_TOO_LARGE = f"Encoded length of tags exceeds limit of {META_MAX_SIZE} bytes"

_U8 = 0xFF
_U16 = 0xFFFF
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1

# A decoder turns one unpacked msgpack value (None when nil or absent) into the attribute's
# value; an encoder turns the attribute back into something `pack` emits as Go does.
_Dec = Callable[[Any, str], Any]
_Enc = Callable[[Any], Any]


# -- msgpack ---------------------------------------------------------------------------------

def pack(obj: Any) -> bytes:
    """Old-spec msgpack, as go-msgpack's zero-value MsgpackHandle writes it: fixstr/str16/
    str32 for str *and* bytes, never str8 or bin; floats as float64."""
    out: bytes = msgpack.packb(obj, use_bin_type=False)
    return out


def unpack(buf: bytes, offset: int = 0) -> tuple[Any, bytes]:
    """The first msgpack object at `offset` and the bytes after it (Go's decoder stops there
    too). `raw=True` because Go tags binary fields as str."""
    try:
        return msgpack.unpackb(memoryview(buf)[offset:], raw=True), b""
    except msgpack.ExtraData as extra:
        return extra.unpacked, bytes(extra.extra)
    except (ValueError, TypeError, OverflowError, RecursionError,
            msgpack.UnpackException) as exc:
        raise GossipFormatError(f"bad msgpack body: {exc}") from None


def _fail(where: str, value: Any) -> NoReturn:
    raise GossipFormatError(f"{where}: unexpected {type(value).__name__}")


# -- scalar converters ----------------------------------------------------------------------

def _d_str(value: Any, where: str) -> str:
    if value is None:
        return ""
    if type(value) is bytes:
        return value.decode("utf-8", "surrogateescape")
    _fail(where, value)


def _e_str(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _d_bytes(value: Any, where: str) -> bytes:
    """[]byte where nil and empty mean the same to us."""
    if value is None:
        return b""
    if type(value) is bytes:
        return value
    _fail(where, value)


def _d_nbytes(value: Any, where: str) -> bytes | None:
    """[]byte where Go sends nil and we keep it, so re-encoding is exact."""
    if value is None or type(value) is bytes:
        return value
    _fail(where, value)


def _d_bool(value: Any, where: str) -> bool:
    if value is None:
        return False
    if type(value) is bool:
        return value
    _fail(where, value)


def _d_int(low: int, high: int) -> _Dec:
    def convert(value: Any, where: str) -> int:
        if value is None:
            return 0
        if type(value) is not int:
            _fail(where, value)
        if not low <= value <= high:
            raise GossipFormatError(f"{where}: {value} out of range")
        return value
    return convert


_d_u8 = _d_int(0, _U8)
_d_u16 = _d_int(0, _U16)
_d_u32 = _d_int(0, _U32)
_d_u64 = _d_int(0, _U64)
#: Go `int` and `time.Duration`.
_d_i64 = _d_int(_I64_MIN, _I64_MAX)


def _same(value: Any) -> Any:
    return value


# -- composite converters -------------------------------------------------------------------

def _d_list(elem: _Dec, keep_nil: bool) -> _Dec:
    def convert(value: Any, where: str) -> list[Any] | None:
        if value is None:
            return None if keep_nil else []
        if type(value) is not list:
            _fail(where, value)
        return [elem(item, where) for item in value]
    return convert


def _e_list(elem: _Enc) -> _Enc:
    def convert(value: list[Any] | None) -> list[Any] | None:
        return None if value is None else [elem(item) for item in value]
    return convert


def _d_map(elem: _Dec, keep_nil: bool) -> _Dec:
    """map[string]T; keys must be strings, order is kept as decoded."""
    def convert(value: Any, where: str) -> dict[str, Any] | None:
        if value is None:
            return None if keep_nil else {}
        if type(value) is not dict:
            _fail(where, value)
        out: dict[str, Any] = {}
        for key, item in value.items():
            out[_d_str(key, where)] = elem(item, where)
        return out
    return convert


def _e_map(elem: _Enc) -> _Enc:
    def convert(value: Mapping[str, Any] | None) -> dict[bytes, Any] | None:
        if value is None:
            return None
        return {_e_str(key): elem(item) for key, item in value.items()}
    return convert


class _Table:
    """One Go struct: its class and sorted (Go key, attribute, decoder, encoder) fields."""

    __slots__ = ("cls", "fields", "lookup", "name")

    def __init__(self, cls: type[Any], *fields: tuple[bytes, str, _Dec, _Enc]) -> None:
        keys = [key for key, _, _, _ in fields]
        if keys != sorted(keys):
            raise AssertionError(f"{cls.__name__}: fields must be sorted by Go key")
        self.cls = cls
        self.name = cls.__name__
        self.fields = fields
        self.lookup = {key: (attr, dec, f"{self.name}.{key.decode()}")
                       for key, attr, dec, _ in fields}

    def decode(self, obj: Any) -> Any:
        if type(obj) is not dict:
            raise GossipFormatError(f"{self.name}: expected a msgpack map, got "
                                    f"{type(obj).__name__}")
        values: dict[str, Any] = {}
        for key, value in obj.items():
            hit = self.lookup.get(key)
            if hit is not None:
                values[hit[0]] = hit[1](value, hit[2])
        if len(values) != len(self.fields):
            for _, attr, dec, _ in self.fields:
                if attr not in values:
                    values[attr] = dec(None, self.name)
        return self.cls(**values)

    def encode(self, msg: Any) -> dict[bytes, Any]:
        return {key: enc(getattr(msg, attr)) for key, attr, _, enc in self.fields}

    def d_struct(self, value: Any, where: str) -> Any:
        """A struct-valued field: nil is the zero struct."""
        return self.decode({} if value is None else value)

    def d_pointer(self, value: Any, where: str) -> Any:
        """A pointer-valued field or element: nil stays None."""
        return None if value is None else self.decode(value)

    def e_pointer(self, value: Any) -> dict[bytes, Any] | None:
        return None if value is None else self.encode(value)


# -- struct tables (keys sorted = wire order) ------------------------------------------------

_LEAVE = _Table(
    Leave,
    (b"LTime", "ltime", _d_u64, _same),
    (b"Node", "node", _d_str, _e_str),
    (b"Prune", "prune", _d_bool, _same),
)
_JOIN = _Table(
    Join,
    (b"LTime", "ltime", _d_u64, _same),
    (b"Node", "node", _d_str, _e_str),
)
_USER_EVENT = _Table(
    UserEvent,
    (b"CC", "cc", _d_bool, _same),
    (b"LTime", "ltime", _d_u64, _same),
    (b"Name", "name", _d_str, _e_str),
    (b"Payload", "payload", _d_nbytes, _same),
)
_QUERY = _Table(
    Query,
    (b"Addr", "addr", _d_bytes, _same),
    (b"Filters", "filters", _d_list(_d_bytes, keep_nil=True), _same),
    (b"Flags", "flags", _d_u32, _same),
    (b"ID", "id", _d_u32, _same),
    (b"LTime", "ltime", _d_u64, _same),
    (b"Name", "name", _d_str, _e_str),
    (b"Payload", "payload", _d_nbytes, _same),
    (b"Port", "port", _d_u16, _same),
    (b"RelayFactor", "relay_factor", _d_u8, _same),
    (b"SourceNode", "source_node", _d_str, _e_str),
    (b"Timeout", "timeout", _d_i64, _same),
)
_QUERY_RESPONSE = _Table(
    QueryResponse,
    (b"Flags", "flags", _d_u32, _same),
    (b"From", "from_", _d_str, _e_str),
    (b"ID", "id", _d_u32, _same),
    (b"LTime", "ltime", _d_u64, _same),
    (b"Payload", "payload", _d_nbytes, _same),
)
_USER_EVENT_ENTRY = _Table(
    UserEventEntry,
    (b"Name", "name", _d_str, _e_str),
    (b"Payload", "payload", _d_nbytes, _same),
)
_USER_EVENTS = _Table(
    UserEvents,
    (b"Events", "events", _d_list(_USER_EVENT_ENTRY.d_struct, keep_nil=True),
     _e_list(_USER_EVENT_ENTRY.encode)),
    (b"LTime", "ltime", _d_u64, _same),
)
_PUSH_PULL = _Table(
    PushPull,
    (b"EventLTime", "event_ltime", _d_u64, _same),
    (b"Events", "events", _d_list(_USER_EVENTS.d_pointer, keep_nil=True),
     _e_list(_USER_EVENTS.e_pointer)),
    (b"LTime", "ltime", _d_u64, _same),
    (b"LeftMembers", "left_members", _d_list(_d_str, keep_nil=True), _e_list(_e_str)),
    (b"QueryLTime", "query_ltime", _d_u64, _same),
    (b"StatusLTimes", "status_ltimes", _d_map(_d_u64, keep_nil=True), _e_map(_same)),
)
_MEMBER = _Table(
    Member,
    (b"Addr", "addr", _d_bytes, _same),
    (b"DelegateCur", "delegate_cur", _d_u8, _same),
    (b"DelegateMax", "delegate_max", _d_u8, _same),
    (b"DelegateMin", "delegate_min", _d_u8, _same),
    (b"Name", "name", _d_str, _e_str),
    (b"Port", "port", _d_u16, _same),
    (b"ProtocolCur", "protocol_cur", _d_u8, _same),
    (b"ProtocolMax", "protocol_max", _d_u8, _same),
    (b"ProtocolMin", "protocol_min", _d_u8, _same),
    (b"Status", "status", _d_i64, _same),
    (b"Tags", "tags", _d_map(_d_str, keep_nil=False), _e_map(_e_str)),
)
_KEY_REQUEST = _Table(
    KeyRequest,
    (b"Key", "key", _d_nbytes, _same),
)
_KEY_RESPONSE = _Table(
    KeyResponse,
    (b"Keys", "keys", _d_list(_d_str, keep_nil=True), _e_list(_e_str)),
    (b"Message", "message", _d_str, _e_str),
    (b"PrimaryKey", "primary_key", _d_str, _e_str),
    (b"Result", "result", _d_bool, _same),
)
_UDP_ADDR = _Table(
    UDPAddr,
    (b"IP", "ip", _d_bytes, _same),
    (b"Port", "port", _d_i64, _same),
    (b"Zone", "zone", _d_str, _e_str),
)
_RELAY_HEADER = _Table(
    RelayHeader,
    (b"DestAddr", "dest_addr", _UDP_ADDR.d_struct, _UDP_ADDR.encode),
    (b"DestName", "dest_name", _d_str, _e_str),
)
_TAG_FILTER = _Table(
    TagFilter,
    (b"Expr", "expr", _d_str, _e_str),
    (b"Tag", "tag", _d_str, _e_str),
)

# type byte -> table for the messages that are `[type][one msgpack struct]`.
_BY_TYPE: dict[int, _Table] = {
    LEAVE_MSG: _LEAVE,
    JOIN_MSG: _JOIN,
    PUSH_PULL_MSG: _PUSH_PULL,
    USER_EVENT_MSG: _USER_EVENT,
    QUERY_MSG: _QUERY,
    QUERY_RESPONSE_MSG: _QUERY_RESPONSE,
    KEY_REQUEST_MSG: _KEY_REQUEST,
    KEY_RESPONSE_MSG: _KEY_RESPONSE,
}
_BY_CLASS: dict[type[Any], tuple[int, _Table]] = {
    table.cls: (msg_type, table) for msg_type, table in _BY_TYPE.items()
}


# -- messages --------------------------------------------------------------------------------

def encode(msg: Message) -> bytes:
    """`[serf type][msgpack]`, byte-identical to serf's `encodeMessage` for the same values
    (a Relay becomes `[0x09][header][inner]`)."""
    if type(msg) is Relay:
        return encode_relay(msg.header, msg.message)
    if type(msg) is ConflictResponse:
        return bytes((CONFLICT_RESPONSE_MSG,)) + pack(_MEMBER.e_pointer(msg.member))
    entry = _BY_CLASS.get(type(msg))
    if entry is None:
        raise TypeError(f"{type(msg).__name__} is not a Serf message")
    return bytes((entry[0],)) + pack(entry[1].encode(msg))


def decode(buf: bytes) -> Message:
    """One Serf message (the payload of a memberlist user message) -> its object.
    Trailing bytes after the msgpack body are ignored, except in a relay, where they are the
    message to forward."""
    if not buf:
        raise GossipFormatError("missing serf message type byte")
    msg_type = buf[0]
    if msg_type == RELAY_MSG:
        return decode_relay(buf)
    if msg_type == CONFLICT_RESPONSE_MSG:
        member: Member | None = _MEMBER.d_pointer(unpack(buf, 1)[0], "Member")
        return ConflictResponse(member)
    table = _BY_TYPE.get(msg_type)
    if table is None:
        raise GossipFormatError(f"unknown serf message type {msg_type}")
    result: Message = table.decode(unpack(buf, 1)[0])
    return result


def message_type_name(msg_type: int) -> str:
    """The Go name of a serf type byte, for logs."""
    return MESSAGE_TYPE_NAMES.get(msg_type, f"unknown({msg_type})")


# -- relay -----------------------------------------------------------------------------------

def encode_relay(header: RelayHeader, message: bytes) -> bytes:
    """`[0x09][relayHeader][message]` where `message` is an encoded Serf message (serf's
    `encodeRelayMessage` writes the inner type byte and body straight after the header)."""
    return bytes((RELAY_MSG,)) + pack(_RELAY_HEADER.encode(header)) + message


def decode_relay(buf: bytes) -> Relay:
    """Split `[0x09][header][message]`; the message stays raw, as the relay forwards it."""
    if not buf or buf[0] != RELAY_MSG:
        raise GossipFormatError("not a relay message")
    obj, rest = unpack(buf, 1)
    header: RelayHeader = _RELAY_HEADER.decode(obj)
    return Relay(header, rest)


# -- query filters ---------------------------------------------------------------------------

def encode_filter(filt: Filter) -> bytes:
    """One `Filters` entry: `[0x00]` + msgpack []string or `[0x01]` + msgpack {Expr, Tag}."""
    if type(filt) is NodeFilter:
        return bytes((FILTER_NODE,)) + pack([_e_str(node) for node in filt.nodes])
    if type(filt) is TagFilter:
        return bytes((FILTER_TAG,)) + pack(_TAG_FILTER.encode(filt))
    raise TypeError(f"{type(filt).__name__} is not a query filter")


def decode_filter(buf: bytes) -> Filter:
    """One `Filters` entry. Serf skips processing (but still re-gossips) a query whose
    filter it cannot decode; an unknown kind is a GossipFormatError here for that reason."""
    if not buf:
        raise GossipFormatError("empty query filter")
    kind = buf[0]
    if kind == FILTER_NODE:
        nodes: list[str] = _d_list(_d_str, keep_nil=False)(unpack(buf, 1)[0], "filterNode")
        return NodeFilter(nodes)
    if kind == FILTER_TAG:
        result: TagFilter = _TAG_FILTER.decode(unpack(buf, 1)[0])
        return result
    raise GossipFormatError(f"unknown query filter type {kind}")


# -- tags ------------------------------------------------------------------------------------

def encode_tags(tags: Mapping[str, str], protocol_version: int = 4) -> bytes:
    """Node meta for `tags`: `[0xFF]` + msgpack map[string]string (Serf protocol >= 3, keys
    in the mapping's order), or just the `role` tag for older protocols. ValueError with
    serf's text when the result does not fit in memberlist's 512-byte meta."""
    if protocol_version < 3:
        meta = _e_str(tags.get("role", ""))
    else:
        meta = bytes((TAG_MAGIC_BYTE,)) + pack(
            {_e_str(key): _e_str(value) for key, value in tags.items()})
    if len(meta) > META_MAX_SIZE:
        raise ValueError(TAGS_TOO_LARGE)
    return meta


def decode_tags(meta: bytes | None) -> dict[str, str]:
    """Tags from node meta: `{"role": meta}` when it lacks the magic byte (empty meta
    included, as serf does), else the msgpack map in wire order."""
    if not meta or meta[0] != TAG_MAGIC_BYTE:
        return {"role": _d_str(bytes(meta or b""), "role")}
    tags: dict[str, str] = _d_map(_d_str, keep_nil=False)(unpack(meta, 1)[0], "tags")
    return tags
