"""Anti-entropy: keeps the catalog's copy of this node equal to the agent's local state
(Consul's agent/ae/ae.go StateSyncer and the sync half of agent/local/state.go).

The agent is the owner of its node's services and checks, so the catalog is a replica that it
repairs: a partial sync pushes only what changed locally, promptly after each change; a full
sync, on an interval scaled by cluster size and staggered at random so thousands of agents do
not write at the same moment, also compares against the catalog and removes entries nobody
registered through this agent. The server's own `consul` service and the leader's serfHealth
check are left alone: they belong to the server, not to the agent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from proconsul.structs.catalog import HealthCheck, NodeService
from proconsul.structs.query import QueryOptions

if TYPE_CHECKING:
    from proconsul.agent.local_state import LocalState
    from proconsul.http.backend import CatalogBackend, HealthBackend
    from proconsul.server.server import Server

log = logging.getLogger("proconsul.agent")

#: Retry delay after a failed full sync (Consul's retryFailIntv).
RETRY_FAIL_INTERVAL = 15.0
#: Cluster size up to which the full-sync interval is not scaled (Consul's scaleThreshold).
SCALE_THRESHOLD = 128

SERVER_OWNED_SERVICES = frozenset({"consul"})
SERVER_OWNED_CHECKS = frozenset({"serfHealth"})


def scale_factor(nodes: int) -> int:
    """1 up to 128 nodes, then one more per doubling, so the cluster-wide write rate stays flat."""
    if nodes <= SCALE_THRESHOLD:
        return 1
    return math.ceil(math.log2(nodes) - math.log2(SCALE_THRESHOLD)) + 1


class CatalogSeam(Protocol):
    """Where the catalog lives: the local server in -dev and server mode."""

    async def register(self, body: dict[str, Any]) -> None: ...

    async def deregister(self, body: dict[str, Any]) -> None: ...

    async def node_services(self, node: str) -> list[NodeService]: ...

    async def node_checks(self, node: str) -> list[HealthCheck]: ...


class ServerCatalog:
    """The catalog of a server running in this process: writes go through its endpoint (and
    so through Raft), reads come straight from its state store."""

    def __init__(self, server: Server) -> None:
        self._srv = server

    async def register(self, body: dict[str, Any]) -> None:
        await self._srv.catalog.register(body)

    async def deregister(self, body: dict[str, Any]) -> None:
        await self._srv.catalog.deregister(body)

    async def node_services(self, node: str) -> list[NodeService]:
        return self._srv.store.node_services(None, node)[2]

    async def node_checks(self, node: str) -> list[HealthCheck]:
        return self._srv.store.node_checks(None, node)[1]


class EndpointCatalog:
    """The catalog behind the catalog and health endpoints (a client agent's RPC forms):
    reads are default-consistency reads, answered by the leader."""

    def __init__(self, catalog: CatalogBackend, health: HealthBackend) -> None:
        self.catalog = catalog
        self.health = health

    async def register(self, body: dict[str, Any]) -> None:
        await self.catalog.register(body)

    async def deregister(self, body: dict[str, Any]) -> None:
        await self.catalog.deregister(body)

    async def node_services(self, node: str) -> list[NodeService]:
        _, _, services = await self.catalog.node_services(node, QueryOptions())
        return services

    async def node_checks(self, node: str) -> list[HealthCheck]:
        _, checks = await self.health.node_checks(node, QueryOptions())
        return checks


class StateSyncer:
    def __init__(
        self,
        state: LocalState,
        catalog: CatalogSeam,
        node_info: Callable[[], dict[str, Any]],
        interval: float = 60.0,
        cluster_size: Callable[[], int] = lambda: 1,
    ) -> None:
        self.state = state
        self.catalog = catalog
        self.node_info = node_info
        self.interval = interval
        self.cluster_size = cluster_size
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._want_full = False
        self._want_partial = False
        self._task: asyncio.Task[None] | None = None

    # -- scheduling ---------------------------------------------------------------------------

    def next_full_delay(self) -> float:
        """The base interval plus a random stagger over the scaled interval."""
        return self.interval + random.uniform(0, scale_factor(self.cluster_size()) * self.interval)

    def start(self) -> None:
        self.state.on_change = self.trigger
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self.state.on_change = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def trigger(self) -> None:
        """Ask for a partial sync soon (a local change happened)."""
        self._want_partial = True
        self._wake.set()

    def trigger_full(self) -> None:
        self._want_full = True
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_full = loop.time()
        while True:
            now = loop.time()
            if self._want_full or now >= next_full:
                self._want_full = self._want_partial = False
                ok = await self._attempt(self.sync_full)
                delay = self.next_full_delay() if ok else (
                    RETRY_FAIL_INTERVAL + random.uniform(0, RETRY_FAIL_INTERVAL))
                next_full = loop.time() + delay
                continue
            if self._want_partial:
                self._want_partial = False
                await self._attempt(self.sync_changes)
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), next_full - now)
            except TimeoutError:
                pass

    @staticmethod
    async def _attempt(fn: Callable[[], Any]) -> bool:
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning("[agent] Syncing failed, will retry: error=%s", err)
            return False
        return True

    # -- sync ---------------------------------------------------------------------------------

    async def sync_full(self) -> None:
        """Compare with the catalog, then push every difference."""
        async with self._lock:
            await self._update_sync_state()
            await self._push()

    async def sync_changes(self) -> None:
        """Push only what is marked out of sync locally."""
        async with self._lock:
            await self._push()

    async def sync_changes_logged(self) -> None:
        """A sync after an API write: a failure is logged, the write already succeeded."""
        await self._attempt(self.sync_changes)

    async def sync_full_logged(self) -> bool:
        """A full sync whose failure is only logged (the periodic one retries it)."""
        return await self._attempt(self.sync_full)

    async def _update_sync_state(self) -> None:
        st = self.state
        node = st.node_name
        remote_services = {s.id: s for s in await self.catalog.node_services(node)}
        remote_checks = {c.check_id: c for c in await self.catalog.node_checks(node)}
        for sid, svc in remote_services.items():
            local = st.services.get(sid)
            if local is None:
                if sid not in SERVER_OWNED_SERVICES:
                    await self.catalog.deregister({"Node": node, "ServiceID": sid})
                    log.info("[agent] Deregistered service: service=%s", sid)
                continue
            if local.deleted:
                continue
            if local.service.enable_tag_override and local.service.tags != svc.tags:
                st.services[sid].service = _with_tags(local.service, svc.tags)
            local.in_sync = local.service.to_wire() == svc.to_wire()
        for sid, local in st.services.items():
            if sid not in remote_services and not local.deleted:
                local.in_sync = False
        for cid, check in remote_checks.items():
            cs = st.checks.get(cid)
            if cs is None:
                if cid not in SERVER_OWNED_CHECKS:
                    await self.catalog.deregister({"Node": node, "CheckID": cid})
                    log.info("[agent] Deregistered check: check=%s", cid)
                continue
            if cs.deleted:
                continue
            same = cs.check.to_wire() == check.to_wire()
            if not same and cs.deferred is not None:
                cs.deferred.cancel()
                cs.deferred = None
            cs.in_sync = same
        for cid, cs in st.checks.items():
            if cid not in remote_checks and not cs.deleted:
                cs.in_sync = False

    async def _push(self) -> None:
        st = self.state
        node = st.node_name
        for sid, sst in list(st.services.items()):
            if sst.deleted:
                await self.catalog.deregister({"Node": node, "ServiceID": sid})
                if st.services.get(sid) is sst:
                    st.forget_deleted_service(sid)
        for cid, cs in list(st.checks.items()):
            if cs.deleted:
                await self.catalog.deregister({"Node": node, "CheckID": cid})
                if st.checks.get(cid) is cs:
                    st.forget_deleted_check(cid)
        for sid, sst in list(st.services.items()):
            if sst.in_sync or sst.deleted:
                continue
            svc = sst.service
            checks = [(cid, cs, cs.check) for cid, cs in st.checks.items()
                      if cs.check.service_id == sid and not cs.deleted]
            body = {**self.node_info(), "Service": svc.to_wire(),
                    "Checks": [c.to_wire() for _, _, c in checks]}
            await self.catalog.register(body)
            if st.services.get(sid) is sst and sst.service is svc:
                sst.in_sync = True
            for cid, cs, sent in checks:
                if st.checks.get(cid) is cs and cs.check is sent:
                    cs.in_sync = True
        for cid, cs in list(st.checks.items()):
            if cs.in_sync or cs.deleted:
                continue
            sent = cs.check
            body = {**self.node_info(), "Check": sent.to_wire()}
            if sent.service_id:
                svc_state = st.services.get(sent.service_id)
                if svc_state is None or svc_state.deleted:
                    continue
                body["Service"] = svc_state.service.to_wire()
            await self.catalog.register(body)
            if st.checks.get(cid) is cs and cs.check is sent:
                cs.in_sync = True


def _with_tags(svc: NodeService, tags: tuple[str, ...]) -> NodeService:
    return dataclasses.replace(svc, tags=tags)
