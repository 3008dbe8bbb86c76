"""The leader's reconciliation of LAN gossip members into the catalog (Consul's
agent/consul/leader.go: reconcile, reconcileMember, reconcileReaped).

Gossip is the truth about whether a node's agent is alive; the catalog is what clients read.
The leader closes the gap: an alive member gets its node and a passing `serfHealth` check, a
failed one a critical check (which also invalidates its sessions), one that left or was reaped
is deregistered. Member events are coalesced by name, so a burst of changes in a large pool
costs one write per node, and a full pass every `interval` repairs anything a lost event or a
failed write left behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from proconsul import CONSUL_COMPAT_VERSION
from proconsul.errors import ProconsulError
from proconsul.gossip.serf.config import SerfMember
from proconsul.gossip.serf.events import EventType, MemberEvent
from proconsul.gossip.serf.messages import STATUS_ALIVE, STATUS_FAILED, STATUS_LEFT
from proconsul.gossip.state import address_text
from proconsul.server.commands import MessageType, encode
from proconsul.server.server import CONSUL_SERVICE, Server
from proconsul.structs.catalog import HEALTH_CRITICAL, HEALTH_PASSING
from proconsul.structs.session import SERF_CHECK_ID, SERF_CHECK_NAME

log = logging.getLogger("proconsul.server")

ALIVE_OUTPUT = "Agent alive and reachable"
FAILED_OUTPUT = "Agent not live or unreachable"

#: Consul's reconcile_interval.
RECONCILE_INTERVAL = 60.0

Members = Callable[[], list[SerfMember]]
PeerHook = Callable[[SerfMember], Awaitable[None]]


def is_consul_node(member: SerfMember) -> tuple[bool, str]:
    """A client agent of some datacenter (Consul's isConsulNode)."""
    if member.tags.get("role") != "node":
        return False, ""
    return True, member.tags.get("dc", "")


def is_consul_server(member: SerfMember) -> tuple[bool, str]:
    if member.tags.get("role") != "consul":
        return False, ""
    return True, member.tags.get("dc", "")


class MemberReconciler:
    """Runs on the leader; fed with the LAN pool's member events."""

    def __init__(self, server: Server, members: Members,
                 interval: float = RECONCILE_INTERVAL, *, ensure_peer: PeerHook | None = None,
                 remove_peer: PeerHook | None = None) -> None:
        self.server = server
        self.members = members
        self.interval = interval
        #: keep Raft's membership in step: an alive server is a voter, a gone one is removed
        self.ensure_peer = ensure_peer
        self.remove_peer = remove_peer
        #: member name -> the member record of its latest event (reaped ones included)
        self._pending: dict[str, tuple[SerfMember, bool]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def notify(self, event: MemberEvent[SerfMember]) -> None:
        """Queue the members of a gossip event for reconciliation (the reconcileCh)."""
        reaped = event.type == EventType.MEMBER_REAP
        for member in event.members:
            self._pending[member.name] = (member, reaped)
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_full = loop.time()
        while True:
            if loop.time() >= next_full:
                await self._logged(self.reconcile())
                next_full = loop.time() + self.interval
            try:
                async with asyncio.timeout(max(0.0, next_full - loop.time())):
                    await self._wake.wait()
            except TimeoutError:
                continue
            self._wake.clear()
            pending, self._pending = self._pending, {}
            for member, reaped in pending.values():
                if reaped:
                    await self._logged(self.deregister(member, "reaped"))
                else:
                    await self._logged(self.reconcile_member(member))

    async def _logged(self, job: Any) -> None:
        try:
            await job
        except ProconsulError as exc:
            log.error("leader: failed to reconcile member: error=%s", exc)

    def should_handle(self, member: SerfMember) -> bool:
        dc = self.server.datacenter
        valid, member_dc = is_consul_node(member)
        if valid and member_dc == dc:
            return True
        valid, member_dc = is_consul_server(member)
        return valid and member_dc == dc and member.tags.get("segment", "") == ""

    async def reconcile(self) -> None:
        """A full pass: every member, then catalog nodes gossip no longer knows."""
        known: set[str] = set()
        for member in self.members():
            known.add(member.name)
            await self.reconcile_member(member)
        await self.reconcile_reaped(known)

    async def reconcile_member(self, member: SerfMember) -> None:
        if not self.should_handle(member):
            log.debug("leader: skipping reconcile of node: member=%s", member.name)
            return
        if member.status == STATUS_ALIVE:
            await self.handle_alive(member)
        elif member.status == STATUS_FAILED:
            await self.handle_failed(member)
        elif member.status == STATUS_LEFT:
            await self.deregister(member, "left")

    def _serf_check(self, node: str) -> Any:
        return self.server.store.checks.get((node, SERF_CHECK_ID))

    async def handle_alive(self, member: SerfMember) -> None:
        store = self.server.store
        addr = address_text(member.addr)
        node_id = member.tags.get("id", "")
        server = is_consul_server(member)[0]
        if server and self.ensure_peer is not None:
            await self.ensure_peer(member)
        existing = store.nodes.get(member.name)
        if existing is not None and existing.address == addr and existing.id == node_id:
            check = self._serf_check(member.name)
            has_service = not server or (member.name, CONSUL_SERVICE) in store.services
            if check is not None and check.status == HEALTH_PASSING and has_service:
                return
        if member.name == self.server.node_name:
            await self.server.reconcile_self()
            return
        body: dict[str, Any] = {
            "Datacenter": self.server.datacenter, "Node": member.name, "ID": node_id,
            "Address": addr,
            "Check": {"Node": member.name, "CheckID": SERF_CHECK_ID, "Name": SERF_CHECK_NAME,
                      "Status": HEALTH_PASSING, "Output": ALIVE_OUTPUT},
        }
        if existing is not None:
            body["TaggedAddresses"] = dict(existing.tagged_addresses)
            body["NodeMeta"] = dict(existing.meta)
        if server:
            body["Service"] = _consul_service(member)
        log.info("leader: member joined, marking health alive: member=%s", member.name)
        await self.server.apply(encode(MessageType.REGISTER, body))

    async def handle_failed(self, member: SerfMember) -> None:
        store = self.server.store
        existing = store.nodes.get(member.name)
        if existing is not None:
            check = self._serf_check(member.name)
            if check is not None and check.status == HEALTH_CRITICAL:
                return
        log.info("leader: member failed, marking health critical: member=%s", member.name)
        body: dict[str, Any] = {
            "Datacenter": self.server.datacenter, "Node": member.name,
            "ID": member.tags.get("id", ""), "Address": address_text(member.addr),
            "Check": {"Node": member.name, "CheckID": SERF_CHECK_ID, "Name": SERF_CHECK_NAME,
                      "Status": HEALTH_CRITICAL, "Output": FAILED_OUTPUT},
        }
        if existing is not None:
            body["ID"] = existing.id or body["ID"]
            body["Address"] = existing.address
            body["TaggedAddresses"] = dict(existing.tagged_addresses)
            body["NodeMeta"] = dict(existing.meta)
        await self.server.apply(encode(MessageType.REGISTER, body))

    async def deregister(self, member: SerfMember, reason: str) -> None:
        """Remove a node that left or was reaped (handleDeregisterMember)."""
        if member.name == self.server.node_name:
            log.warning("leader: deregistering self should be done by follower: name=%s "
                        "partition=default", member.name)
            return
        if is_consul_server(member)[0] and self.remove_peer is not None:
            await self.remove_peer(member)
        if member.name not in self.server.store.nodes:
            return
        log.info("leader: deregistering member: member=%s partition=default reason=%s",
                 member.name, reason)
        await self.server.apply(encode(MessageType.DEREGISTER, {
            "Datacenter": self.server.datacenter, "Node": member.name,
            "ServiceID": "", "CheckID": "",
        }))

    async def reconcile_reaped(self, known: set[str]) -> None:
        """Deregister catalog nodes with a serfHealth check that gossip no longer knows."""
        store = self.server.store
        stale = [node for (node, cid) in list(store.checks)
                 if cid == SERF_CHECK_ID and node not in known
                 and node != self.server.node_name]
        for node in stale:
            existing = store.nodes.get(node)
            if existing is None:
                continue
            tags = {"role": "node", "dc": self.server.datacenter}
            if (node, CONSUL_SERVICE) in store.services:
                tags = {"role": "consul", "dc": self.server.datacenter}
            ghost = SerfMember(node, b"", 0, tags, 0)
            await self.deregister(ghost, "reaped")


def _consul_service(member: SerfMember) -> dict[str, Any]:
    tags = member.tags
    return {
        "ID": CONSUL_SERVICE, "Service": CONSUL_SERVICE, "Port": int(tags.get("port") or 8300),
        "Weights": {"Passing": 1, "Warning": 1},
        "Meta": {
            "non_voter": "false", "read_replica": "false",
            "raft_version": tags.get("raft_vsn", "3"),
            "serf_protocol_current": str(member.protocol_cur),
            "serf_protocol_min": str(member.protocol_min),
            "serf_protocol_max": str(member.protocol_max),
            "version": tags.get("build", CONSUL_COMPAT_VERSION).split(":", 1)[0],
        },
    }
