"""SWIM failure detection with Lifeguard (memberlist state.go probe/probeNode, net.go
handlePing/handleIndirectPing/handleAck/handleNack).

One probe per interval, round-robin over a shuffled node list: a direct ping, then after the
probe timeout indirect pings through a few peers (with nacks, so a silent relay path counts
against us rather than against the target) and a TCP ping, and only when all of that stays
silent until the end of the interval is the target suspected. Each probe is a small state object
driven by loop timers, never a task, so a process can carry thousands of prober nodes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from proconsul.errors import GossipError
from proconsul.gossip import codec
from proconsul.gossip.messages import (
    STATE_ALIVE,
    STATE_DEAD,
    STATE_SUSPECT,
    Ack,
    IndirectPing,
    Nack,
    Ping,
    Suspect,
)
from proconsul.gossip.pushpull import Streams
from proconsul.gossip.state import NodeState, address_bytes, address_text
from proconsul.gossip.ticker import on_beat
from proconsul.gossip.transport import Address

__all__ = ["AckHandler", "Probe", "Probing"]


class AckHandler:
    """What to do when an ack (or nack) with one sequence number arrives."""

    __slots__ = ("on_ack", "on_nack", "timer")

    def __init__(self, on_ack: Callable[[bytes | None, float], None],
                 on_nack: Callable[[], None] | None) -> None:
        self.on_ack = on_ack
        self.on_nack = on_nack
        self.timer: asyncio.TimerHandle | None = None


class Probe:
    """One probe of one node, from the direct ping to its verdict."""

    __slots__ = ("acked", "deadline_timer", "done", "expected_nacks", "fallback",
                 "indirect_timer", "nacks", "node", "owner", "sent", "seq", "started")

    def __init__(self, owner: Probing, node: NodeState, seq: int, started: float) -> None:
        self.owner = owner
        self.node = node
        self.seq = seq
        self.started = started
        self.sent = started
        self.acked = False
        self.done = False
        self.nacks = 0
        self.expected_nacks = 0
        self.fallback: asyncio.Task[bool] | None = None
        self.indirect_timer: asyncio.TimerHandle | None = None
        self.deadline_timer: asyncio.TimerHandle | None = None

    def ack(self, payload: bytes | None, when: float) -> None:
        if self.done:
            return
        owner = self.owner
        # a direct answer within the probe timeout is the only kind that measures RTT
        if (not self.acked and self.indirect_timer is not None
                and owner.ping_delegate is not None and payload):
            owner.ping_delegate.notify_ping_complete(self.node, max(0.0, when - self.sent),
                                                     payload)
        self.acked = True
        self.finish(success=True)

    def nack(self) -> None:
        self.nacks += 1

    def timed_out(self) -> None:
        """No direct ack within the probe timeout: ask peers and try TCP."""
        self.indirect_timer = None
        if self.done:
            return
        owner = self.owner
        owner.log.debug("memberlist: Failed ping: %s (timeout reached)", self.node.name)
        node = self.node
        peers = owner.random_nodes(owner.config.indirect_checks, exclude=node.name)
        self_host, self_port = owner.transport.advertise()
        for peer in peers:
            ind = IndirectPing(self.seq, node.addr, node.port, node.name, False,
                               address_bytes(self_host), self_port, owner.name)
            if peer.pmax >= 4:
                ind.nack = True
                self.expected_nacks += 1
            owner.encode_and_send(peer.address, ind, peer)
        if not owner.config.disable_tcp_pings and node.pmax >= 3:
            remaining = self.started + owner.awareness.scale(owner.config.probe_interval) \
                - owner.now()
            self.fallback = owner.loop.create_task(
                owner.tcp_ping(node, self.seq, max(0.05, remaining)))

    def expired(self) -> None:
        """The end of the (awareness-scaled) probe interval with no ack at all."""
        self.deadline_timer = None
        if self.done:
            return
        fallback = self.fallback
        if fallback is not None and not fallback.done():
            # the TCP attempt has the same deadline; let it report before judging
            fallback.add_done_callback(lambda _t: self.judge())
            return
        self.judge()

    def judge(self) -> None:
        if self.done:
            return
        owner = self.owner
        fallback = self.fallback
        if (fallback is not None and fallback.done() and not fallback.cancelled()
                and fallback.exception() is None and fallback.result()):
            owner.log.warning("memberlist: Was able to connect to %s but other probes failed, "
                              "network may be misconfigured", self.node.name)
            self.finish(success=True)
            return
        delta = (self.expected_nacks - self.nacks) if self.expected_nacks > 0 else 1
        self.finish(success=False, delta=max(0, delta))
        node = owner.node_map.get(self.node.name)
        if node is None or node.state == STATE_DEAD or node.dead_or_left() or owner.shut:
            return
        owner.log.info("memberlist: Suspect %s has failed, no acks received", node.name)
        owner.suspect_node(Suspect(node.incarnation, node.name, owner.name))

    def finish(self, success: bool, delta: int = 0) -> None:
        if self.done:
            return
        self.done = True
        owner = self.owner
        owner.awareness.apply_delta(-1 if success else delta)
        for timer in (self.indirect_timer, self.deadline_timer):
            if timer is not None:
                timer.cancel()
        handler = owner.ack_handlers.pop(self.seq, None)
        if handler is not None and handler.timer is not None:
            handler.timer.cancel()
        if self.fallback is not None and not self.fallback.done():
            self.fallback.cancel()
        owner.probe_finished(self)


class Probing(Streams):
    """The failure-detector half of a Memberlist."""

    seq_no: int
    ack_handlers: dict[int, AckHandler]
    probe_index: int
    probe_handle: asyncio.TimerHandle | None
    #: when the pending (or running) probe was due, on the probe beats
    probe_due: float
    current_probe: Probe | None
    tasks: set[asyncio.Task[object]]

    def next_seq(self) -> int:
        self.seq_no = (self.seq_no + 1) & 0xFFFFFFFF
        return self.seq_no

    # -- choosing targets ----------------------------------------------------------------------

    def random_nodes(self, k: int, exclude: str = "",
                     gossip: bool = False) -> list[NodeState]:
        """Up to k distinct random peers: alive ones for probes (memberlist kRandomNodes), and
        for gossip also suspects and nodes dead for less than GossipToTheDeadTime."""
        nodes = self.nodes
        n = len(nodes)
        out: list[NodeState] = []
        if n == 0 or k <= 0:
            return out
        now = self.now()
        dead_window = self.config.gossip_to_the_dead_time

        def eligible(node: NodeState) -> bool:
            if node.name == self.name or node.name == exclude:
                return False
            if gossip:
                if node.state in (STATE_ALIVE, STATE_SUSPECT):
                    return True
                return node.state == STATE_DEAD and now - node.state_change <= dead_window
            return node.state == STATE_ALIVE

        if n <= 3 * k:
            candidates = [node for node in nodes if eligible(node)]
            self.rng.shuffle(candidates)
            return candidates[:k]
        seen: set[str] = set()
        for _ in range(3 * n):
            if len(out) >= k:
                break
            node = nodes[self.rng.randrange(n)]
            if node.name in seen or not eligible(node):
                continue
            seen.add(node.name)
            out.append(node)
        return out

    def reset_nodes(self) -> None:
        """On each wrap of the probe order: forget nodes dead or left for longer than
        GossipToTheDeadTime, and reshuffle (memberlist resetNodes/moveDeadNodes)."""
        now = self.now()
        window = self.config.gossip_to_the_dead_time
        keep: list[NodeState] = []
        for node in self.nodes:
            if node.dead_or_left() and now - node.state_change > window \
                    and node.name != self.name:
                self.node_map.pop(node.name, None)
                self.clear_suspicion(node.name)
            else:
                keep.append(node)
        self.num_nodes = len(keep)
        self.rng.shuffle(keep)
        self.nodes = keep

    # -- the probe cycle -----------------------------------------------------------------------

    def schedule_probe(self, delay: float) -> None:
        """Probe at the first probe beat `delay` seconds or more from now."""
        self._arm_probe(self.now() + delay)

    def _arm_probe(self, at: float) -> None:
        # on beats (see ticker.py), so the probes of the nodes sharing a loop wake it together
        if not self.shut:
            self.probe_due = on_beat(at, self.config.probe_interval)
            self.probe_handle = self.loop.call_at(self.probe_due, self.probe)

    def probe(self) -> None:
        """Probe the next node in the round-robin order (memberlist probe)."""
        self.probe_handle = None
        if self.shut:
            return
        checked = 0
        target: NodeState | None = None
        while checked < len(self.nodes):
            if self.probe_index >= len(self.nodes):
                self.reset_nodes()
                self.probe_index = 0
                checked += 1
                continue
            node = self.nodes[self.probe_index]
            self.probe_index += 1
            if node.name == self.name or node.dead_or_left():
                checked += 1
                continue
            target = node
            break
        if target is None:
            self._arm_probe(self.probe_due + self.config.probe_interval)
            return
        self.probe_node(target)

    def probe_node(self, node: NodeState) -> None:
        started = self.now()
        seq = self.next_seq()
        probe = Probe(self, node, seq, started)
        self.current_probe = probe
        interval = self.awareness.scale(self.config.probe_interval)
        handler = AckHandler(probe.ack, probe.nack)
        self.ack_handlers[seq] = handler
        host, port = self.transport.advertise()
        ping = Ping(seq, node.name, address_bytes(host), port, self.name)
        try:
            if node.state == STATE_ALIVE:
                probe.sent = self.encode_and_send(node.address, ping, node)
            else:
                # the buddy system: tell a suspect why we ask, so it can refute at once
                suspect = Suspect(node.incarnation, node.name, self.name)
                probe.sent = self.raw_send([codec.encode(ping), codec.encode(suspect)],
                                           node.address, node)
        except (OSError, GossipError) as exc:
            self.log.error("memberlist: Failed to send ping: %s", exc)
        probe.indirect_timer = self.loop.call_later(self.config.probe_timeout, probe.timed_out)
        probe.deadline_timer = self.loop.call_later(interval, probe.expired)

    def probe_finished(self, probe: Probe) -> None:
        if self.current_probe is probe:
            self.current_probe = None
        if self.shut:
            return
        # the next probe one interval after this one was due, or at the next beat if it ran over
        self._arm_probe(max(self.probe_due + self.config.probe_interval, self.now()))

    # -- answering -----------------------------------------------------------------------------

    def set_ack_handler(self, seq: int, on_ack: Callable[[bytes | None, float], None],
                        on_nack: Callable[[], None] | None, timeout: float) -> None:
        handler = AckHandler(on_ack, on_nack)
        handler.timer = self.loop.call_later(timeout, self.ack_handlers.pop, seq, None)
        self.ack_handlers[seq] = handler

    def handle_ping(self, p: Ping, source: Address) -> None:
        if p.node and p.node != self.name:
            self.log.warning("memberlist: Got ping for unexpected node '%s' from=%s:%d", p.node,
                             *source)
            return
        payload = self.ping_delegate.ack_payload() if self.ping_delegate is not None else None
        if p.source_addr and p.source_port:
            addr: Address = (address_text(p.source_addr), p.source_port)
        else:
            addr = source
        self.encode_and_send(addr, Ack(p.seq_no, payload))

    def handle_indirect_ping(self, ind: IndirectPing, source: Address) -> None:
        """Probe `ind.target` for a peer, and relay the answer (or a nack) back to it."""
        local_seq = self.next_seq()
        host, port = self.transport.advertise()
        ping = Ping(local_seq, ind.node, address_bytes(host), port, self.name)
        if ind.source_addr and ind.source_port:
            back: Address = (address_text(ind.source_addr), ind.source_port)
        else:
            back = source
        answered = [False]

        def relay(_payload: bytes | None, _when: float) -> None:
            answered[0] = True
            self.encode_and_send(back, Ack(ind.seq_no, None))

        self.set_ack_handler(local_seq, relay, None, self.config.probe_timeout)
        self.encode_and_send((address_text(ind.target), ind.port), ping)
        if ind.nack:
            def send_nack() -> None:
                if not answered[0] and not self.shut:
                    self.encode_and_send(back, Nack(ind.seq_no))

            self.loop.call_later(self.config.probe_timeout, send_nack)

    def handle_ack(self, ack: Ack, when: float) -> None:
        handler = self.ack_handlers.get(ack.seq_no)
        if handler is None:
            return
        if handler.timer is not None:
            self.ack_handlers.pop(ack.seq_no, None)
            handler.timer.cancel()
        handler.on_ack(ack.payload, when)

    def handle_nack(self, nack: Nack) -> None:
        handler = self.ack_handlers.get(nack.seq_no)
        if handler is not None and handler.on_nack is not None:
            handler.on_nack()
