"""Serf's wire structs as small slotted classes, plus its type bytes, flags and filter kinds.

Mirrors hashicorp/serf `serf/messages.go` (and the few structs other serf files put on the
wire: `Member`, `keyRequest`, `nodeKeyResponse`, `relayHeader`). Every Serf message travels
inside a memberlist user message as `[serf type][msgpack map]`, the map keyed by the Go field
names; `codec` owns that mapping, so these classes carry no wire knowledge. Python attributes
are the snake_case forms of the Go names (`From` -> `from_`, `LTime` -> `ltime`).

Where Go distinguishes a nil slice or map (msgpack nil, `c0`) from an empty one and real peers
do send nil (a query's `Filters` and `Payload`, a key response's `Keys`, the empty slots of
the push/pull event ring), the attribute admits None, so a decoded message re-encodes byte for
byte. Go maps (`StatusLTimes`, tags) go out in Go's random order; dicts keep the order they
were decoded in for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "CONFLICT_RESPONSE_MSG", "FILTER_NODE", "FILTER_TAG", "JOIN_MSG", "KEY_REQUEST_MSG",
    "KEY_RESPONSE_MSG", "LEAVE_MSG", "MESSAGE_TYPE_NAMES", "META_MAX_SIZE",
    "PUSH_PULL_MSG", "QUERY_FLAG_ACK", "QUERY_FLAG_NO_BROADCAST", "QUERY_MSG",
    "QUERY_RESPONSE_MSG", "RELAY_MSG", "STATUS_ALIVE", "STATUS_FAILED", "STATUS_LEAVING",
    "STATUS_LEFT", "STATUS_NONE", "TAG_MAGIC_BYTE", "USER_EVENT_MSG", "ConflictResponse",
    "Filter", "Join", "KeyRequest", "KeyResponse", "Leave", "Member", "Message",
    "NodeFilter", "PushPull", "Query", "QueryResponse", "Relay", "RelayHeader", "TagFilter",
    "UDPAddr", "UserEvent", "UserEventEntry", "UserEvents",
]

# -- message type bytes (serf `messageType`, a uint8 iota). Append-only: peers dispatch on
# these values. -----------------------------------------------------------------------------
LEAVE_MSG = 0
JOIN_MSG = 1
#: Only as memberlist push/pull user state, never gossiped.
PUSH_PULL_MSG = 2
USER_EVENT_MSG = 3
QUERY_MSG = 4
QUERY_RESPONSE_MSG = 5
#: Inside a `_serf_conflict` query response payload.
CONFLICT_RESPONSE_MSG = 6
#: Inside a `_serf_*-key(s)` query payload.
KEY_REQUEST_MSG = 7
#: Inside a `_serf_*-key(s)` query response payload.
KEY_RESPONSE_MSG = 8
#: `[0x09][relayHeader][inner message]`, sent to a third node that forwards the inner bytes.
RELAY_MSG = 9

#: Go constant names, for log lines about dropped or unexpected messages.
MESSAGE_TYPE_NAMES: dict[int, str] = {
    LEAVE_MSG: "leave", JOIN_MSG: "join", PUSH_PULL_MSG: "pushPull",
    USER_EVENT_MSG: "userEvent", QUERY_MSG: "query", QUERY_RESPONSE_MSG: "queryResponse",
    CONFLICT_RESPONSE_MSG: "conflictResponse", KEY_REQUEST_MSG: "keyRequest",
    KEY_RESPONSE_MSG: "keyResponse", RELAY_MSG: "relay",
}

# -- query flags (uint32 bit set) ------------------------------------------------------------
#: The receiver acks on receipt, before the application answers.
QUERY_FLAG_ACK = 1
#: The receiver does not re-gossip the query (used to address single members).
QUERY_FLAG_NO_BROADCAST = 2

# -- query filter kinds (first byte of each `Filters` entry) ---------------------------------
FILTER_NODE = 0
FILTER_TAG = 1

# -- tags in node meta -----------------------------------------------------------------------
#: First byte of meta holding msgpack tags (Serf protocol >= 3); otherwise meta is the role.
TAG_MAGIC_BYTE = 0xFF
#: memberlist `MetaMaxSize`: encoded tags, magic byte included, must fit.
META_MAX_SIZE = 512

# -- MemberStatus (a Go int, on the wire inside a conflict response) ------------------------
STATUS_NONE = 0
STATUS_ALIVE = 1
STATUS_LEAVING = 2
STATUS_LEFT = 3
STATUS_FAILED = 4


@dataclass(slots=True)
class Leave:
    """`messageLeave` (0): `node` intends to leave at Lamport time `ltime`; `prune` also
    erases it from the member list (force-leave -prune)."""

    ltime: int
    node: str
    prune: bool = False


@dataclass(slots=True)
class Join:
    """`messageJoin` (1): binds `node`'s membership to a Lamport time, so stale leave
    intents for it can be told apart from new ones."""

    ltime: int
    node: str


@dataclass(slots=True)
class UserEvent:
    """`messageUserEvent` (3), also what the application receives for a user event.
    `cc` ("can coalesce") lets the user-event coalescer keep only the newest per name."""

    ltime: int
    name: str
    payload: bytes | None = None
    cc: bool = False


@dataclass(slots=True)
class Query:
    """`messageQuery` (4). Responses go straight to `addr:port` (`source_node`) by UDP;
    `timeout` is a Go `time.Duration` in nanoseconds; `filters` are encoded filters (see
    `codec.encode_filter`), None when the sender had none (Go sends nil)."""

    ltime: int
    id: int
    addr: bytes = b""
    port: int = 0
    source_node: str = ""
    filters: list[bytes] | None = None
    flags: int = 0
    relay_factor: int = 0
    timeout: int = 0
    name: str = ""
    payload: bytes | None = None

    @property
    def ack(self) -> bool:
        return bool(self.flags & QUERY_FLAG_ACK)

    @property
    def no_broadcast(self) -> bool:
        return bool(self.flags & QUERY_FLAG_NO_BROADCAST)


@dataclass(slots=True)
class QueryResponse:
    """`messageQueryResponse` (5): an ack (`flags` has QUERY_FLAG_ACK, payload nil) or the
    application's answer, from member `from_`, for query (`ltime`, `id`)."""

    ltime: int
    id: int
    from_: str
    flags: int = 0
    payload: bytes | None = None

    @property
    def ack(self) -> bool:
        return bool(self.flags & QUERY_FLAG_ACK)


