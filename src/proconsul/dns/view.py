"""The DNS interface's local view of the catalog, kept current by blocking queries.

A DNS query must not cost a catalog scan: the resolver reads nodes, service names and the
health entries of a service from here. Each part is loaded on first use and then followed by a
blocking query that returns when what it read changes (the same watches the HTTP API's blocking
queries use). On a change the view swaps in the new data and reports which names it affected,
so the server drops exactly the cached answers built from them.

Names are matched case-insensitively, as Consul's state store does for node and service names
(its indexes are lower-cased); the view keeps lower-cased keys to the registered spellings.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from proconsul.errors import ProconsulError
from proconsul.structs.query import QueryOptions

if TYPE_CHECKING:
    from proconsul.http.backend import CatalogBackend, HealthBackend
    from proconsul.state.catalog import HealthEntry
    from proconsul.structs.catalog import Node

log = logging.getLogger("proconsul.dns")

#: dependency names a cached answer can be built from
DEP_NODES = "nodes"  # any change to the node list (PTR answers)


def dep_node(name: str) -> str:
    return "node:" + name


def dep_name(name: str) -> str:
    """The mapping of a lower-cased service name to its registered spellings."""
    return "name:" + name


def dep_service(name: str) -> str:
    return "svc:" + name


def dep_connect(name: str) -> str:
    """The mesh-capable endpoints of service `name` (its proxies and native instances)."""
    return "connect:" + name


#: how long a failed watch waits before it tries again
RETRY_DELAY = 1.0


class CatalogView:
    """Nodes, service names and per-service health entries, followed by blocking queries.

    `on_change(deps)` is called with the dependency names whose data changed; `version` grows
    by one on every change and `changed_since` tells whether data a caller read from some
    dependencies may have been replaced meanwhile.
    """

    def __init__(
        self, catalog: CatalogBackend, health: HealthBackend, opts: QueryOptions,
        on_change: Callable[[set[str]], None], max_services: int = 4096,
    ) -> None:
        self._catalog = catalog
        self._health = health
        self._opts = opts
        self._on_change = on_change
        self._max_services = max_services
        self.version = 0
        self._changed_at: dict[str, int] = {}
        self._nodes: dict[str, Node] | None = None
        self._names: dict[str, tuple[str, ...]] | None = None
        self._services: OrderedDict[str, list[HealthEntry]] = OrderedDict()
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._closed = False

    # -- reads ---------------------------------------------------------------------------------

    async def nodes(self) -> dict[str, Node]:
        """Lower-cased node name -> node."""
        if self._nodes is None:
            await self._load_once("nodes", self._load_nodes)
        assert self._nodes is not None
        return self._nodes

    async def service_names(self, name: str) -> tuple[str, ...]:
        """The registered spellings of service `name` (lower-cased), empty when unknown."""
        if self._names is None:
            await self._load_once("names", self._load_names)
        assert self._names is not None
        return self._names.get(name, ())

    async def all_service_names(self) -> list[str]:
        if self._names is None:
            await self._load_once("names", self._load_names)
        assert self._names is not None
        return [n for names in self._names.values() for n in names]

    async def service(self, name: str) -> list[HealthEntry]:
        """Every instance of the service registered as `name`, with its node and checks."""
        return await self._slot(dep_service(name), name, False)

    async def connect(self, name: str) -> list[HealthEntry]:
        """The proxies for service `name` and its Connect-native instances."""
        return await self._slot(dep_connect(name), name, True)

    async def _slot(self, key: str, name: str, connect: bool) -> list[HealthEntry]:
        entries = self._services.get(key)
        if entries is not None:
            self._services.move_to_end(key)
            return entries
        await self._load_once(key, lambda: self._load_service(key, name, connect))
        return self._services.get(key, [])

    # -- loading and following -------------------------------------------------------------

    async def _load_once(self, key: str, load: Callable[[], Awaitable[None]]) -> None:
        """Concurrent first reads of one thing share a single load."""
        pending = self._loading.get(key)
        if pending is not None:
            await asyncio.shield(pending)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._loading[key] = fut
        try:
            await load()
            fut.set_result(None)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: later sharers re-raise it themselves
            raise
        finally:
            del self._loading[key]

    async def _load_nodes(self) -> None:
        meta, nodes = await self._catalog.nodes(None, self._opts)
        self._nodes = {n.node.lower(): n for n in nodes}
        self._follow("nodes", meta.index, self._watch_nodes)

    async def _load_names(self) -> None:
        meta, services = await self._catalog.services(None, self._opts)
        self._names = _names_of(services)
        self._follow("names", meta.index, self._watch_names)

    async def _load_service(self, key: str, name: str, connect: bool) -> None:
        meta, entries = await self._health.service_nodes(name, [], None, False, self._opts,
                                                         connect=connect)
        self._services[key] = entries
        while len(self._services) > self._max_services:
            old, _ = self._services.popitem(last=False)
            task = self._watchers.pop(old, None)
            if task is not None:
                task.cancel()
        self._follow(key, meta.index,
                     lambda index: self._watch_service(key, name, connect, index))

    def _follow(
        self, key: str, index: int, watch: Callable[[int], Coroutine[Any, Any, None]]
    ) -> None:
        if self._closed or key in self._watchers:
            return
        task = asyncio.ensure_future(watch(index))
        self._watchers[key] = task
        task.add_done_callback(lambda t: self._watchers.pop(key, None)
                               if self._watchers.get(key) is t else None)

    def _blocking(self, index: int) -> QueryOptions:
        return replace(self._opts, min_query_index=index)

    async def _retry_pause(self, what: str, exc: Exception) -> None:
        log.warning("dns: watch failed, retrying: what=%s error=%s", what, exc)
        await asyncio.sleep(RETRY_DELAY)

    async def _watch_nodes(self, index: int) -> None:
        while True:
            try:
                meta, nodes = await self._catalog.nodes(None, self._blocking(index))
            except ProconsulError as exc:
                await self._retry_pause("nodes", exc)
                continue
            if meta.index == index:
                continue
            index = meta.index
            fresh = {n.node.lower(): n for n in nodes}
            old = self._nodes or {}
            changed = {dep_node(k) for k in fresh.keys() | old.keys()
                       if fresh.get(k) != old.get(k)}
            self._nodes = fresh
            if changed:
                self._changed(changed | {DEP_NODES})

    async def _watch_names(self, index: int) -> None:
        while True:
            try:
                meta, services = await self._catalog.services(None, self._blocking(index))
            except ProconsulError as exc:
                await self._retry_pause("services", exc)
                continue
            if meta.index == index:
                continue
            index = meta.index
            fresh = _names_of(services)
            old = self._names or {}
            changed = {dep_name(k) for k in fresh.keys() | old.keys()
                       if fresh.get(k) != old.get(k)}
            self._names = fresh
            if changed:
                self._changed(changed)

    async def _watch_service(self, key: str, name: str, connect: bool, index: int) -> None:
        while True:
            try:
                meta, entries = await self._health.service_nodes(
                    name, [], None, False, self._blocking(index), connect=connect)
            except ProconsulError as exc:
                await self._retry_pause(key, exc)
                continue
            if meta.index == index:
                continue
            index = meta.index
            if key not in self._services:
                return  # evicted meanwhile
            if entries != self._services[key]:
                self._services[key] = entries
                self._changed({key})

    def _changed(self, deps: set[str]) -> None:
        self.version += 1
        version = self.version
        changed_at = self._changed_at
        for dep in deps:
            changed_at[dep] = version
        self._on_change(deps)

    def changed_since(self, version: int, deps: frozenset[str]) -> bool:
        """Whether any of `deps` changed after `version` (so data read before may be old)."""
        if self.version == version:
            return False
        changed_at = self._changed_at
        return any(changed_at.get(dep, 0) > version for dep in deps)

    def reset(self, opts: QueryOptions | None = None) -> None:
        """Forget everything (on a reload, possibly with new read options): the next reads
        load afresh."""
        if opts is not None:
            self._opts = opts
        self._stop_watchers()
        self._nodes = None
        self._names = None
        self._services.clear()
        self._changed_at.clear()
        self.version += 1

    def _stop_watchers(self) -> None:
        for task in self._watchers.values():
            task.cancel()
        self._watchers.clear()

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._watchers.values())
        self._stop_watchers()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass


def _names_of(services: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    names: dict[str, list[str]] = {}
    for name in services:
        names.setdefault(name.lower(), []).append(name)
    return {k: tuple(sorted(v)) for k, v in names.items()}
