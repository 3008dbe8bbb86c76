"""User events (`consul event`, `/v1/event/*`): Consul's agent/user_event.go and the event half
of agent/event_endpoint.go, without sockets.

An event travels as a Serf user event named `consul:event:<name>` whose payload is the msgpack
of Consul's UserEvent struct, encoded as Consul's go-msgpack handle (`WriteExt: true`) writes
it: a map with the keys in byte order (`ID`, `n`, `nf`, `p`, `sf`, `tf`, `v`), empty optional
fields left out, strings as str and the payload as bin. There is no version byte in front; the
`v` field carries the event version (1). The Lamport time is not in the payload: receivers take
it from the Serf event.

Filters are validated when an event is fired but applied where it is received: each agent
matches the node filter against its own node name and the service/tag filters against the IDs
and tags of its own registered services (Consul ranges over the agent's service map, keyed by
service ID), and keeps what passes in a ring of the last 256 events. The firing agent learns of
its own event the same way as every other agent, from its Serf pool (Serf delivers a user event
locally before gossiping it), so `fire` does not store anything itself.

`X-Consul-Index` of the list is not a Raft index but the XOR of the two halves of the newest
listed event's UUID; a blocking list returns as soon as that value differs from the client's
`index`, or when the wait (at most 600 s) runs out.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgpack

from proconsul.errors import RPCError

__all__ = [
    "EVENT_BUFFER_SIZE", "MAX_QUERY_TIME", "REMOTE_EXEC_NAME", "USER_EVENT_MAX_VERSION",
    "USER_EVENT_PREFIX", "UserEvent", "UserEventError", "UserEvents", "decode_user_event",
    "encode_user_event", "is_user_event", "raw_user_event_name", "user_event_name",
    "uuid_to_uint64", "validate_user_event",
]

log = logging.getLogger("proconsul.agent")

#: Prepended to the Serf event name so Consul's own events stay apart from other Serf users.
USER_EVENT_PREFIX = "consul:event:"
#: The newest event version this agent understands (and the one it fires).
USER_EVENT_MAX_VERSION = 1
#: The event `consul exec` fires; it drives remote execution and never enters the list.
REMOTE_EXEC_NAME = "_rexec"
#: How many recent events an agent keeps for `/v1/event/list`.
EVENT_BUFFER_SIZE = 256
#: The longest a blocking list waits (agent package maxQueryTime), also its default.
MAX_QUERY_TIME = 600.0

_UINT64 = (1 << 64) - 1


class UserEventError(RPCError):
    """An event that cannot be fired; the message is Consul's, answered with a 500."""


def user_event_name(name: str) -> str:
    return USER_EVENT_PREFIX + name


def is_user_event(name: str) -> bool:
    return name.startswith(USER_EVENT_PREFIX)


def raw_user_event_name(name: str) -> str:
    return name[len(USER_EVENT_PREFIX):] if is_user_event(name) else name


@dataclass(slots=True)
class UserEvent:
    """Consul's UserEvent. An empty payload is Go's nil slice: left out of the msgpack and
    `null` in JSON."""

    id: str
    name: str
    payload: bytes = b""
    node_filter: str = ""
    service_filter: str = ""
    tag_filter: str = ""
    version: int = 0
    ltime: int = 0

    def to_json(self) -> dict[str, Any]:
        """The event as `/v1/event/fire` and `/v1/event/list` print it."""
        return {
            "ID": self.id,
            "Name": self.name,
            "Payload": _base64(self.payload) if self.payload else None,
            "NodeFilter": self.node_filter,
            "ServiceFilter": self.service_filter,
            "TagFilter": self.tag_filter,
            "Version": self.version,
            "LTime": self.ltime,
        }


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- payload codec ----------------------------------------------------------------------------


def encode_user_event(event: UserEvent) -> bytes:
    """The Serf payload of an event, byte for byte as Consul encodes it."""
    fields: dict[str, Any] = {"ID": event.id, "n": event.name}
    if event.node_filter:
        fields["nf"] = event.node_filter
    if event.payload:
        fields["p"] = bytes(event.payload)
    if event.service_filter:
        fields["sf"] = event.service_filter
    if event.tag_filter:
        fields["tf"] = event.tag_filter
    fields["v"] = event.version
    out: bytes = msgpack.packb(fields, use_bin_type=True)
    return out


