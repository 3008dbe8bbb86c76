"""Serf's hooks into memberlist (mirrors hashicorp/serf serf/delegate.go, event_delegate.go,
conflict_delegate.go, ping_delegate.go, merge_delegate.go, internal_query.go).

memberlist carries Serf's messages as opaque user messages and its state as opaque push/pull
bytes; this adapter decodes them and routes each to the Serf state machine, supplies the tags as
node meta, and answers Serf's internal queries (`_serf_ping`, the keyring queries) before the
application sees any query. With a configured merge check it also vets the nodes a push/pull
or an alive message would add, as members, so that (in Consul) a node of another datacenter
or a server with conflicting tags never enters the pool.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from proconsul.errors import GossipError
from proconsul.gossip.codec import META_MAX_SIZE
from proconsul.gossip.messages import STATE_LEFT
from proconsul.gossip.queue import Broadcast
from proconsul.gossip.serf import codec
from proconsul.gossip.serf.config import SerfMember
from proconsul.gossip.serf.messages import (
    JOIN_MSG,
    LEAVE_MSG,
    PUSH_PULL_MSG,
    QUERY_MSG,
    QUERY_RESPONSE_MSG,
    RELAY_MSG,
    STATUS_LEFT,
    STATUS_NONE,
    USER_EVENT_MSG,
    Join,
    KeyRequest,
    KeyResponse,
    Leave,
    PushPull,
    Query,
    QueryResponse,
    UserEvent,
)
from proconsul.gossip.serf.query import QueryEvent
from proconsul.gossip.state import NodeState, address_text

if TYPE_CHECKING:
    from proconsul.gossip.serf.serf import Serf

__all__ = ["INTERNAL_QUERY_PREFIX", "SerfDelegate"]

INTERNAL_QUERY_PREFIX = "_serf_"
#: keep list-keys answers under the response limit (serf minEncodedKeyLength)
MIN_ENCODED_KEY_LENGTH = 25


class SerfDelegate:
    """memberlist's Delegate, EventDelegate, ConflictDelegate and PingDelegate for one Serf,
    and its MergeDelegate and AliveDelegate when the config has a `merge_delegate`."""

    def __init__(self, serf: Serf) -> None:
        self.serf = serf

    # -- Delegate ------------------------------------------------------------------------------

    def node_meta(self, limit: int) -> bytes:
        meta = codec.encode_tags(self.serf.tags, self.serf.config.protocol_version)
        if len(meta) > limit:
            raise GossipError(f"Node tags '{self.serf.tags}' exceeds length limit of {limit} "
                              "bytes")
        return meta

    def notify_msg(self, payload: bytes) -> None:
        serf = self.serf
        kind = payload[0]
        try:
            if kind == RELAY_MSG:
                relay = codec.decode_relay(payload)
                dest = relay.header.dest_addr
                serf.log.debug("serf: Relaying response to addr: %s:%d",
                               address_text(dest.ip), dest.port)
                serf.memberlist.send_to_address((address_text(dest.ip), dest.port),
                                                relay.message)
                return
            msg = codec.decode(payload)
        except GossipError as exc:
            serf.log.error("serf: Error decoding %s message: %s",
                           codec.message_type_name(kind), exc)
            return
        if kind == LEAVE_MSG and isinstance(msg, Leave):
            if serf.handle_leave_intent(msg):
                serf.intents.queue(_broadcast(payload))
        elif kind == JOIN_MSG and isinstance(msg, Join):
            if serf.handle_join_intent(msg):
                serf.intents.queue(_broadcast(payload))
        elif kind == USER_EVENT_MSG and isinstance(msg, UserEvent):
            if serf.handle_user_event(msg):
                serf.event_queue.queue(_broadcast(payload))
        elif kind == QUERY_MSG and isinstance(msg, Query):
            if serf.handle_query(msg):
                serf.query_queue.queue(_broadcast(payload))
        elif kind == QUERY_RESPONSE_MSG and isinstance(msg, QueryResponse):
            serf.handle_query_response(msg)
        else:
            serf.log.warning("serf: Received message of unknown type: %d", kind)

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Intents first, then queries, then events, within `limit`."""
        serf = self.serf
        out = serf.intents.get_broadcasts(overhead, limit)
        used = sum(len(m) + overhead for m in out)
        out += serf.query_queue.get_broadcasts(overhead, limit - used)
        used = sum(len(m) + overhead for m in out)
        out += serf.event_queue.get_broadcasts(overhead, limit - used)
        return out

    def local_state(self, join: bool) -> bytes:
        serf = self.serf
        pp = PushPull(serf.clock.time(),
                      {name: m.status_ltime for name, m in serf.members.items()},
                      [m.name for m in serf.left], serf.event_clock.time(),
                      serf.event_buffer.slots, serf.query_clock.time())
        return codec.encode(pp)

    def merge_remote_state(self, buf: bytes, join: bool) -> None:
        serf = self.serf
        if not buf:
            serf.log.error("serf: Remote state is zero bytes")
            return
        if buf[0] != PUSH_PULL_MSG:
            serf.log.error("serf: Remote state has bad type prefix: %d", buf[0])
            return
        try:
            pp = codec.decode(buf)
        except GossipError as exc:
            serf.log.error("serf: Failed to decode remote state: %s", exc)
            return
        assert isinstance(pp, PushPull)
        if pp.ltime > 0:
            serf.clock.witness(pp.ltime - 1)
        if pp.event_ltime > 0:
            serf.event_clock.witness(pp.event_ltime - 1)
        if pp.query_ltime > 0:
            serf.query_clock.witness(pp.query_ltime - 1)
        status = pp.status_ltimes or {}
        left = set(pp.left_members or ())
        for name in pp.left_members or ():
            serf.handle_leave_intent(Leave(status.get(name, 0) + 1, name))
        for name, ltime in status.items():
            if name not in left:
                serf.handle_join_intent(Join(ltime, name))
        buffer = serf.event_buffer
        if join and serf.event_join_ignore and pp.event_ltime > buffer.min_time:
            buffer.min_time = pp.event_ltime
        for slot in pp.events or ():
            if slot is None:
                continue
            for entry in slot.events or ():
                serf.handle_user_event(UserEvent(slot.ltime, entry.name, entry.payload))

    # -- EventDelegate -------------------------------------------------------------------------

    def notify_join(self, node: NodeState) -> None:
        self.serf.node_joined(node)

    def notify_leave(self, node: NodeState) -> None:
        self.serf.node_left(node)

    def notify_update(self, node: NodeState) -> None:
        self.serf.node_updated(node)

    # -- ConflictDelegate ----------------------------------------------------------------------

    def notify_conflict(self, existing: NodeState, other: NodeState) -> None:
        self.serf.log.error("serf: Name conflict for '%s' both %s:%d and %s:%d are claiming",
                            existing.name, existing.host, existing.port, other.host, other.port)

    # -- MergeDelegate and AliveDelegate (serf merge_delegate.go) ------------------------------

    def notify_merge(self, peers: list[NodeState]) -> str | None:
        """A push/pull brings `peers`: the configured check sees them all as members, and a
        reason it gives (or one member that is not valid) refuses the whole merge."""
        check = self.serf.config.merge_delegate
        if check is None:
            return None
        members: list[SerfMember] = []
        for node in peers:
            member = self.node_to_member(node)
            if isinstance(member, str):
                return member
            members.append(member)
        return check(members)

    def notify_alive(self, node: NodeState) -> str | None:
        """An alive message about `node`: vetted alone, as a one-member merge."""
        check = self.serf.config.merge_delegate
        if check is None:
            return None
        member = self.node_to_member(node)
        if isinstance(member, str):
            return member
        return check([member])

    def node_to_member(self, node: NodeState) -> SerfMember | str:
        """`node` as the member a merge check sees (status none, or left when memberlist
        says so), or why it is not valid (serf nodeToMember / validateMemberInfo)."""
        if len(node.addr) not in (4, 16):
            return (f"IP byte length is invalid: {len(node.addr)} bytes is not either 4 or "
                    "16")
        if len(node.meta or b"") > META_MAX_SIZE:
            return f"Encoded length of tags exceeds limit of {META_MAX_SIZE} bytes"
        member = SerfMember(node.name, node.addr, node.port, self.serf.decode_tags(node.meta),
                            STATUS_LEFT if node.state == STATE_LEFT else STATUS_NONE)
        member.set_versions(node.vsn)
        return member

    # -- PingDelegate --------------------------------------------------------------------------

    def ack_payload(self) -> bytes:
        return self.serf.coordinates.ack_payload()

    def notify_ping_complete(self, node: NodeState, rtt: float, payload: bytes) -> None:
        self.serf.coordinates.observe(node.name, rtt, payload)

    # -- queries -------------------------------------------------------------------------------

    def dispatch_query(self, event: QueryEvent) -> None:
        """Internal (`_serf_*`) queries are answered here; every other query goes on to the
        coalescing stages and the application (serf's serfQueries stage)."""
        if not event.name.startswith(INTERNAL_QUERY_PREFIX):
            self.serf.events.forward(event)
            return
        kind = event.name[len(INTERNAL_QUERY_PREFIX):]
        if kind in ("install-key", "use-key", "remove-key", "list-keys"):
            self._key_query(kind, event)
        elif kind not in ("ping", "conflict"):
            self.serf.log.warning("serf: Unhandled internal query '%s'", kind)

    def _key_query(self, kind: str, event: QueryEvent) -> None:
        serf = self.serf
        resp = KeyResponse(False, "", None, "")
        keyring = serf.memberlist.keyring
        try:
            req = codec.decode(event.payload)
            if not isinstance(req, KeyRequest):
                raise GossipError("not a key request")
        except GossipError as exc:
            resp.message = f"Failed to decode key request: {exc}"
            self._respond(event, resp)
            return
        if keyring is None or not keyring.keys:
            # serf words the listing and the changes differently
            resp.message = ("Keyring is empty (encryption not enabled)" if kind == "list-keys"
                            else "No keyring to modify (encryption not enabled)")
            serf.log.error("serf: %s", resp.message)
            self._respond(event, resp)
            return
        serf.log.info("serf: Received %s query", kind)
        try:
            if kind == "install-key":
                keyring.add_key(req.key or b"")
            elif kind == "use-key":
                keyring.use_key(req.key or b"")
            elif kind == "remove-key":
                keyring.remove_key(req.key or b"")
            else:
                resp.keys = [base64.b64encode(k).decode() for k in keyring.keys]
                resp.primary_key = base64.b64encode(keyring.primary_key or b"").decode()
            if kind != "list-keys":
                serf.save_keyring()
            resp.result = True
        except (GossipError, ValueError) as exc:
            resp.message = str(exc)
        self._respond(event, resp)

    def _respond(self, event: QueryEvent, resp: KeyResponse) -> None:
        raw = codec.encode(resp)
        limit = self.serf.config.query_response_size_limit - 64
        actual = len(resp.keys or ())
        while len(raw) > limit and resp.keys:
            # trim the key list until the answer fits, saying so (serf's wording)
            keep = max(0, len(resp.keys) - 1)
            resp.keys = resp.keys[:keep]
            resp.message = (f"truncated key list response, showing first {keep} of "
                            f"{actual} keys")
            raw = codec.encode(resp)
        try:
            event.respond(raw)
        except GossipError as exc:
            self.serf.log.error("serf: Failed to respond to key query: %s", exc)


def _broadcast(payload: bytes) -> Broadcast:
    return Broadcast(bytes(payload))
