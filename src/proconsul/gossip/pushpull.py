"""Everything a gossip node does over TCP (memberlist net.go handleConn, pushPullNode,
sendAndReceiveState, sendLocalState, mergeRemoteState, sendPingAndWaitForAck, SendReliable).

Push/pull is SWIM's anti-entropy: two nodes swap their whole node lists (and the delegate's
state, Serf's clocks and intents) so that news lost from the UDP gossip still converges, and a
join is just the first push/pull with a seed. TCP pings let a probe tell "UDP is broken" from
"the node is gone".
"""

from __future__ import annotations

import asyncio

from proconsul.errors import GossipError
from proconsul.gossip import stream as streams
from proconsul.gossip.messages import (
    STATE_ALIVE,
    Ack,
    ErrResp,
    Message,
    Ping,
    PushNodeState,
    PushPull,
    UserMsg,
)
from proconsul.gossip.nodes import NodeStates
from proconsul.gossip.state import NodeState, address_bytes
from proconsul.gossip.transport import Address, Stream

__all__ = ["MAX_PUSH_PULL_REQUESTS", "MAX_PUSH_STATE_BYTES", "Streams"]

#: memberlist's cap on concurrent inbound push/pulls (a 10k-node test saw 3,000+ at once)
MAX_PUSH_PULL_REQUESTS = 128
#: largest stream message accepted
MAX_PUSH_STATE_BYTES = 20 * 1024 * 1024