def _text(key: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        # Go strings hold any bytes; JSON output would replace invalid UTF-8 the same way
        return value.decode("utf-8", "replace")
    raise ValueError(f"cannot decode {type(value).__name__} into string field {key!r}")


def decode_user_event(raw: bytes) -> UserEvent:
    """The event in a Serf payload. Lenient as go-msgpack is (unknown keys and trailing bytes
    are ignored, nil is the zero value, str and bin are both accepted for every text) and
    strict about types; anything else raises ValueError."""
    try:
        obj = msgpack.unpackb(raw, raw=True, strict_map_key=False)
    except msgpack.ExtraData as extra:
        obj = extra.unpacked
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"msgpack decode error: {exc or type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"cannot decode {type(obj).__name__} into UserEvent")
    event = UserEvent("", "")
    for key, value in obj.items():
        k = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        if k == "ID":
            event.id = _text(k, value)
        elif k == "n":
            event.name = _text(k, value)
        elif k == "p":
            if value is not None and not isinstance(value, bytes):
                raise ValueError(
                    f"cannot decode {type(value).__name__} into byte slice field 'p'")
            event.payload = value or b""
        elif k == "nf":
            event.node_filter = _text(k, value)
        elif k == "sf":
            event.service_filter = _text(k, value)
        elif k == "tf":
            event.tag_filter = _text(k, value)
        elif k == "v":
            if value is None:
                event.version = 0
            elif isinstance(value, int) and not isinstance(value, bool):
                event.version = value
            else:
                raise ValueError(f"cannot decode {type(value).__name__} into int field 'v'")
    return event


# -- validation and filters -------------------------------------------------------------------


def _compile(pattern: str) -> re.Pattern[str]:
    """Compile a filter; the error reads like Go's regexp error, with Python's reason."""
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as err:
        raise ValueError(f"error parsing regexp: {err}") from None


def validate_user_event(event: UserEvent) -> None:
    """Consul's validateUserEventParams, with its messages."""
    if not event.name:
        raise UserEventError("User event missing name")
    if event.tag_filter and not event.service_filter:
        raise UserEventError("Cannot provide tag filter without service filter")
    for kind, pattern in (("node", event.node_filter), ("service", event.service_filter),
                          ("tag", event.tag_filter)):
        if pattern:
            try:
                _compile(pattern)
            except ValueError as err:
                raise UserEventError(f"Invalid {kind} filter: {err}") from None


def uuid_to_uint64(event_id: str) -> int:
    """The index of an event: the first 64 bits of its UUID XOR the last 64 (Consul's
    uuidToUint64 and the api client's IDToIndex, so watchers can compute it too). An ID that
    is not a UUID (Go would panic on it) gets a stable hash of its text instead."""
    try:
        if len(event_id) != 36:
            raise ValueError(event_id)
        low = int(event_id[0:8] + event_id[9:13] + event_id[14:18], 16)
        high = int(event_id[19:23] + event_id[24:36], 16)
    except ValueError:
        digest = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8)
        return int.from_bytes(digest.digest(), "big")
    return (low ^ high) & _UINT64


# -- the agent's side -------------------------------------------------------------------------

LocalServices = Callable[[], Iterable[tuple[str, list[str]]]]


