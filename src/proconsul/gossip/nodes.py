"""How alive, suspect and dead news changes what a node believes (memberlist state.go:
aliveNode, suspectNode, deadNode, refute).

Incarnation numbers order the news about one node: newer incarnations win, a node is the only
one allowed to raise its own (by refuting), and suspicion turns into death only after a
Lifeguard timeout that independent confirmations shorten. Every change that is applied is
gossiped on, so the rules here decide both what this node believes and what it spreads.
"""

from __future__ import annotations

from collections.abc import Callable

from proconsul.gossip.config import suspicion_timeout
from proconsul.gossip.core import MemberlistCore
from proconsul.gossip.messages import (
    STATE_ALIVE,
    STATE_DEAD,
    STATE_LEFT,
    STATE_SUSPECT,
    Alive,
    Dead,
    Suspect,
)
from proconsul.gossip.state import NodeState, address_text
from proconsul.gossip.suspicion import Suspicion

__all__ = ["NodeStates"]


class NodeStates(MemberlistCore):
    """The state-machine half of a Memberlist."""

    def alive_node(self, a: Alive, bootstrap: bool = False,
                   notify: Callable[[], None] | None = None) -> None:
        """Apply an alive message (memberlist aliveNode)."""
        if self.leaving and a.node == self.name:
            return
        vsn = a.vsn
        if len(vsn) >= 3:
            pmin, pmax = vsn[0], vsn[1]
            if pmin == 0 or pmax == 0 or pmin > pmax:
                self.log.warning("memberlist: Ignoring an alive message for '%s' (%s:%d) "
                                 "because protocol version(s) are wrong: %d <= %s <= %d should "
                                 "be >0", a.node, address_text(a.addr), a.port, pmin, vsn[2], pmax)
                return
        candidate = NodeState(a.node, a.addr, a.port, a.meta, a.incarnation, STATE_DEAD, vsn)
        if self.alive_delegate is not None:
            if len(vsn) < 6:
                self.log.warning("memberlist: ignoring alive message for '%s' (%s:%d) because "
                                 "Vsn is not present", a.node, address_text(a.addr), a.port)
                return
            reason = self.alive_delegate.notify_alive(candidate)
            if reason:
                self.log.warning("memberlist: ignoring alive message for '%s': %s", a.node,
                                 reason)
                return
        state = self.node_map.get(a.node)
        updates_node = False
        if state is None:
            state = candidate
            state.incarnation = 0
            state.state_change = self.now()
            self.node_map[a.node] = state
            # a random position, so new nodes are not all probed last
            self.nodes.append(state)
            offset = self.rng.randrange(len(self.nodes))
            self.nodes[offset], self.nodes[-1] = self.nodes[-1], self.nodes[offset]
            self.num_nodes += 1
        elif state.addr != a.addr or state.port != a.port:
            reclaim = self.config.dead_node_reclaim_time
            can_reclaim = reclaim > 0 and self.now() - state.state_change > reclaim
            if state.state == STATE_LEFT or (state.state == STATE_DEAD and can_reclaim):
                self.log.info("memberlist: Updating address for left or failed node %s from "
                              "%s:%d to %s:%d", state.name, state.host, state.port,
                              address_text(a.addr), a.port)
                updates_node = True
            else:
                self.log.error("memberlist: Conflicting address for %s. Mine: %s:%d Theirs: "
                               "%s:%d Old state: %s", state.name, state.host, state.port,
                               address_text(a.addr), a.port, state.state_name)
                if self.conflict is not None:
                    self.conflict.notify_conflict(state, candidate)
                return
        local = state.name == self.name
        if a.incarnation <= state.incarnation and not local and not updates_node:
            return
        if a.incarnation < state.incarnation and local:
            return
        self.clear_suspicion(a.node)
        old_state, old_meta = state.state, state.meta
        if not bootstrap and local:
            if (a.incarnation == state.incarnation and (a.meta or b"") == (state.meta or b"")
                    and a.vsn == state.vsn):
                return
            self.refute(state, a.incarnation)
            self.log.warning("memberlist: Refuting an alive message for '%s' (%s:%d) meta:(%s "
                             "VS %s), vsn:(%s VS %s)", a.node, address_text(a.addr), a.port,
                             (a.meta or b"").hex(), (state.meta or b"").hex(), a.vsn.hex(),
                             state.vsn.hex())
        else:
            self.broadcast(a.node, a, notify)
            if a.vsn:
                state.vsn = a.vsn
            state.incarnation = a.incarnation
            state.meta = a.meta
            state.addr = a.addr
            state.port = a.port
            if state.state != STATE_ALIVE:
                state.state = STATE_ALIVE
                state.state_change = self.now()
        if self.events is not None:
            if old_state in (STATE_DEAD, STATE_LEFT):
                if state.state == STATE_ALIVE:
                    self.events.notify_join(state)
            elif (old_meta or b"") != (state.meta or b""):
                self.events.notify_update(state)

    def suspect_node(self, s: Suspect) -> None:
        """Apply a suspect message (memberlist suspectNode)."""
        state = self.node_map.get(s.node)
        if state is None or s.incarnation < state.incarnation:
            return
        held = self.timers.get(s.node)
        if held is not None:
            suspicion, handle = held
            if suspicion.confirm(s.from_):
                self.broadcast(s.node, s)
                handle.cancel()
                self._arm(suspicion, state.state_change)
            return
        if state.state != STATE_ALIVE:
            return
        if state.name == self.name:
            self.refute(state, s.incarnation)
            self.log.warning("memberlist: Refuting a suspect message (from: %s)", s.from_)
            return
        self.broadcast(s.node, s)
        state.incarnation = s.incarnation
        state.state = STATE_SUSPECT
        change = self.now()
        state.state_change = change
        cfg = self.config
        k = cfg.suspicion_mult - 2
        n = self.est_num_nodes()
        if n - 2 < k:
            k = 0
        low = suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval)
        high = cfg.suspicion_max_timeout_mult * low
        self._arm(Suspicion(s.node, s.from_, k, low, high, change), change)

    def _arm(self, suspicion: Suspicion, change: float) -> None:
        delay = max(0.0, suspicion.deadline() - self.now())
        handle = self.loop.call_later(delay, self._suspicion_expired, suspicion, change)
        self.timers[suspicion.node] = (suspicion, handle)

    def _suspicion_expired(self, suspicion: Suspicion, change: float) -> None:
        if self.shut:
            return
        self.timers.pop(suspicion.node, None)
        state = self.node_map.get(suspicion.node)
        if state is None or state.state != STATE_SUSPECT or state.state_change != change:
            return
        self.log.info("memberlist: Marking %s as failed, suspect timeout reached (%d peer "
                      "confirmations)", state.name, suspicion.confirmations)
        self.dead_node(Dead(state.incarnation, state.name, self.name))

    def clear_suspicion(self, name: str) -> None:
        held = self.timers.pop(name, None)
        if held is not None:
            held[1].cancel()

    def dead_node(self, d: Dead) -> None:
        """Apply a dead message (memberlist deadNode); `from == node` is a graceful leave."""
        state = self.node_map.get(d.node)
        if state is None or d.incarnation < state.incarnation:
            return
        self.clear_suspicion(d.node)
        if state.dead_or_left():
            return
        if state.name == self.name:
            if not self.leaving:
                self.refute(state, d.incarnation)
                self.log.warning("memberlist: Refuting a dead message (from: %s)", d.from_)
                return
            self.broadcast(d.node, d, self._leave_sent)
        else:
            self.broadcast(d.node, d)
        state.incarnation = d.incarnation
        state.state = STATE_LEFT if d.node == d.from_ else STATE_DEAD
        state.state_change = self.now()
        if self.events is not None:
            self.events.notify_leave(state)

    def _leave_sent(self) -> None:
        fut = self.leave_broadcast
        if fut is not None and not fut.done():
            fut.set_result(None)

    def refute(self, me: NodeState, accused: int) -> None:
        """Outbid an accusation about ourselves with a higher incarnation (memberlist refute);
        having to do so is also a sign this node may be the slow one."""
        inc = self.next_incarnation()
        if accused >= inc:
            inc = self.skip_incarnation(accused - inc + 1)
        me.incarnation = inc
        self.awareness.apply_delta(1)
        alive = Alive(inc, me.name, me.addr, me.port, me.meta, self.vsn())
        self.broadcast(me.name, alive)

    def merge_states(self, remote: list[NodeState]) -> None:
        """Apply a push/pull's node list (memberlist mergeState): alive entries as alive
        messages, left as a leave, and dead or suspect only as suspicion, since a node never
        takes another's word for a death it did not see."""
        for r in remote:
            if r.state == STATE_ALIVE:
                self.alive_node(Alive(r.incarnation, r.name, r.addr, r.port, r.meta, r.vsn))
            elif r.state == STATE_LEFT:
                self.dead_node(Dead(r.incarnation, r.name, r.name))
            elif r.state in (STATE_DEAD, STATE_SUSPECT):
                self.suspect_node(Suspect(r.incarnation, r.name, self.name))