class Streams(NodeStates):
    """The TCP half of a Memberlist."""

    push_pull_requests: int

    # -- framing -------------------------------------------------------------------------------

    def stream_bytes(self, msg: Message, reply: bool = False) -> bytes:
        """A stream message; only the dialing side writes the label header (a reply uses the
        label as authenticated data only)."""
        keyring = (self.keyring if self.encryption_enabled() and self.config.gossip_verify_outgoing
                   else None)
        return streams.encode_stream(msg, compress=self.config.enable_compression,
                                     keyring=keyring, label=self.label,
                                     encrypt_version=self.encrypt_version(),
                                     label_header=not reply)

    async def read_stream(self, conn: Stream, reply: bool = False) -> Message:
        keyring = self.keyring if self.encryption_enabled() else None
        return await streams.read_message(
            conn, keyring=keyring, label=self.label,
            verify_incoming=self.config.gossip_verify_incoming, max_size=MAX_PUSH_STATE_BYTES,
            label_header=not reply)

    # -- serving -------------------------------------------------------------------------------

    async def handle_stream(self, conn: Stream) -> None:
        """Serve one inbound connection: push/pull, TCP ping or a reliable user message."""
        try:
            async with asyncio.timeout(self.config.tcp_timeout):
                await self._serve(conn)
        except (GossipError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.log.error("memberlist: Failed to handle stream from=%s:%d: %s",
                           *conn.peer, exc)
        finally:
            conn.close()

    async def _serve(self, conn: Stream) -> None:
        msg = await self.read_stream(conn)
        if isinstance(msg, PushPull):
            if self.push_pull_requests >= MAX_PUSH_PULL_REQUESTS:
                await self._send(conn, ErrResp("Too many pending push/pull requests"), reply=True)
                return
            self.push_pull_requests += 1
            try:
                conn.write(self.stream_bytes(self.local_push_pull(msg.join), reply=True))
                await conn.drain()
                error = self.merge_remote_state(msg)
                if error:
                    self.log.error("memberlist: Failed push/pull merge: %s from=%s:%d", error,
                                   *conn.peer)
            finally:
                self.push_pull_requests -= 1
        elif isinstance(msg, Ping):
            if msg.node and msg.node != self.name:
                self.log.warning("memberlist: Got ping for unexpected node %s from=%s:%d",
                                 msg.node, *conn.peer)
                return
            await self._send(conn, Ack(msg.seq_no, None), reply=True)
        elif isinstance(msg, UserMsg):
            if self.delegate is not None:
                self.delegate.notify_msg(msg.payload)
        else:
            self.log.error("memberlist: Received invalid msgType (%s) from=%s:%d",
                           type(msg).__name__, *conn.peer)

    async def _send(self, conn: Stream, msg: Message, reply: bool = False) -> None:
        conn.write(self.stream_bytes(msg, reply))
        await conn.drain()

    # -- push/pull -----------------------------------------------------------------------------

    def local_push_pull(self, join: bool) -> PushPull:
        states = [PushNodeState(n.name, n.addr, n.port, n.meta, n.incarnation, n.state, n.vsn)
                  for n in self.nodes]
        user = self.delegate.local_state(join) if self.delegate is not None else b""
        return PushPull(join, states, user)

    async def push_pull_node(self, addr: Address, join: bool) -> None:
        """Swap full state with the node at `addr` and merge its answer; raises GossipError
        (or OSError/TimeoutError) when that fails, with memberlist's wording."""
        async with asyncio.timeout(self.config.tcp_timeout):
            conn = await self.transport.dial(addr, self.config.tcp_timeout)
            try:
                conn.write(self.stream_bytes(self.local_push_pull(join)))
                await conn.drain()
                reply = await self.read_stream(conn, reply=True)
            finally:
                conn.close()
        if isinstance(reply, ErrResp):
            raise GossipError(f"remote error: {reply.error}")
        if not isinstance(reply, PushPull):
            raise GossipError(f"received invalid msgType ({type(reply).__name__}), expected "
                              "pushPullMsg (6)")
        error = self.merge_remote_state(reply)
        if error:
            raise GossipError(error)

    def merge_remote_state(self, pp: PushPull) -> str | None:
        """Vet and apply a remote push/pull; the reason it was refused, or None."""
        remote = [NodeState(s.name, s.addr, s.port, s.meta, s.incarnation, s.state, s.vsn)
                  for s in pp.nodes]
        error = self.verify_protocol(remote)
        if error:
            return error
        if self.merge_delegate is not None:
            reason = self.merge_delegate.notify_merge(remote)
            if reason:
                self.log.warning("memberlist: Cluster merge canceled: %s", reason)
                return f"Merge canceled: {reason}"
        self.merge_states(remote)
        if pp.user_state and self.delegate is not None:
            self.delegate.merge_remote_state(pp.user_state, pp.join)
        return None

    def verify_protocol(self, remote: list[NodeState]) -> str | None:
        """Everyone's current versions must lie within every alive node's supported range
        (memberlist verifyProtocol), else the merge is refused."""
        alive = [n for n in self.nodes if n.state == STATE_ALIVE and len(n.vsn) == 6]
        alive += [r for r in remote if len(r.vsn) == 6]
        if not alive:
            return None
        pmin = max(n.pmin for n in alive)
        pmax = min(n.pmax for n in alive)
        dmin = max(n.dmin for n in alive)
        dmax = min(n.dmax for n in alive)
        for n in alive:
            if not pmin <= n.pcur <= pmax:
                return (f"Node '{n.name}' protocol version ({n.pcur}) is incompatible: "
                        f"[{pmin}, {pmax}]")
            if not dmin <= n.dcur <= dmax:
                return (f"Node '{n.name}' delegate protocol version ({n.dcur}) is incompatible:"
                        f" [{dmin}, {dmax}]")
        return None

    # -- TCP ping and reliable user messages ---------------------------------------------------

    async def tcp_ping(self, node: NodeState, seq: int, timeout: float) -> bool:
        """memberlist sendPingAndWaitForAck: True when `node` acked a ping over TCP."""
        host, port = self.transport.advertise()
        ping = Ping(seq, node.name, address_bytes(host), port, self.name)
        try:
            async with asyncio.timeout(timeout):
                conn = await self.transport.dial(node.address, timeout)
                try:
                    await self._send(conn, ping)
                    reply = await self.read_stream(conn, reply=True)
                finally:
                    conn.close()
        except (GossipError, OSError, TimeoutError, asyncio.IncompleteReadError):
            return False
        if not isinstance(reply, Ack):
            self.log.error("memberlist: Unexpected msgType (%s) from ping", type(reply).__name__)
            return False
        if reply.seq_no != seq:
            self.log.error("memberlist: Sequence number from ack (%d) doesn't match ping (%d)",
                           reply.seq_no, seq)
            return False
        return True

    async def send_reliable(self, addr: Address, payload: bytes) -> None:
        """A user message over TCP (memberlist SendReliable)."""
        async with asyncio.timeout(self.config.tcp_timeout):
            conn = await self.transport.dial(addr, self.config.tcp_timeout)
            try:
                await self._send(conn, UserMsg(payload))
            finally:
                conn.close()