class UserEvents:
    """Fires events into the LAN pool and keeps the ones this agent accepts.

    `send(serf_name, payload)` hands an event to the LAN Serf (non-coalescing, as Consul
    fires them) and raises on failure. `local_services()` yields `(service ID, tags)` for each
    service registered on this agent. `remote_exec` runs `_rexec` events; without it they are
    ignored, as with Consul's default `disable_remote_exec = true`.
    """

    def __init__(
        self,
        node_name: str,
        datacenter: str,
        send: Callable[[str, bytes], None],
        local_services: LocalServices,
        remote_exec: Callable[[UserEvent], None] | None = None,
        buffer_size: int = EVENT_BUFFER_SIZE,
    ) -> None:
        self.node_name = node_name
        self.datacenter = datacenter
        self.send = send
        self.local_services = local_services
        self.remote_exec = remote_exec
        self._events: deque[UserEvent] = deque(maxlen=buffer_size)
        self._changed = asyncio.Event()

    # -- firing --------------------------------------------------------------------------------

    def fire(self, name: str, payload: bytes = b"", node_filter: str = "",
             service_filter: str = "", tag_filter: str = "", dc: str = "") -> dict[str, Any]:
        """Validate, encode and broadcast an event; the event as `/v1/event/fire` answers it
        (with a fresh ID, version 1, LTime 0)."""
        event = UserEvent(str(uuid.uuid4()), name, bytes(payload), node_filter, service_filter,
                          tag_filter, USER_EVENT_MAX_VERSION)
        validate_user_event(event)
        if dc and dc != self.datacenter:
            raise UserEventError("No path to datacenter")
        raw = encode_user_event(event)
        try:
            self.send(user_event_name(name), raw)
        except Exception as err:
            raise UserEventError(f"error broadcasting event: {err}") from None
        return event.to_json()

    # -- receiving -----------------------------------------------------------------------------

    def ingest(self, serf_name: str, payload: bytes, ltime: int = 0) -> bool:
        """Take one Serf user event; True when it was added to the list. Events without the
        `consul:event:` prefix belong to someone else and are skipped; payloads that do not
        decode are logged and dropped, as Consul does."""
        if not is_user_event(serf_name):
            return False
        log.debug("user event: name=%s", raw_user_event_name(serf_name))
        try:
            event = decode_user_event(payload)
        except ValueError as err:
            log.error("Failed to decode event: error=%s", err)
            return False
        event.ltime = ltime
        if not self.should_process(event):
            return False
        return self._accept(event)

    def should_process(self, event: UserEvent) -> bool:
        """Whether this agent passes the event's filters (Consul's shouldProcessUserEvent)."""
        if event.version > USER_EVENT_MAX_VERSION:
            log.warning("Event version may have unsupported features: version=%d event=%s",
                        event.version, event.name)
        if event.node_filter:
            node_re = self._filter("node", event.node_filter, event)
            if node_re is None or not node_re.search(self.node_name):
                return False
        if event.service_filter:
            service_re = self._filter("service", event.service_filter, event)
            if service_re is None:
                return False
            tag_re = None
            if event.tag_filter:
                tag_re = self._filter("tag", event.tag_filter, event)
                if tag_re is None:
                    return False
            for service_id, tags in self.local_services():
                if not service_re.search(service_id):
                    continue
                if tag_re is None or any(tag_re.search(tag) for tag in tags):
                    return True
            return False
        return True

    @staticmethod
    def _filter(kind: str, pattern: str, event: UserEvent) -> re.Pattern[str] | None:
        try:
            return _compile(pattern)
        except ValueError as err:
            log.error("Failed to parse %s filter for event: filter=%s event=%s error=%s",
                      kind, pattern, event.name, err)
            return None

    def _accept(self, event: UserEvent) -> bool:
        if event.name == REMOTE_EXEC_NAME:
            if self.remote_exec is None:
                log.info("ignoring remote exec event, disabled.: event_name=%s event_id=%s",
                         event.name, event.id)
            else:
                self.remote_exec(event)
            return False
        log.debug("new event: event_name=%s event_id=%s", event.name, event.id)
        self._events.append(event)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return True

    # -- listing -------------------------------------------------------------------------------

    def events(self) -> list[UserEvent]:
        """The kept events, oldest first."""
        return list(self._events)

    def last_event(self) -> UserEvent | None:
        return self._events[-1] if self._events else None

    def _snapshot(self, name: str) -> tuple[int, list[UserEvent]]:
        events = [e for e in self._events if e.name == name] if name else list(self._events)
        # never 0: a watcher with nothing to match would otherwise spin
        index = uuid_to_uint64(events[-1].id) if events else 1
        return index, events

    async def list(self, name: str = "", index: int = 0,
                   wait: float = 0.0) -> tuple[int, list[dict[str, Any]]]:
        """The kept events (only those called `name` when given) and their index. With an
        `index`, waits up to `wait` seconds (default and cap 600) for the index to differ."""
        if index <= 0:
            current, events = self._snapshot(name)
            return current, [e.to_json() for e in events]
        if wait <= 0 or wait > MAX_QUERY_TIME:
            wait = MAX_QUERY_TIME
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            changed = self._changed
            current, events = self._snapshot(name)
            remaining = deadline - loop.time()
            if current != index or remaining <= 0:
                break
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                break
        return current, [e.to_json() for e in events]
