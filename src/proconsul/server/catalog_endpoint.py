"""Catalog registration and reads on the server (Consul's agent/consul/catalog_endpoint.go).

Validation happens here, before anything reaches the log, with Consul's RPC error texts: the
FSM then applies a request that is known to be well formed, so a replayed log never fails on
input checks. Node lists and service instances are sorted by `near` inside the read, so a
blocking query's every answer comes sorted.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from proconsul.errors import RPCError
from proconsul.filter import compile_filter
from proconsul.server.commands import MessageType, encode
from proconsul.server.rtt import sort_by_distance
from proconsul.structs.catalog import CATALOG_SERVICE_FIELDS

if TYPE_CHECKING:
    from proconsul.server.server import Server
    from proconsul.state.catalog import MetaFilter
    from proconsul.state.store import Store
    from proconsul.state.watch import WatchSet
    from proconsul.structs.catalog import Node, NodeService
    from proconsul.structs.query import QueryMeta, QueryOptions

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: Addresses meaning "any interface" (Consul's ipaddr.IsAny), which no client can dial.
_ANY_ADDRESSES = frozenset({"0.0.0.0", "::", "[::]"})

#: Definition field -> the check type Consul derives for catalog-registered checks.
_TYPE_BY_FIELD = (
    ("ScriptArgs", "script"), ("DockerContainerID", "docker"), ("HTTP", "http"),
    ("TCP", "tcp"), ("UDP", "udp"), ("GRPC", "grpc"), ("H2PING", "h2ping"),
    ("OSService", "os_service"), ("TTL", "ttl"), ("AliasService", "alias"),
    ("AliasNode", "alias"),
)


def _uuid_error(node_id: str) -> str | None:
    """The text of go-uuid's ParseUUID failure, or None when `node_id` parses."""
    if len(node_id) != 36:
        return "uuid string is wrong length"
    if not _UUID.fullmatch(node_id):
        return "uuid is improperly formatted"
    return None


def check_type(definition: dict[str, Any]) -> str:
    for name, kind in _TYPE_BY_FIELD:
        if definition.get(name):
            return kind
    return ""


def prepare_register(body: dict[str, Any], datacenter: str) -> dict[str, Any]:
    """Validate a RegisterRequest and fill in Consul's defaults (service ID, check IDs and
    nodes, check types); raises RPCError with Consul's text."""
    node = body.get("Node") or ""
    if not node:
        raise RPCError("Must provide node")
    if not body.get("Address") and not body.get("SkipNodeUpdate"):
        raise RPCError("Must provide address if SkipNodeUpdate is not set")
    if body.get("ID"):
        err = _uuid_error(body["ID"])
        if err is not None:
            raise RPCError(f"Bad node ID: {err}")
    out = {**body, "Datacenter": body.get("Datacenter") or datacenter}
    svc = body.get("Service")
    if svc:
        svc = dict(svc)
        if not svc.get("ID") and svc.get("Service"):
            svc["ID"] = svc["Service"]
        if svc.get("ID") and not svc.get("Service"):
            raise RPCError("Must provide service name with ID")
        if (svc.get("Address") or "") in _ANY_ADDRESSES:
            raise RPCError("Invalid service address")
        out["Service"] = svc
    else:
        out.pop("Service", None)
    checks = [dict(c) for c in body.get("Checks") or ()]
    if body.get("Check"):
        checks.append(dict(body["Check"]))
    for c in checks:
        c["Node"] = c.get("Node") or node
        if not c.get("CheckID"):
            c["CheckID"] = c.get("Name") or ""
        if not c.get("Type"):
            c["Type"] = check_type(c.get("Definition") or {})
    out.pop("Check", None)
    out["Checks"] = checks
    return out


def _node_name(node: Node) -> str:
    return node.node


def _pair_node(pair: tuple[Node, NodeService]) -> str:
    return pair[0].node


class CatalogEndpoint:
    def __init__(self, server: Server) -> None:
        self._srv = server

    # -- writes -------------------------------------------------------------------------------

    async def register(self, body: dict[str, Any]) -> None:
        req = prepare_register(body, self._srv.datacenter)
        await self._srv.apply(encode(MessageType.REGISTER, req))

    async def deregister(self, body: dict[str, Any]) -> None:
        if not body.get("Node"):
            raise RPCError("Must provide node")
        req = {
            "Node": body["Node"], "Datacenter": body.get("Datacenter") or self._srv.datacenter,
            "ServiceID": body.get("ServiceID") or "", "CheckID": body.get("CheckID") or "",
        }
        await self._srv.apply(encode(MessageType.DEREGISTER, req))

    # -- reads --------------------------------------------------------------------------------

    def datacenters(self) -> list[str]:
        return [self._srv.datacenter]

    async def _read(self, opts: QueryOptions, run: Any) -> QueryMeta:
        meta = await self._srv.read(opts, run)
        meta.consistency_level = self._srv.consistency_of(opts)
        return meta

    async def nodes(
        self, node_meta: MetaFilter, opts: QueryOptions, near: str = "", source_ip: str = "",
    ) -> tuple[QueryMeta, list[Node]]:
        """Nodes by name, or nearest first to the node `near` names (`_ip`: the node at
        `source_ip`)."""
        found: list[list[Node]] = [[]]

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, nodes = store.catalog_nodes(ws, node_meta)
            sort_by_distance(store, near, nodes, _node_name, source_ip)
            found[0] = nodes
            return index, False

        return await self._read(opts, query), found[0]

    async def services(
        self, node_meta: MetaFilter, opts: QueryOptions
    ) -> tuple[QueryMeta, dict[str, list[str]]]:
        found: list[dict[str, list[str]]] = [{}]
        keep = None
        if opts.filter:
            flt = compile_filter(opts.filter, CATALOG_SERVICE_FIELDS)

            def keep(node: Node, svc: NodeService) -> bool:
                return flt.matches(svc.to_catalog_api(node))

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, found[0] = store.catalog_services(ws, node_meta, keep)
            return index, False

        return await self._read(opts, query), found[0]

    async def service_nodes(
        self, name: str, tags: list[str], node_meta: MetaFilter, opts: QueryOptions,
        near: str = "", source_ip: str = "",
    ) -> tuple[QueryMeta, list[tuple[Node, NodeService]]]:
        found: list[list[tuple[Node, NodeService]]] = [[]]

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, pairs = store.service_nodes(ws, name, tags, node_meta)
            sort_by_distance(store, near, pairs, _pair_node, source_ip)
            found[0] = pairs
            return index, False

        return await self._read(opts, query), found[0]

    async def node_services(
        self, node: str, opts: QueryOptions
    ) -> tuple[QueryMeta, Node | None, list[NodeService]]:
        found: list[Any] = [None, []]

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, found[0], found[1] = store.node_services(ws, node)
            return index, False

        meta = await self._read(opts, query)
        return meta, found[0], found[1]