@dataclass(slots=True)
class UserEventEntry:
    """One event of a push/pull ring slot (Go `userEvent`): name and payload only, the
    Lamport time is the slot's."""

    name: str
    payload: bytes | None = None


@dataclass(slots=True)
class UserEvents:
    """One slot of the user-event ring (Go `userEvents`): every distinct event seen at
    `ltime`. `events` is None only if a peer sent nil there."""

    ltime: int
    events: list[UserEventEntry] | None = field(default_factory=list)


@dataclass(slots=True)
class PushPull:
    """`messagePushPull` (2), Serf's part of a memberlist push/pull: the three clocks, every
    member's last intent time, the left members, and the whole 512-slot event ring (None for
    empty slots). Go always sends non-nil `status_ltimes` and `left_members`."""

    ltime: int
    status_ltimes: dict[str, int] | None = field(default_factory=dict)
    left_members: list[str] | None = field(default_factory=list)
    event_ltime: int = 0
    events: list[UserEvents | None] | None = field(default_factory=list)
    query_ltime: int = 0


@dataclass(slots=True)
class Member:
    """Serf's `Member` as it goes on the wire inside a conflict response. `status` is a
    STATUS_* constant; the six versions are memberlist's and Serf's min/max/current."""

    name: str
    addr: bytes
    port: int
    tags: dict[str, str] = field(default_factory=dict)
    status: int = STATUS_NONE
    protocol_min: int = 0
    protocol_max: int = 0
    protocol_cur: int = 0
    delegate_min: int = 0
    delegate_max: int = 0
    delegate_cur: int = 0


@dataclass(slots=True)
class ConflictResponse:
    """`[0x06][Member]` answering `_serf_conflict`: the responder's view of the contested
    name, None (msgpack nil) when it does not know it."""

    member: Member | None


@dataclass(slots=True)
class KeyRequest:
    """`keyRequest` (7) inside a keyring query: the raw key for install/use/remove; Go sends
    an empty (not nil) key for list-keys."""

    key: bytes | None = None


@dataclass(slots=True)
class KeyResponse:
    """`nodeKeyResponse` (8) inside a keyring query response. `keys` (base64) and
    `primary_key` are only filled for list-keys; Go sends nil `keys` otherwise."""

    result: bool = False
    message: str = ""
    keys: list[str] | None = None
    primary_key: str = ""


@dataclass(slots=True)
class UDPAddr:
    """Go `net.UDPAddr`, a struct (so a msgpack map) in the relay header."""

    ip: bytes
    port: int
    zone: str = ""


@dataclass(slots=True)
class RelayHeader:
    """Where a relaying member forwards the message that follows the header."""

    dest_addr: UDPAddr
    dest_name: str


@dataclass(slots=True)
class Relay:
    """`[0x09][header][message]`: `message` is a complete encoded Serf message
    (`[type][msgpack]`), forwarded verbatim by the relay to `header.dest_addr`."""

    header: RelayHeader
    message: bytes


@dataclass(slots=True)
class NodeFilter:
    """`[0x00]` + msgpack []string: only the named members process the query."""

    nodes: list[str]


@dataclass(slots=True)
class TagFilter:
    """`[0x01]` + msgpack {Tag, Expr}: members whose tag `tag` matches the regular
    expression `expr` (Go regexp, unanchored) process the query."""

    tag: str
    expr: str


Filter = NodeFilter | TagFilter

#: Anything `codec.decode` hands back.
Message = (
    Leave | Join | PushPull | UserEvent | Query | QueryResponse | ConflictResponse
    | KeyRequest | KeyResponse | Relay
)
