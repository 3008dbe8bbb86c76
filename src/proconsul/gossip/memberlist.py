"""A gossip node: memberlist's public face (memberlist.go Create/Join/Leave/UpdateNode/
Shutdown, net.go ingestPacket/handleCommand/packetHandler, state.go gossip/pushPull).

Packets are decoded on arrival; pings, acks and nacks are answered at once, while alive news
(high priority) and suspect/dead/user messages (low priority) go through two bounded LIFO
queues drained in one loop callback, so a flood can cost dropped news but never a blocked
receive path, and the newest news is handled first. Timers (probe, gossip, push/pull) are loop
callbacks on shared beats (ticker.py) with a random first beat: the nodes of one process wake
it together a few times per interval instead of each on its own, and still do not all beat in
step.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from dataclasses import dataclass

from proconsul.errors import GossipDecryptError, GossipError
from proconsul.gossip import codec
from proconsul.gossip.awareness import Awareness
from proconsul.gossip.config import GossipConfig, push_pull_scale
from proconsul.gossip.core import COMPOUND_HEADER_OVERHEAD, COMPOUND_OVERHEAD
from proconsul.gossip.delegate import (
    AliveDelegate,
    ConflictDelegate,
    Delegate,
    EventDelegate,
    MergeDelegate,
    PingDelegate,
)
from proconsul.gossip.keyring import Keyring
from proconsul.gossip.messages import (
    ACK_RESP_MSG,
    ALIVE_MSG,
    DEAD_MSG,
    INDIRECT_PING_MSG,
    MESSAGE_TYPE_NAMES,
    NACK_RESP_MSG,
    PING_MSG,
    SUSPECT_MSG,
    USER_MSG,
    Ack,
    Alive,
    Dead,
    IndirectPing,
    Nack,
    Ping,
    Suspect,
)
from proconsul.gossip.probe import Probing
from proconsul.gossip.queue import TransmitLimitedQueue
from proconsul.gossip.state import NodeState, address_bytes
from proconsul.gossip.ticker import Ticker
from proconsul.gossip.transport import Address, Transport

__all__ = ["Delegates", "Memberlist", "parse_join_address"]


@dataclass
class Delegates:
    """The optional hooks of the layer above (Serf); any may be None."""

    delegate: Delegate | None = None
    events: EventDelegate | None = None
    conflict: ConflictDelegate | None = None
    ping: PingDelegate | None = None
    alive: AliveDelegate | None = None
    merge: MergeDelegate | None = None
    #: (min, max, current) protocol of the delegate, carried in the last 3 Vsn bytes
    versions: tuple[int, int, int] = (0, 0, 0)


def parse_join_address(text: str, default_port: int) -> tuple[str, Address]:
    """`[name/]host[:port]` -> (expected name or "", (host, port)); IPv6 in brackets."""
    name = ""
    if "/" in text:
        name, text = text.split("/", 1)
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"missing ']' in address {text}")
        host = text[1:end]
        if text[end + 1:].startswith(":"):
            port = int(text[end + 2:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    return name, (host, port)


class Memberlist(Probing):
    """One member of a gossip pool."""

    def __init__(self, name: str, config: GossipConfig, transport: Transport,
                 delegates: Delegates | None = None, *, keyring: Keyring | None = None,
                 label: bytes = b"", logger: logging.Logger | None = None,
                 rng: random.Random | None = None) -> None:
        d = delegates or Delegates()
        self.name = name
        self.config = config
        self.transport = transport
        self.log = logger or logging.getLogger("proconsul.memberlist")
        self.rng = rng or random.Random()
        self.keyring = keyring
        self.label = label
        self.delegate = d.delegate
        self.events = d.events
        self.conflict = d.conflict
        self.ping_delegate = d.ping
        self.alive_delegate = d.alive
        self.merge_delegate = d.merge
        self._delegate_versions = d.versions
        self.nodes = []
        self.node_map = {}
        self.timers = {}
        self.num_nodes = 0
        self.broadcasts = TransmitLimitedQueue(config.retransmit_mult, self.est_num_nodes)
        self.awareness = Awareness(config.awareness_max_multiplier)
        self.incarnation = 0
        self.leaving = False
        self.shut = False
        self.leave_broadcast = None
        self.seq_no = 0
        self.ack_handlers = {}
        self.probe_index = 0
        self.probe_handle = None
        self.probe_due = 0.0
        self.current_probe = None
        self.tasks = set()
        self.push_pull_requests = 0
        self._high: deque[tuple[bytes, Address]] = deque()
        self._low: deque[tuple[bytes, Address]] = deque()
        self._drain_scheduled = False
        self._tickers: list[Ticker] = []
        self.loop = asyncio.get_event_loop()

    def delegate_versions(self) -> tuple[int, int, int]:
        return self._delegate_versions

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start receiving, announce ourselves (incarnation 1) and start the timers."""
        self.loop = asyncio.get_running_loop()
        self.transport.start(self.on_packet, self.handle_stream)
        host, port = self.transport.advertise()
        meta = self.delegate.node_meta(codec.META_MAX_SIZE) if self.delegate else b""
        if len(meta) > codec.META_MAX_SIZE:
            raise GossipError("Node meta data provided is longer than the limit")
        alive = Alive(self.next_incarnation(), self.name, address_bytes(host), port, meta,
                      self.vsn())
        self.alive_node(alive, bootstrap=True)
        cfg = self.config
        self.schedule_probe(self.rng.uniform(0, cfg.probe_interval))
        self._tickers.append(Ticker(self.loop, lambda: cfg.gossip_interval, self.gossip,
                                    self.rng.uniform(0, cfg.gossip_interval)))
        if cfg.push_pull_interval > 0:
            self._tickers.append(Ticker(
                self.loop, lambda: push_pull_scale(cfg.push_pull_interval, self.est_num_nodes()),
                self._push_pull_tick, self.rng.uniform(0, cfg.push_pull_interval)))

    def _push_pull_tick(self) -> None:
        """Anti-entropy with one random alive peer (memberlist pushPull)."""
        peers = self.random_nodes(1)
        if peers:
            self.spawn(self._periodic_push_pull(peers[0]))

    async def _periodic_push_pull(self, node: NodeState) -> None:
        try:
            await self.push_pull_node(node.address, join=False)
        except (GossipError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.log.error("memberlist: Push/Pull with %s failed: %s", node.name, exc)

    def spawn(self, coro: object) -> None:
        task: asyncio.Task[object] = self.loop.create_task(coro)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def join(self, existing: list[str]) -> int:
        """Push/pull with each address (`[name/]host[:port]`); how many answered. Raises
        GossipError naming every failure when none did (memberlist Join)."""
        joined = 0
        errors: list[str] = []
        for text in existing:
            try:
                _, addr = parse_join_address(text, self.config.bind_port)
            except ValueError as exc:
                errors.append(f"Failed to resolve {text}: {exc}")
                continue
            try:
                await self.push_pull_node(addr, join=True)
                joined += 1
            except (GossipError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                self.log.debug("memberlist: Failed to join %s:%d: %s", *addr, exc)
                errors.append(f"Failed to join {addr[0]}:{addr[1]}: {exc}")
        if joined == 0 and existing:
            raise GossipError(f"{len(errors)} error(s) occurred:\n" +
                              "\n".join(f"\t* {e}" for e in errors))
        return joined

    def any_alive(self) -> bool:
        return any(n.name != self.name and not n.dead_or_left() for n in self.nodes)

    async def leave(self, timeout: float) -> None:
        """Broadcast our own departure and wait (up to `timeout`) until it has been sent."""
        if self.leaving:
            return
        self.leaving = True
        me = self.node_map.get(self.name)
        if me is None:
            return
        self.leave_broadcast = self.loop.create_future()
        self.dead_node(Dead(me.incarnation, me.name, me.name))
        if self.any_alive():
            try:
                async with asyncio.timeout(timeout):
                    await self.leave_broadcast
            except TimeoutError:
                raise GossipError("timeout waiting for leave broadcast") from None

    async def update_node(self, timeout: float) -> None:
        """Re-announce ourselves with fresh meta and a higher incarnation (memberlist
        UpdateNode); waits until the news has been sent when there is anyone to tell."""
        me = self.node_map[self.name]
        meta = self.delegate.node_meta(codec.META_MAX_SIZE) if self.delegate else b""
        if len(meta) > codec.META_MAX_SIZE:
            raise GossipError("Node meta data provided is longer than the limit")
        sent = self.loop.create_future()

        def done() -> None:
            if not sent.done():
                sent.set_result(None)

        alive = Alive(self.next_incarnation(), self.name, me.addr, me.port, meta, self.vsn())
        self.alive_node(alive, bootstrap=True, notify=done)
        if self.any_alive():
            try:
                async with asyncio.timeout(timeout):
                    await sent
            except TimeoutError:
                raise GossipError("timeout waiting for update broadcast") from None

    async def shutdown(self) -> None:
        """Stop everything without telling anyone (use `leave` first for a graceful exit)."""
        if self.shut:
            return
        self.shut = True
        for ticker in self._tickers:
            ticker.stop()
        if self.probe_handle is not None:
            self.probe_handle.cancel()
        if self.current_probe is not None:
            self.current_probe.finish(success=True)
        for _, handle in self.timers.values():
            handle.cancel()
        self.timers.clear()
        for handler in self.ack_handlers.values():
            if handler.timer is not None:
                handler.timer.cancel()
        self.ack_handlers.clear()
        for task in list(self.tasks):
            task.cancel()
        await self.transport.shutdown()

    # -- views ---------------------------------------------------------------------------------

    def members(self) -> list[NodeState]:
        """Every node not dead or left (memberlist Members)."""
        return [n for n in self.nodes if not n.dead_or_left()]

    def num_members(self) -> int:
        return sum(1 for n in self.nodes if not n.dead_or_left())

    def local_node(self) -> NodeState:
        return self.node_map[self.name]

    def health_score(self) -> int:
        return self.awareness.score

    # -- user messages -------------------------------------------------------------------------

    def send_to_address(self, addr: Address, payload: bytes) -> None:
        """A best-effort user message by UDP (memberlist SendToAddress)."""
        self.raw_send([b"\x08" + payload], addr, None)

    def send_best_effort(self, node: NodeState, payload: bytes) -> None:
        self.raw_send([b"\x08" + payload], node.address, node)

    # -- receiving -----------------------------------------------------------------------------

    def on_packet(self, packet: bytes, source: Address, when: float) -> None:
        if self.shut:
            return
        keyring = self.keyring if self.encryption_enabled() else None
        errors: list[str] = []
        try:
            leaves = codec.ingest(packet, keyring, self.label,
                                  self.config.gossip_verify_incoming, errors=errors)
        except GossipError as exc:
            self.log.error("memberlist: %s from=%s:%d", _packet_error(exc), *source)
            return
        for error in errors:
            self.log.warning("memberlist: Failed to decode %s from=%s:%d", error, *source)
        for leaf in leaves:
            self._handle(leaf, source, when)

    def _handle(self, leaf: bytes, source: Address, when: float) -> None:
        kind = leaf[0]
        try:
            if kind == ACK_RESP_MSG:
                ack = codec.decode(leaf)
                assert isinstance(ack, Ack)
                self.handle_ack(ack, when)
            elif kind == PING_MSG:
                ping = codec.decode(leaf)
                assert isinstance(ping, Ping)
                self.handle_ping(ping, source)
            elif kind == INDIRECT_PING_MSG:
                ind = codec.decode(leaf)
                assert isinstance(ind, IndirectPing)
                self.handle_indirect_ping(ind, source)
            elif kind == NACK_RESP_MSG:
                nack = codec.decode(leaf)
                assert isinstance(nack, Nack)
                self.handle_nack(nack)
            elif kind == ALIVE_MSG:
                self._enqueue(self._high, leaf, source)
            elif kind in (SUSPECT_MSG, DEAD_MSG, USER_MSG):
                self._enqueue(self._low, leaf, source)
            else:
                self.log.error("memberlist: msg type (%d) not supported from=%s:%d", kind,
                               *source)
        except GossipError as exc:
            self.log.error("memberlist: Failed to decode %s message: %s from=%s:%d",
                           MESSAGE_TYPE_NAMES.get(kind, "unknown"), exc, *source)

    def _enqueue(self, queue: deque[tuple[bytes, Address]], leaf: bytes,
                 source: Address) -> None:
        if len(queue) >= self.config.handoff_queue_depth:
            self.log.warning("memberlist: handler queue full, dropping message (%d) from=%s:%d",
                             leaf[0], *source)
            return
        queue.append((leaf, source))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        """Handle queued news, alive first, newest first (memberlist getNextMessage)."""
        self._drain_scheduled = False
        high, low = self._high, self._low
        while (high or low) and not self.shut:
            leaf, source = high.pop() if high else low.pop()
            kind = leaf[0]
            try:
                if kind == USER_MSG:
                    if self.delegate is not None and len(leaf) > 1:
                        self.delegate.notify_msg(leaf[1:])
                    continue
                msg = codec.decode(leaf)
                if isinstance(msg, Alive):
                    self.alive_node(msg)
                elif isinstance(msg, Suspect):
                    self.suspect_node(msg)
                elif isinstance(msg, Dead):
                    self.dead_node(msg)
            except GossipError as exc:
                self.log.error("memberlist: Failed to decode %s message: %s from=%s:%d",
                               MESSAGE_TYPE_NAMES.get(kind, "unknown"), exc, *source)

    # -- gossip --------------------------------------------------------------------------------

    def gossip(self) -> None:
        """Send queued broadcasts to a few random peers (memberlist gossip)."""
        targets = self.random_nodes(self.config.gossip_nodes, gossip=True)
        if not targets:
            return
        room = self.config.udp_buffer_size - COMPOUND_HEADER_OVERHEAD - self.packet_overhead()
        for node in targets:
            msgs = self.get_broadcasts(COMPOUND_OVERHEAD, room)
            if not msgs:
                return
            try:
                self.raw_send(msgs, node.address, node)
            except OSError as exc:
                self.log.error("memberlist: Failed to send gossip to %s:%d: %s",
                               *node.address, exc)

def _packet_error(exc: GossipError) -> str:
    if isinstance(exc, GossipDecryptError):
        return f"Decrypt packet failed: {exc}"
    return f"Failed to decode packet: {exc}"
