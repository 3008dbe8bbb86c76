"""The state every part of a gossip node shares, and how it sends (memberlist's `Memberlist`
struct and the send half of net.go).

memberlist spreads one struct's methods over state.go (probing, node states), net.go (packets
and streams) and memberlist.go (lifecycle); here the same split is a base class holding the
fields and the send paths, and one mixin per concern (`nodes`, `probe`, `pushpull`) that the
public `Memberlist` combines. Everything runs on one event loop: timers are `call_later`
handles, packets arrive through a callback, so thousands of nodes can share a process.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from proconsul.gossip import codec
from proconsul.gossip.awareness import Awareness
from proconsul.gossip.config import PROTOCOL_MAX, PROTOCOL_MIN, GossipConfig
from proconsul.gossip.messages import Message
from proconsul.gossip.queue import Broadcast, TransmitLimitedQueue
from proconsul.gossip.state import NodeState
from proconsul.gossip.transport import Address, Transport

if TYPE_CHECKING:
    from proconsul.gossip.delegate import (
        AliveDelegate,
        ConflictDelegate,
        Delegate,
        EventDelegate,
        MergeDelegate,
        PingDelegate,
    )
    from proconsul.gossip.keyring import Keyring
    from proconsul.gossip.suspicion import Suspicion

__all__ = ["COMPOUND_HEADER_OVERHEAD", "COMPOUND_OVERHEAD", "USER_MSG_OVERHEAD", "MemberlistCore"]

#: `compoundHeaderOverhead`: the type byte and part count of a compound.
COMPOUND_HEADER_OVERHEAD = 2
#: `compoundOverhead`: each part's uint16 length.
COMPOUND_OVERHEAD = 2
#: `userMsgOverhead`: the user type byte in front of a delegate broadcast.
USER_MSG_OVERHEAD = 1


class MemberlistCore:
    """Fields shared by the mixins and the packet send path."""

    name: str
    config: GossipConfig
    transport: Transport
    log: logging.Logger
    rng: random.Random
    keyring: Keyring | None
    label: bytes
    delegate: Delegate | None
    events: EventDelegate | None
    conflict: ConflictDelegate | None
    ping_delegate: PingDelegate | None
    alive_delegate: AliveDelegate | None
    merge_delegate: MergeDelegate | None

    nodes: list[NodeState]
    node_map: dict[str, NodeState]
    timers: dict[str, tuple[Suspicion, asyncio.TimerHandle]]
    broadcasts: TransmitLimitedQueue
    awareness: Awareness
    incarnation: int
    leaving: bool
    shut: bool
    leave_broadcast: asyncio.Future[None] | None
    loop: asyncio.AbstractEventLoop
    #: nodes in the list, not counting ones reaped: the `n` of every log10(n) formula
    num_nodes: int

    # -- small helpers -------------------------------------------------------------------------

    def vsn(self) -> bytes:
        """This node's six version bytes: memberlist's range and current version, then the
        delegate's (Serf) range and current version."""
        dmin, dmax, dcur = self.delegate_versions()
        return bytes((PROTOCOL_MIN, PROTOCOL_MAX, self.config.protocol_version, dmin, dmax, dcur))

    def delegate_versions(self) -> tuple[int, int, int]:
        return (0, 0, 0)

    def now(self) -> float:
        return self.loop.time()

    def next_incarnation(self) -> int:
        self.incarnation += 1
        return self.incarnation

    def skip_incarnation(self, offset: int) -> int:
        self.incarnation += offset
        return self.incarnation

    def est_num_nodes(self) -> int:
        return self.num_nodes

    def local_state(self) -> NodeState:
        return self.node_map[self.name]

    # -- sending -------------------------------------------------------------------------------

    def encryption_enabled(self) -> bool:
        return self.keyring is not None and bool(self.keyring.keys)

    def encrypt_version(self) -> int:
        """memberlist seals with version 0 (padded) only when it speaks protocol 1."""
        return 0 if self.config.protocol_version < 2 else 1

    def packet_overhead(self) -> int:
        overhead = 0
        if self.encryption_enabled() and self.config.gossip_verify_outgoing:
            overhead += 45 if self.encrypt_version() == 0 else 29
        if self.label:
            overhead += 2 + len(self.label)
        return overhead

    def raw_send(self, parts: list[bytes], addr: Address, node: NodeState | None) -> float:
        """Wrap encoded messages as memberlist's rawSendMsgPacket does (compress when smaller,
        CRC toward peers that speak protocol 5, encrypt, label) and send one datagram per
        compound of at most 127 parts."""
        keyring = (self.keyring if self.encryption_enabled() and self.config.gossip_verify_outgoing
                   else None)
        crc = node is not None and node.pmax >= 5
        sent = 0.0
        groups = [parts] if len(parts) <= codec.MAX_COMPOUND_PARTS else [
            parts[i:i + codec.MAX_COMPOUND_PARTS]
            for i in range(0, len(parts), codec.MAX_COMPOUND_PARTS)]
        for group in groups:
            packet = codec.prepare(group, compress=self.config.enable_compression, crc=crc,
                                   keyring=keyring, label=self.label,
                                   encrypt_version=self.encrypt_version())
            sent = self.transport.write_to(packet, addr)
        return sent

    def send_msg(self, addr: Address, msg: bytes, node: NodeState | None = None) -> float:
        """Send one encoded message with whatever queued broadcasts fit beside it (memberlist's
        sendMsg: every ping and ack also spreads news)."""
        overhead = COMPOUND_HEADER_OVERHEAD + COMPOUND_OVERHEAD + self.packet_overhead()
        room = self.config.udp_buffer_size - len(msg) - overhead
        extra = self.get_broadcasts(COMPOUND_OVERHEAD, room) if room > 0 else []
        return self.raw_send([msg, *extra], addr, node)

    def encode_and_send(self, addr: Address, msg: Message, node: NodeState | None = None) -> float:
        return self.send_msg(addr, codec.encode(msg), node)

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Our own broadcasts first, then the delegate's (Serf's) in what room is left."""
        out = self.broadcasts.get_broadcasts(overhead, limit)
        if self.delegate is not None:
            used = sum(len(b) + overhead for b in out)
            room = limit - used
            if room > overhead + USER_MSG_OVERHEAD:
                for payload in self.delegate.get_broadcasts(overhead + USER_MSG_OVERHEAD, room):
                    out.append(b"\x08" + payload)
        return out

    def broadcast(self, node: str, msg: Message,
                  notify: Callable[[], None] | None = None) -> None:
        """Queue news about `node`; it replaces older queued news about the same node."""
        self.broadcasts.queue(Broadcast(codec.encode(msg), node, notify))
