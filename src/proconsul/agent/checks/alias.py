"""Alias checks: one check that carries the health of another service (Consul's
agent/checks/alias.go).

A sidecar or a load-balanced front often has no health of its own worth probing; what
matters is whether the thing behind it is healthy. An alias check copies that answer:
critical if any aliased check is critical, warning if any warns, passing otherwise. Node-level
checks of the aliased node count too, since a failing node fails every service on it.

Without `AliasNode` the target lives on this agent, so the runner reads local state directly
and re-evaluates on every local change instead of polling. With `AliasNode` the target is
elsewhere and the runner follows the catalog with blocking queries, as Consul does. Results go
straight to the sink: thresholds would only delay a status that was already filtered where
it was produced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from proconsul.structs.catalog import (
    HEALTH_CRITICAL,
    HEALTH_PASSING,
    HEALTH_WARNING,
    HealthCheck,
    NodeService,
)
from proconsul.structs.query import QueryOptions

from .base import CheckDefinition, CheckStatusSink

if TYPE_CHECKING:
    from proconsul.http.backend import CatalogBackend, HealthBackend

log = logging.getLogger(__name__)

#: re-read local state at least this often, in case a change notification was missed
LOCAL_REFRESH = 60.0
#: how long one remote blocking query may wait (Consul's MaxQueryTime for aliases)
REMOTE_WAIT = 60.0
#: how stale a remote answer may be; the alias accepts lagging the leader by this much
REMOTE_MAX_STALE = 15.0
#: failed remote attempts before backing off, and the cap on that backoff
BACKOFF_AFTER = 3
BACKOFF_MAX = 60.0
#: tries (with a growing pause) when asking whether a remote service exists
EXISTS_ATTEMPTS = 4

#: the pause used between remote retries, a seam so tests need not wait out the backoff
retry_sleep = asyncio.sleep


class LocalChecks(Protocol):
    """The slice of agent local state a local alias reads; `LocalState` satisfies it."""

    def service(self, service_id: str) -> NodeService | None: ...

    def list_checks(self) -> dict[str, HealthCheck]: ...

    async def wait_change(self, timeout: float) -> None: ...


class RemoteHealth(Protocol):
    """Catalog reads for an alias on another node."""

    async def node_checks(self, node: str, min_index: int,
                          wait: float) -> tuple[int, list[HealthCheck]]:
        """All checks of `node`, blocking until the index passes `min_index`."""
        ...

    async def node_service_ids(self, node: str) -> set[str]:
        """IDs of the services registered on `node`."""
        ...


def aggregate(checks: Iterable[HealthCheck], service_id: str, node: str,
              service_exists: Callable[[], bool]) -> tuple[str, str]:
    """The alias's (status, output) for the checks seen.

    Checks are taken in ID order so that, among several warnings, the reported one does not
    depend on dictionary order. `service_exists` is asked only when no check belongs to the
    service, because a service with checks plainly exists and the question may cost an RPC.
    """
    status, output = HEALTH_PASSING, "No checks found."
    found = False
    for chk in sorted(checks, key=lambda c: c.check_id):
        if node and chk.node != node:
            continue
        match = chk.service_id == service_id
        if chk.service_id and not match:
            continue
        found = found or match
        if chk.status in (HEALTH_CRITICAL, HEALTH_WARNING):
            status = chk.status
            output = f'Aliased check "{chk.name}" failing: {chk.output}'
            if chk.status == HEALTH_CRITICAL:
                break
        elif status == HEALTH_PASSING:
            output = "All checks passing."
    if not found and not service_exists():
        status = HEALTH_CRITICAL
        output = f"Service {service_id} could not be found on node {node}"
    return status, output


def _always_true() -> bool:
    return True


def _always_false() -> bool:
    return False


class AliasCheck:
    """A `CheckRunner` that mirrors another service's health."""

    def __init__(self, defn: CheckDefinition, sink: CheckStatusSink, *,
                 local: LocalChecks | None = None, remote: RemoteHealth | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        if defn.alias_node and remote is None:
            raise ValueError("alias checks on another node need a catalog to query")
        if not defn.alias_node and local is None:
            raise ValueError("alias checks need the agent's local state")
        self.defn = defn
        self.sink = sink
        self.node = defn.alias_node
        self.service_id = defn.alias_service
        self.local = local
        self.remote = remote
        self._loop = loop
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        body = self._run_remote() if self.node else self._run_local()
        self._task = loop.create_task(body, name=f"alias-check:{self.defn.check_id}")

    def stop(self) -> None:
        # cancelling is enough to keep a stale evaluation out: every report happens
        # synchronously right after an await, so a cancelled task reports nothing more
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _report(self, status: str, output: str) -> None:
        self.sink.update_check(self.defn.check_id, status, output)

    # -- local --------------------------------------------------------------------------------

    def evaluate_local(self) -> tuple[str, str]:
        """The current answer from local state; the alias's own entry is left out, since a
        node-level alias would otherwise read its own critical start as the node's health."""
        assert self.local is not None
        local = self.local
        checks = [c for cid, c in local.list_checks().items() if cid != self.defn.check_id]
        return aggregate(checks, self.service_id, self.node,
                         lambda: local.service(self.service_id) is not None)

    async def _run_local(self) -> None:
        assert self.local is not None
        while True:
            self._report(*self.evaluate_local())
            await self.local.wait_change(LOCAL_REFRESH)

    # -- remote -------------------------------------------------------------------------------

    async def _service_exists_remote(self) -> bool:
        assert self.remote is not None
        for attempt in range(1, EXISTS_ATTEMPTS + 1):
            try:
                return self.service_id in await self.remote.node_service_ids(self.node)
            except Exception as err:  # any failure means "cannot tell"
                log.debug("alias %s: service lookup failed: %s", self.defn.check_id, err)
                if attempt < EXISTS_ATTEMPTS:
                    await retry_sleep(attempt)
        # unknown is not the same as missing: do not fail a service over a failed lookup
        return True

    async def _run_remote(self) -> None:
        assert self.remote is not None
        index, attempt = 0, 0
        while True:
            if attempt > BACKOFF_AFTER:
                await retry_sleep(min(float(1 << min(attempt - BACKOFF_AFTER, 31)),
                                        BACKOFF_MAX))
            try:
                new_index, checks = await self.remote.node_checks(self.node, index, REMOTE_WAIT)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # any RPC failure is reported as health
                attempt += 1
                # one failure is tolerated silently: a leader change is routine
                if attempt > 1:
                    self._report(HEALTH_CRITICAL,
                                 f"Failure checking aliased node or service: {err}")
                continue
            attempt = 0
            # never ask with index 0 again, or an index-less answer would spin the loop
            index = max(new_index, 1)
            exists = True
            if not any(c.node == self.node and c.service_id == self.service_id
                       for c in checks):
                exists = await self._service_exists_remote()
            self._report(*aggregate(checks, self.service_id, self.node,
                                    _always_true if exists else _always_false))


class ServerHealth:
    """`RemoteHealth` over the catalog and health endpoints: the in-process server's (-dev,
    -server) or their RPC forms (client agents)."""

    def __init__(self, catalog: CatalogBackend, health: HealthBackend) -> None:
        self.catalog = catalog
        self.health = health

    async def node_checks(self, node: str, min_index: int,
                          wait: float) -> tuple[int, list[HealthCheck]]:
        opts = QueryOptions(min_query_index=min_index, max_query_time=wait,
                            allow_stale=True, max_stale=REMOTE_MAX_STALE)
        meta, checks = await self.health.node_checks(node, opts)
        return meta.index, checks

    async def node_service_ids(self, node: str) -> set[str]:
        opts = QueryOptions(allow_stale=True, max_stale=REMOTE_MAX_STALE)
        _, _, services = await self.catalog.node_services(node, opts)
        return {s.id for s in services}
