"""What the layer above (Serf) plugs into gossip (mirrors hashicorp/memberlist delegate.go,
event_delegate.go, alive_delegate.go, merge_delegate.go, conflict_delegate.go,
ping_delegate.go). Every hook is optional: a `Memberlist` runs without any of them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from proconsul.gossip.state import NodeState


class Delegate(Protocol):
    def node_meta(self, limit: int) -> bytes:
        """This node's meta (Serf: its tags), at most `limit` bytes."""
        ...

    def notify_msg(self, payload: bytes) -> None:
        """A user message arrived (UDP or TCP)."""
        ...

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """User messages to piggyback, each costing `overhead` more bytes, within `limit`."""
        ...

    def local_state(self, join: bool) -> bytes:
        """The user state sent in a push/pull."""
        ...

    def merge_remote_state(self, buf: bytes, join: bool) -> None:
        """The user state received in a push/pull."""
        ...


class EventDelegate(Protocol):
    def notify_join(self, node: NodeState) -> None: ...

    def notify_leave(self, node: NodeState) -> None: ...

    def notify_update(self, node: NodeState) -> None: ...


class ConflictDelegate(Protocol):
    def notify_conflict(self, existing: NodeState, other: NodeState) -> None:
        """Another node claims a name we know at a different address."""
        ...


class PingDelegate(Protocol):
    def ack_payload(self) -> bytes:
        """What this node puts in its acks (Serf: its Vivaldi coordinate)."""
        ...

    def notify_ping_complete(self, node: NodeState, rtt: float, payload: bytes) -> None:
        """A direct probe of `node` was acked after `rtt` seconds with `payload`."""
        ...


class AliveDelegate(Protocol):
    def notify_alive(self, node: NodeState) -> str | None:
        """Vet an alive message before it is applied; a returned reason drops it (Consul uses
        this to keep members of another datacenter out of the LAN pool)."""
        ...


class MergeDelegate(Protocol):
    def notify_merge(self, peers: list[NodeState]) -> str | None:
        """Vet the node list a push/pull brings in; a returned reason refuses the whole
        merge (and fails the join)."""
        ...
