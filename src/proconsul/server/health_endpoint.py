"""Health reads on the server (Consul's agent/consul/health_endpoint.go): checks by node,
service and state, and service entries with the `passing` filter applied server-side so a
blocking query's answer is already the filtered one. Checks by service or state and service
entries can be sorted by `near` (the node's estimated round trip time), as in Consul; checks
of one node cannot."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proconsul.server.rtt import sort_by_distance
from proconsul.structs.catalog import HEALTH_PASSING

if TYPE_CHECKING:
    from proconsul.server.server import Server
    from proconsul.state.catalog import HealthEntry, MetaFilter
    from proconsul.state.store import Store
    from proconsul.state.watch import WatchSet
    from proconsul.structs.catalog import HealthCheck
    from proconsul.structs.query import QueryMeta, QueryOptions


def _check_node(check: HealthCheck) -> str:
    return check.node


def _entry_node(entry: HealthEntry) -> str:
    return entry[0].node


def store_service(store: Store, ws: WatchSet | None, name: str, tags: list[str],
                  node_meta: MetaFilter) -> tuple[int, list[HealthEntry]]:
    return store.health_service_nodes(ws, name, tags, node_meta)


def store_connect(store: Store, ws: WatchSet | None, name: str, tags: list[str],
                  node_meta: MetaFilter) -> tuple[int, list[HealthEntry]]:
    return store.connect_service_nodes(ws, name, tags, node_meta)


class HealthEndpoint:
    def __init__(self, server: Server) -> None:
        self._srv = server

    async def _read(self, opts: QueryOptions, run: Any) -> QueryMeta:
        meta = await self._srv.read(opts, run)
        meta.consistency_level = self._srv.consistency_of(opts)
        return meta

    async def node_checks(
        self, node: str, opts: QueryOptions
    ) -> tuple[QueryMeta, list[HealthCheck]]:
        found: list[list[HealthCheck]] = [[]]

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, found[0] = store.node_checks(ws, node)
            return index, False

        return await self._read(opts, query), found[0]

    async def service_checks(
        self, name: str, node_meta: MetaFilter, opts: QueryOptions, near: str = "",
        source_ip: str = "",
    ) -> tuple[QueryMeta, list[HealthCheck]]:
        found: list[list[HealthCheck]] = [[]]

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, checks = store.service_checks(ws, name, node_meta)
            sort_by_distance(store, near, checks, _check_node, source_ip)
            found[0] = checks
            return index, False

        return await self._read(opts, query), found[0]

    async def checks_in_state(
        self, state: str, node_meta: MetaFilter, opts: QueryOptions, near: str = "",
        source_ip: str = "",
    ) -> tuple[QueryMeta, list[HealthCheck]]:
        found: list[list[HealthCheck]] = [[]]

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, checks = store.checks_in_state(ws, state, node_meta)
            sort_by_distance(store, near, checks, _check_node, source_ip)
            found[0] = checks
            return index, False

        return await self._read(opts, query), found[0]

    async def service_nodes(
        self, name: str, tags: list[str], node_meta: MetaFilter, passing: bool,
        opts: QueryOptions, connect: bool = False, near: str = "", source_ip: str = "",
    ) -> tuple[QueryMeta, list[HealthEntry]]:
        """Instances of `name` with their health; with `connect`, its mesh-capable endpoints
        (proxies for it and its Connect-native instances) instead."""
        found: list[list[HealthEntry]] = [[]]
        lookup = store_connect if connect else store_service

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, entries = lookup(store, ws, name, tags, node_meta)
            if passing:
                entries = [
                    e for e in entries if all(c.status == HEALTH_PASSING for c in e[2])
                ]
            sort_by_distance(store, near, entries, _entry_node, source_ip)
            found[0] = entries
            return index, False

        return await self._read(opts, query), found[0]
