"""memberlist's wire structs as small slotted classes, plus the type bytes and node states.

Every UDP or TCP memberlist message is one type byte followed by one msgpack map whose keys are
the Go field names of the struct (hashicorp/memberlist `net.go`). Python attributes are the
snake_case forms of those names (`From` becomes `from_` because `from` is a keyword); the codec
(`codec_py`) owns the mapping, so these classes carry no wire knowledge and a compiled twin can
mirror them as `cdef class`es with the same attribute names.

Binary fields are `bytes`. Where Go distinguishes a nil slice (msgpack nil, `c0`) from an empty
one (`a0`) and real peers send nil (the ack payload of a relayed or TCP ack, a missing meta),
the attribute is `bytes | None` so a decoded message re-encodes byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ACK_RESP_MSG", "ALIVE_MSG", "COMPOUND_MSG", "COMPRESS_MSG", "DEAD_MSG", "ENCRYPT_MSG",
    "ERR_MSG", "HAS_CRC_MSG", "HAS_LABEL_MSG", "INDIRECT_PING_MSG", "MESSAGE_TYPE_NAMES",
    "NACK_RESP_MSG", "PING_MSG", "PUSH_PULL_MSG", "STATE_ALIVE", "STATE_DEAD", "STATE_LEFT",
    "STATE_SUSPECT", "SUSPECT_MSG", "USER_MSG", "Ack", "Alive", "Dead", "ErrResp",
    "IndirectPing", "Message", "Nack", "Ping", "PushNodeState", "PushPull", "PushPullHeader",
    "Suspect", "UserMsg", "UserMsgHeader",
]

# -- message type bytes (memberlist `messageType`, an iota starting at 0) --------------------
PING_MSG = 0x00
INDIRECT_PING_MSG = 0x01
ACK_RESP_MSG = 0x02
SUSPECT_MSG = 0x03
ALIVE_MSG = 0x04
DEAD_MSG = 0x05
PUSH_PULL_MSG = 0x06
COMPOUND_MSG = 0x07
USER_MSG = 0x08
COMPRESS_MSG = 0x09
#: Only a real type byte on TCP; an encrypted UDP packet starts with the encryption version.
ENCRYPT_MSG = 0x0A
NACK_RESP_MSG = 0x0B
HAS_CRC_MSG = 0x0C
ERR_MSG = 0x0D
#: Label prefix, memberlist >= 0.3.0 only (older peers drop it as an unknown type).
HAS_LABEL_MSG = 0xF4

#: Go constant names, for log lines about dropped or unexpected messages.
MESSAGE_TYPE_NAMES: dict[int, str] = {
    PING_MSG: "ping", INDIRECT_PING_MSG: "indirectPing", ACK_RESP_MSG: "ackResp",
    SUSPECT_MSG: "suspect", ALIVE_MSG: "alive", DEAD_MSG: "dead", PUSH_PULL_MSG: "pushPull",
    COMPOUND_MSG: "compound", USER_MSG: "user", COMPRESS_MSG: "compress",
    ENCRYPT_MSG: "encrypt", NACK_RESP_MSG: "nackResp", HAS_CRC_MSG: "hasCrc", ERR_MSG: "err",
    HAS_LABEL_MSG: "hasLabel",
}

# -- NodeStateType (a Go int in push/pull node states) ---------------------------------------
STATE_ALIVE = 0
STATE_SUSPECT = 1
STATE_DEAD = 2
#: A graceful leave; gossiped as `dead` with From == Node.
STATE_LEFT = 3


@dataclass(slots=True)
class Ping:
    """`ping` (0x00). `node` is the *target's* name; the ack goes to source_addr:source_port
    when both are set (memberlist >= protocol 4 peers set them), else to the packet's source."""

    seq_no: int
    node: str
    source_addr: bytes = b""
    source_port: int = 0
    source_node: str = ""


@dataclass(slots=True)
class IndirectPing:
    """`indirectPingReq` (0x01): ask a relay to probe `target:port` (`node`) for us; `nack`
    asks it to answer `nackResp` when the target stays silent (peers with PMax >= 4)."""

    seq_no: int
    target: bytes
    port: int
    node: str
    nack: bool = False
    source_addr: bytes = b""
    source_port: int = 0
    source_node: str = ""


@dataclass(slots=True)
class Ack:
    """`ackResp` (0x02). `payload` is the ping delegate's blob (Serf: a Vivaldi coordinate) or
    None, which Go sends as msgpack nil, for relayed and TCP acks."""

    seq_no: int
    payload: bytes | None = None


@dataclass(slots=True)
class Nack:
    """`nackResp` (0x0b): a relay's "I probed, nobody answered", feeding Lifeguard awareness."""

    seq_no: int


@dataclass(slots=True)
class Suspect:
    """`suspect` (0x03): `from_` suspects `node` at `incarnation`."""

    incarnation: int
    node: str
    from_: str


@dataclass(slots=True)
class Alive:
    """`alive` (0x04). `vsn` is six raw bytes [PMin, PMax, PCur, DMin, DMax, DCur]; `meta` is
    the delegate's node meta (Serf tags), at most 512 bytes."""

    incarnation: int
    node: str
    addr: bytes
    port: int
    meta: bytes | None = None
    vsn: bytes = b""


@dataclass(slots=True)
class Dead:
    """`dead` (0x05); `from_ == node` means a graceful leave (state left)."""

    incarnation: int
    node: str
    from_: str


@dataclass(slots=True)
class ErrResp:
    """`errResp` (0x0d), TCP only: the responder could not use our stream."""

    error: str


@dataclass(slots=True)
class PushNodeState:
    """One node of a push/pull exchange; `state` is a STATE_* constant."""

    name: str
    addr: bytes
    port: int
    meta: bytes | None
    incarnation: int
    state: int
    vsn: bytes


@dataclass(slots=True)
class PushPullHeader:
    """Leads a push/pull stream: how many node states and user-state bytes follow."""

    nodes: int
    user_state_len: int
    join: bool


@dataclass(slots=True)
class UserMsgHeader:
    """Leads a TCP user message: how many raw bytes follow."""

    user_msg_len: int


@dataclass(slots=True)
class UserMsg:
    """A user (delegate) message: opaque bytes for the layer above (Serf). On UDP it is
    `[0x08][payload]`; on TCP a UserMsgHeader sits between the type byte and the payload."""

    payload: bytes


@dataclass(slots=True)
class PushPull:
    """A whole push/pull (0x06) as read from or written to a stream: header fields, the node
    states and the delegate's opaque user state (Serf: `[0x02][msgpack]`)."""

    join: bool
    nodes: list[PushNodeState] = field(default_factory=list)
    user_state: bytes = b""


#: Anything `codec.decode` or the stream reader can hand back.
Message = (
    Ping | IndirectPing | Ack | Nack | Suspect | Alive | Dead | ErrResp | UserMsg | PushPull
)
