"""Serf: members with tags and a lifecycle, user events and queries on top of memberlist
(mirrors hashicorp/serf serf/serf.go).

memberlist knows whether a node answers; Serf adds why it is gone (left on purpose or failed),
ordered by a Lamport clock of join/leave intents so a late "leave" cannot undo a newer "join",
plus application events and queries gossiped through the same packets. Failed members are
retried (reconnect) and eventually forgotten (reap), left ones kept as tombstones for a while so
that a push/pull from a peer that missed the leave cannot bring them back.

With a snapshot file, a restarted member resumes its Lamport clocks (so old events and queries
are not delivered again) and rejoins the nodes it last saw alive, unless it left gracefully.
Events reach the application through `event_pipeline` (snapshot, internal queries, coalescing).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from proconsul.errors import GossipError
from proconsul.gossip.keyring import Keyring
from proconsul.gossip.memberlist import Delegates, Memberlist
from proconsul.gossip.messages import STATE_LEFT
from proconsul.gossip.queue import Broadcast, TransmitLimitedQueue
from proconsul.gossip.serf import codec
from proconsul.gossip.serf.config import (
    PROTOCOL_MAX,
    PROTOCOL_MIN,
    SerfConfig,
    SerfMember,
    UserEventRecord,
)
from proconsul.gossip.serf.coordinate import (
    Coordinate,
    CoordinateClient,
    CoordinateRejected,
    decode_ping_payload,
    encode_ping_payload,
)
from proconsul.gossip.serf.event_buffer import QueryBuffer, UserEventBuffer
from proconsul.gossip.serf.event_pipeline import EventPipeline, SerfEvent
from proconsul.gossip.serf.events import EventType, MemberEvent
from proconsul.gossip.serf.lamport import LamportClock
from proconsul.gossip.serf.messages import (
    QUERY_FLAG_ACK,
    STATUS_ALIVE,
    STATUS_FAILED,
    STATUS_LEAVING,
    STATUS_LEFT,
    Join,
    Leave,
    Query,
    QueryResponse,
    RelayHeader,
    UDPAddr,
    UserEvent,
)
from proconsul.gossip.serf.query import (
    QueryEvent,
    QueryParam,
    QueryResponseCollector,
    default_query_timeout,
    should_process,
)
from proconsul.gossip.serf.snapshot import PreviousNode, Snapshotter
from proconsul.gossip.state import NodeState, address_bytes, address_text
from proconsul.gossip.ticker import Ticker
from proconsul.gossip.transport import Transport

__all__ = ["Serf", "SerfEvent"]

T = TypeVar("T")

#: serf's UserEventSizeLimit ceiling
USER_EVENT_SANE_LIMIT = 9 * 1024


@dataclass
class _Intent:
    kind: str  # "join" or "leave"
    ltime: int
    wall: float


class Serf:
    """One member of a Serf pool (a Consul LAN or WAN pool)."""

    def __init__(self, config: SerfConfig, transport: Transport,
                 on_event: Callable[[SerfEvent], None] | None = None, *,
                 keyring: Keyring | None = None, logger: logging.Logger | None = None,
                 rng: random.Random | None = None) -> None:
        from proconsul.gossip.serf.serf_delegate import SerfDelegate

        self.config = config
        self.name = config.node_name
        self.tags = dict(config.tags)
        self.log = logger or logging.getLogger("proconsul.serf")
        self.rng = rng or random.Random()
        self.on_event = on_event
        self.clock = LamportClock()
        self.event_clock = LamportClock()
        self.query_clock = LamportClock()
        self.clock.increment()
        self.event_clock.increment()
        self.query_clock.increment()
        self.event_join_ignore = False
        self.members: dict[str, SerfMember] = {}
        self.failed: list[SerfMember] = []
        self.left: list[SerfMember] = []
        self.recent_intents: dict[str, _Intent] = {}
        self.event_buffer = UserEventBuffer(self.event_clock, config.event_buffer)
        self.query_buffer = QueryBuffer(self.query_clock, config.query_buffer)
        self.queries: dict[int, QueryResponseCollector] = {}
        self.state = "alive"
        self.intents = TransmitLimitedQueue(config.memberlist.retransmit_mult, self.num_nodes)
        self.event_queue = TransmitLimitedQueue(config.memberlist.retransmit_mult,
                                                self.num_nodes)
        self.query_queue = TransmitLimitedQueue(config.memberlist.retransmit_mult,
                                                self.num_nodes)
        #: The nodes alive when the snapshot was last written (rejoined by `start`).
        self.previous_nodes: list[PreviousNode] = []
        #: The automatic rejoin `start` began, while or after it runs.
        self.rejoin_task: asyncio.Task[bool] | None = None
        self.snapshotter = self._open_snapshot() if config.snapshot_path else None
        self.delegate = SerfDelegate(self)
        self.events = EventPipeline(config, self.snapshotter, self._dispatch_query,
                                    self._deliver)
        vet = self.delegate if config.merge_delegate is not None else None
        delegates = Delegates(delegate=self.delegate, events=self.delegate,
                              conflict=self.delegate,
                              ping=None if config.disable_coordinates else self.delegate,
                              alive=vet, merge=vet,
                              versions=(PROTOCOL_MIN, PROTOCOL_MAX, config.protocol_version))
        self.memberlist = Memberlist(config.node_name, config.memberlist, transport, delegates,
                                     keyring=keyring, logger=logging.getLogger(
                                         "proconsul.memberlist"), rng=self.rng)
        self._tickers: list[Ticker] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.coordinates = Coordinates(self.name, self.log)

    def _open_snapshot(self) -> Snapshotter:
        """Replay the snapshot: resume the three clocks past what it recorded, ignore events
        and queries at or below its times, remember the nodes to rejoin (serf Create)."""
        try:
            snap = Snapshotter(self.config.snapshot_path, self.clock,
                               rejoin_after_leave=self.config.rejoin_after_leave)
        except OSError as exc:
            raise GossipError(f"Failed to setup snapshot: failed to open snapshot: {exc}") \
                from exc
        self.previous_nodes = snap.previous_nodes()
        self.clock.witness(snap.last_clock)
        self.event_clock.witness(snap.last_event_clock)
        self.query_clock.witness(snap.last_query_clock)
        self.event_buffer.min_time = snap.last_event_clock + 1
        self.query_buffer.min_time = snap.last_query_clock + 1
        return snap

    def save_keyring(self) -> None:
        """Persist the keyring after a keyring query changed it (serf writeKeyringFile)."""
        keyring = self.memberlist.keyring
        if self.config.keyring_file and keyring is not None:
            keyring.save(self.config.keyring_file)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, rejoin: bool = True) -> None:
        """Start gossiping; with `rejoin` (serf's behaviour) also begin rejoining the nodes
        the snapshot remembers, in the background (`rejoin_task`)."""
        await self.memberlist.start()
        loop = asyncio.get_running_loop()
        if self.snapshotter is not None:
            self.snapshotter.start()
        for interval, duty in ((self.config.reap_interval, self.reap),
                               (self.config.reconnect_interval, self.reconnect),
                               (self.config.queue_check_interval, self.check_queues)):
            if interval > 0:
                self._tickers.append(Ticker(loop, _constant(interval), duty, interval))
        if rejoin and self.previous_nodes:
            self.rejoin_task = self.spawn(self.rejoin_previous())

    async def rejoin_previous(self) -> bool:
        """Join the first answering node of those the snapshot remembers alive, tried in random
        order, skipping this one; True once one answered (serf handleRejoin). After a graceful
        leave there are none to try, unless `rejoin_after_leave`."""
        previous = [p for p in self.previous_nodes if p.name != self.name]
        if not previous or self.state != "alive":
            return False
        self.rng.shuffle(previous)
        for prev in previous:
            self.log.info("serf: Attempting re-join to previously known node: %s", prev)
            try:
                await self.memberlist.join([prev.join_address()])
            except GossipError:
                continue
            self.log.info("serf: Re-joined to previously known node: %s", prev)
            return True
        self.log.warning("serf: Failed to re-join any previously known node")
        return False

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `coro` in the background until it ends or Serf shuts down."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def join(self, existing: list[str], ignore_old: bool = False) -> int:
        """Join through any of `existing`; how many answered (serf Join)."""
        if self.state != "alive":
            raise GossipError("Serf can't Join after Leave or Shutdown")
        self.event_join_ignore = ignore_old
        try:
            joined = await self.memberlist.join(existing)
        finally:
            self.event_join_ignore = False
        if joined > 0:
            self.broadcast_join(self.clock.time())
        return joined

    def broadcast_join(self, ltime: int) -> None:
        msg = Join(ltime, self.name)
        self.clock.witness(ltime)
        self.handle_join_intent(msg)
        self.intents.queue(Broadcast(codec.encode(msg)))

    async def leave(self) -> None:
        """Graceful leave: a leave intent, then memberlist's own leave, then a pause for it to
        spread (serf Leave)."""
        if self.state == "left":
            return
        if self.state == "leaving":
            raise GossipError("Leave already in progress")
        if self.state == "shutdown":
            raise GossipError("Leave called after Shutdown")
        self.state = "leaving"
        if self.snapshotter is not None:
            self.snapshotter.leave()
        msg = Leave(self.clock.time(), self.name)
        self.clock.increment()
        self.handle_leave_intent(msg)
        loop = asyncio.get_running_loop()
        if self.has_alive_members():
            sent = loop.create_future()
            self.intents.queue(Broadcast(codec.encode(msg), None,
                                         _resolver(sent)))
            try:
                async with asyncio.timeout(self.config.broadcast_timeout):
                    await sent
            except TimeoutError:
                raise GossipError("timeout while waiting for graceful leave") from None
        await self.memberlist.leave(self.config.broadcast_timeout)
        await asyncio.sleep(self.config.leave_propagate_delay)
        if self.state != "shutdown":
            self.state = "left"

    async def shutdown(self) -> None:
        if self.state == "shutdown":
            return
        if self.state != "left":
            self.log.warning("serf: Shutdown without a Leave")
        self.state = "shutdown"
        for ticker in self._tickers:
            ticker.stop()
        for task in list(self._tasks):
            task.cancel()
        for collector in list(self.queries.values()):
            collector.close()
        await self.memberlist.shutdown()
        self.events.close()
        if self.snapshotter is not None:
            await self.snapshotter.close()

    async def set_tags(self, tags: dict[str, str]) -> None:
        """Replace this member's tags and gossip them (serf SetTags)."""
        if len(codec.encode_tags(tags, self.config.protocol_version)) > 512:
            raise GossipError("Encoded length of tags exceeds limit of 512 bytes")
        self.tags = dict(tags)
        await self.memberlist.update_node(self.config.broadcast_timeout)

    # -- views ---------------------------------------------------------------------------------

    def num_nodes(self) -> int:
        return len(self.members)

    def member_list(self) -> list[SerfMember]:
        return list(self.members.values())

    def local_member(self) -> SerfMember:
        return self.members[self.name]

    def has_alive_members(self) -> bool:
        return any(m.status == STATUS_ALIVE and m.name != self.name
                   for m in self.members.values())

    def emit(self, event: SerfEvent) -> None:
        """Hand an event to the snapshot, coalescing and then the application."""
        self.events.feed(event)

    def _dispatch_query(self, event: QueryEvent) -> None:
        # looked up per query, so the query stage can be stood in for on one member
        self.delegate.dispatch_query(event)

    def _deliver(self, event: SerfEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def decode_tags(self, meta: bytes | None) -> dict[str, str]:
        """Tags from node meta; what could be read when it is malformed (serf decodeTags)."""
        try:
            return codec.decode_tags(meta)
        except GossipError as exc:
            self.log.error("serf: Failed to decode tags: %s", exc)
            return {}

    def stats(self) -> dict[str, str]:
        """Operator debugging figures, by serf's Stats keys, every value a string."""
        stats = {
            "members": str(len(self.members)),
            "failed": str(len(self.failed)),
            "left": str(len(self.left)),
            "health_score": str(self.memberlist.health_score()),
            "member_time": str(self.clock.time()),
            "event_time": str(self.event_clock.time()),
            "query_time": str(self.query_clock.time()),
            "intent_queue": str(len(self.intents)),
            "event_queue": str(len(self.event_queue)),
            "query_queue": str(len(self.query_queue)),
            "encrypted": "true" if self.memberlist.encryption_enabled() else "false",
        }
        if not self.config.disable_coordinates:
            stats["coordinate_resets"] = str(self.coordinates.client.resets)
        return stats

    # -- memberlist events ---------------------------------------------------------------------

    def node_joined(self, node: NodeState) -> None:
        """memberlist says `node` is alive (serf handleNodeJoin)."""
        member = self.members.get(node.name)
        old = 0
        if member is None:
            member = SerfMember(node.name, node.addr, node.port, self.decode_tags(node.meta),
                                STATUS_ALIVE)
            intent = self.recent_intents.get(node.name)
            if intent is not None:
                member.status_ltime = intent.ltime
                if intent.kind == "leave":
                    member.status = STATUS_LEAVING
            self.members[node.name] = member
        else:
            old = member.status
            member.status = STATUS_ALIVE
            member.leave_time = 0.0
            member.addr, member.port = node.addr, node.port
            member.tags = self.decode_tags(node.meta)
        member.set_versions(node.vsn)
        if old in (STATUS_FAILED, STATUS_LEFT):
            self.failed = [m for m in self.failed if m.name != node.name]
            self.left = [m for m in self.left if m.name != node.name]
        self.log.info("serf: EventMemberJoin: %s %s", member.name, address_text(member.addr))
        self.emit(MemberEvent(EventType.MEMBER_JOIN, [replace(member)]))

    def node_left(self, node: NodeState) -> None:
        """memberlist says `node` is gone (serf handleNodeLeave): left if it announced its
        leave, failed otherwise."""
        member = self.members.get(node.name)
        if member is None:
            return
        now = asyncio.get_running_loop().time()
        if member.status == STATUS_LEAVING or (member.status == STATUS_ALIVE
                                               and node.state == STATE_LEFT):
            member.status = STATUS_LEFT
            member.leave_time = now
            self.left.append(member)
            kind, text = EventType.MEMBER_LEAVE, "EventMemberLeave"
        elif member.status == STATUS_ALIVE:
            member.status = STATUS_FAILED
            member.leave_time = now
            self.failed.append(member)
            kind, text = EventType.MEMBER_FAILED, "EventMemberFailed"
        else:
            self.log.warning("serf: Bad state when leave: %d", member.status)
            return
        self.log.info("serf: %s: %s %s", text, member.name, address_text(member.addr))
        self.emit(MemberEvent(kind, [replace(member)]))

    def node_updated(self, node: NodeState) -> None:
        member = self.members.get(node.name)
        if member is None:
            return
        member.addr, member.port = node.addr, node.port
        member.tags = self.decode_tags(node.meta)
        member.set_versions(node.vsn)
        self.log.info("serf: EventMemberUpdate: %s", member.name)
        self.emit(MemberEvent(EventType.MEMBER_UPDATE, [replace(member)]))

    # -- intents -------------------------------------------------------------------------------

    def _upsert_intent(self, node: str, kind: str, ltime: int) -> bool:
        held = self.recent_intents.get(node)
        if held is None or ltime > held.ltime:
            self.recent_intents[node] = _Intent(kind, ltime, asyncio.get_running_loop().time())
            return True
        return False

    def handle_leave_intent(self, msg: Leave) -> bool:
        """Apply a leave intent; True when it should be gossiped on."""
        self.clock.witness(msg.ltime)
        member = self.members.get(msg.node)
        if member is None:
            return self._upsert_intent(msg.node, "leave", msg.ltime)
        if msg.ltime <= member.status_ltime:
            return False
        if msg.node == self.name and self.state == "alive":
            self.log.debug("serf: Refuting an older leave intent")
            self.broadcast_join(self.clock.time())
            return False
        member.status_ltime = msg.ltime
        if member.status == STATUS_ALIVE:
            member.status = STATUS_LEAVING
        elif member.status == STATUS_FAILED:
            member.status = STATUS_LEFT
            self.failed = [m for m in self.failed if m.name != member.name]
            self.left.append(member)
            self.log.info("serf: EventMemberLeave (forced): %s %s", member.name,
                          address_text(member.addr))
            self.emit(MemberEvent(EventType.MEMBER_LEAVE, [replace(member)]))
        elif member.status not in (STATUS_LEAVING, STATUS_LEFT):
            return False
        if msg.prune:
            self.spawn(self._prune(member))
        return True

    async def _prune(self, member: SerfMember) -> None:
        if member.status == STATUS_LEAVING:
            await asyncio.sleep(self.config.broadcast_timeout + self.config.leave_propagate_delay)
        self.log.info("serf: EventMemberReap (forced): %s %s", member.name,
                      address_text(member.addr))
        self.erase(member)

    def handle_join_intent(self, msg: Join) -> bool:
        self.clock.witness(msg.ltime)
        member = self.members.get(msg.node)
        if member is None:
            return self._upsert_intent(msg.node, "join", msg.ltime)
        if msg.ltime <= member.status_ltime:
            return False
        member.status_ltime = msg.ltime
        if member.status == STATUS_LEAVING:
            member.status = STATUS_ALIVE
        return True

    async def force_leave(self, node: str, prune: bool = False) -> None:
        """Mark a failed member left for everyone (serf RemoveFailedNode / force-leave)."""
        msg = Leave(self.clock.time(), node, prune)
        self.clock.increment()
        self.handle_leave_intent(msg)
        if not self.has_alive_members():
            return
        sent = asyncio.get_running_loop().create_future()
        self.intents.queue(Broadcast(codec.encode(msg), None,
                                     _resolver(sent)))
        try:
            async with asyncio.timeout(self.config.broadcast_timeout):
                await sent
        except TimeoutError:
            raise GossipError("timed out broadcasting node removal") from None

    # -- user events ---------------------------------------------------------------------------

    def user_event(self, name: str, payload: bytes, coalesce: bool = True) -> None:
        size = len(name) + len(payload)
        limit = self.config.user_event_size_limit
        if size > limit:
            raise GossipError(f"user event exceeds configured limit of {limit} bytes before "
                              "encoding")
        if size > USER_EVENT_SANE_LIMIT:
            raise GossipError(f"user event exceeds sane limit of {USER_EVENT_SANE_LIMIT} bytes "
                              "before encoding")
        msg = UserEvent(self.event_clock.time(), name, payload, coalesce)
        self.event_clock.increment()
        raw = codec.encode(msg)
        if len(raw) > limit:
            raise GossipError(f"encoded user event exceeds limit of {limit} bytes after "
                              "encoding")
        self.handle_user_event(msg)
        self.event_queue.queue(Broadcast(raw))

    def handle_user_event(self, msg: UserEvent) -> bool:
        """Deliver a user event the first time it is seen; True when it should be gossiped
        on (serf handleUserEvent)."""
        if not self.event_buffer.accept(msg):
            return False
        self.emit(UserEventRecord(msg.ltime, msg.name, msg.payload or b"", msg.cc))
        return True

    # -- queries -------------------------------------------------------------------------------

    def default_query_timeout(self) -> float:
        return default_query_timeout(self.config.memberlist.gossip_interval,
                                     self.config.query_timeout_mult,
                                     self.memberlist.num_members())

    def query(self, name: str, payload: bytes,
              params: QueryParam | None = None) -> QueryResponseCollector:
        """Start a query; its acks and responses arrive on the returned collector."""
        params = params or QueryParam()
        timeout = params.timeout or self.default_query_timeout()
        me = self.memberlist.local_node()
        q = Query(self.query_clock.time(), self.rng.randrange(1 << 31), me.addr, me.port,
                  self.name, params.encode_filters(), QUERY_FLAG_ACK if params.request_ack else 0,
                  params.relay_factor, int(timeout * 1e9), name, payload)
        raw = codec.encode(q)
        if len(raw) > self.config.query_size_limit:
            raise GossipError(f"query exceeds limit of {self.config.query_size_limit} bytes")
        loop = asyncio.get_running_loop()
        collector = QueryResponseCollector(q.ltime, q.id, loop.time() + timeout,
                                           params.request_ack, loop)
        self.queries[q.ltime] = collector
        loop.call_at(collector.deadline + 0.001, self.queries.pop, q.ltime, None)
        self.handle_query(q)
        self.query_queue.queue(Broadcast(raw))
        return collector

    def handle_query(self, q: Query) -> bool:
        if not self.query_buffer.accept(q):
            return False
        rebroadcast = not q.no_broadcast
        if not should_process(q.filters, self.name, self.tags):
            return rebroadcast
        dest = (address_text(q.addr), q.port)
        if q.ack:
            ack = QueryResponse(q.ltime, q.id, self.name, QUERY_FLAG_ACK, None)
            self.send_response(ack, dest, q.relay_factor, q.source_node)
        loop = asyncio.get_running_loop()

        def send(resp: QueryResponse) -> None:
            resp.from_ = self.name
            self.send_response(resp, dest, q.relay_factor, q.source_node)

        event = QueryEvent(q.ltime, q.id, q.name, q.payload or b"", loop.time() + q.timeout / 1e9,
                           send, loop.time, self.config.query_response_size_limit, q.source_node)
        self.emit(event)
        return rebroadcast

    def send_response(self, resp: QueryResponse, dest: tuple[str, int], relay_factor: int,
                      dest_name: str) -> None:
        raw = codec.encode(resp)
        self.memberlist.send_to_address(dest, raw)
        if relay_factor <= 0:
            return
        peers = [m for m in self.members.values()
                 if m.status == STATUS_ALIVE and m.protocol_max >= 5 and m.name != self.name]
        if len(self.members) < relay_factor + 1:
            self.log.error("serf: failed to relay response: not enough other members to relay")
            return
        header = RelayHeader(UDPAddr(address_bytes(dest[0]), dest[1], ""), dest_name)
        relayed = codec.encode_relay(header, raw)
        for m in self.rng.sample(peers, min(relay_factor, len(peers))):
            self.memberlist.send_to_address((address_text(m.addr), m.port), relayed)

    def handle_query_response(self, resp: QueryResponse) -> None:
        collector = self.queries.get(resp.ltime)
        if collector is None:
            self.log.warning("serf: reply for non-running query (LTime: %d, ID: %d) From: %s",
                             resp.ltime, resp.id, resp.from_)
            return
        if collector.id != resp.id:
            self.log.warning("serf: Query reply ID mismatch (Local: %d, Response: %d)",
                             collector.id, resp.id)
            return
        collector.deliver(resp)

    # -- housekeeping --------------------------------------------------------------------------

    def erase(self, member: SerfMember) -> None:
        self.members.pop(member.name, None)
        self.failed = [m for m in self.failed if m.name != member.name]
        self.left = [m for m in self.left if m.name != member.name]
        self.emit(MemberEvent(EventType.MEMBER_REAP, [replace(member)]))

    def reap(self) -> None:
        """Forget failed members past the reconnect timeout and left ones past the tombstone
        timeout, and stale intents (serf handleReap)."""
        now = asyncio.get_running_loop().time()
        for pool, timeout in ((self.failed, self.config.reconnect_timeout),
                              (self.left, self.config.tombstone_timeout)):
            for member in list(pool):
                if now - member.leave_time > timeout:
                    self.log.info("serf: EventMemberReap: %s", member.name)
                    self.erase(member)
        stale = [name for name, intent in self.recent_intents.items()
                 if now - intent.wall > self.config.recent_intent_timeout]
        for name in stale:
            del self.recent_intents[name]

    def reconnect(self) -> None:
        """Now and then try to rejoin one failed member (serf reconnect)."""
        if not self.failed:
            return
        alive = max(1, len(self.members) - len(self.failed) - len(self.left))
        if self.rng.random() > len(self.failed) / alive:
            return
        member = self.rng.choice(self.failed)
        addr = f"{address_text(member.addr)}:{member.port}"
        self.log.info("serf: attempting reconnect to %s %s", member.name, addr)
        self.spawn(self._reconnect(f"{member.name}/{addr}"))

    async def _reconnect(self, target: str) -> None:
        try:
            await self.memberlist.join([target])
        except GossipError:
            pass

    def check_queues(self) -> None:
        """Keep the intent and event queues bounded (serf checkQueueDepth)."""
        limit = max(self.config.min_queue_depth, 2 * len(self.members),
                    self.config.max_queue_depth if not self.config.min_queue_depth else 0)
        for name, queue in (("Intent", self.intents), ("Event", self.event_queue),
                            ("Query", self.query_queue)):
            if len(queue) > limit:
                self.log.warning("serf: %s queue depth (%d) exceeds limit (%d), dropping "
                                 "messages!", name, len(queue), limit)
                queue.prune(limit)


def _constant(value: float) -> Callable[[], float]:
    return lambda: value


def _resolver(fut: asyncio.Future[None]) -> Callable[[], None]:
    def resolve() -> None:
        if not fut.done():
            fut.set_result(None)

    return resolve


class Coordinates:
    """This member's Vivaldi coordinate and the last one seen from each peer (serf's ping
    delegate and coordinate cache)."""

    def __init__(self, name: str, log: logging.Logger) -> None:
        self.name = name
        self.log = log
        self.client = CoordinateClient()
        self.cache: dict[str, Coordinate] = {}

    def ack_payload(self) -> bytes:
        return encode_ping_payload(self.client.get_coordinate())

    def observe(self, node: str, rtt: float, payload: bytes) -> None:
        if not payload:
            return
        try:
            coord = decode_ping_payload(payload)
            self.client.update(node, coord, rtt)
        except (GossipError, CoordinateRejected) as exc:
            self.log.log(5, "serf: Rejected coordinate from %s: %s", node, exc)
            return
        self.cache[node] = coord
        self.cache[self.name] = self.client.get_coordinate()

    def forget(self, node: str) -> None:
        self.cache.pop(node, None)
        self.client.forget_node(node)
