"""/v1/catalog (Consul's agent/catalog_endpoint.go), and the query helpers /v1/health shares
with it: node-meta pairs, path segments, `?near=` and `?filter=` over the answer's JSON
objects."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from proconsul.errors import BadRequest
from proconsul.filter import Filter, compile_filter
from proconsul.http.app import APIApp
from proconsul.http.catalog_body import deregister_request, register_request
from proconsul.http.params import check_enterprise_meta, parse_query, parse_token
from proconsul.http.request import Request, Response
from proconsul.structs.catalog import (
    CATALOG_SERVICE_FIELDS,
    CHECK_FIELDS,
    ENTRY_FIELDS,
    NODE_FIELDS,
    SERVICE_FIELDS,
)

if TYPE_CHECKING:
    from proconsul.http.backend import CatalogBackend
    from proconsul.state.catalog import MetaFilter
    from proconsul.structs.query import QueryOptions


def request_filter(opts: QueryOptions, fields: tuple[str, ...]) -> Filter | None:
    """The compiled `?filter=`, made before the read so a bad one fails without blocking."""
    return compile_filter(opts.filter, fields) if opts.filter else None


def apply_filter(flt: Filter | None, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return flt.select(items) if flt is not None else items


def node_meta_filter(req: Request) -> MetaFilter:
    """Repeated `?node-meta=key:value` pairs (a pair without a colon means an empty value)."""
    pairs = req.query.get("node-meta")
    if not pairs:
        return None
    out: dict[str, str] = {}
    for pair in pairs:
        key, _, value = pair.partition(":")
        out[key] = value
    return out


def source_addr(req: Request) -> str:
    """The request's source IP (Consul's sourceAddrFromRequest): the first X-Forwarded-For
    entry when it is an IP, else the peer's address; "" when neither is one."""
    forwarded = req.headers.get("x-forwarded-for", "")
    for candidate in (forwarded.split(",")[0].strip(), req.remote[0] if req.remote else ""):
        try:
            ip = ipaddress.ip_address(candidate)
        except ValueError:
            continue
        if ip.version == 6 and ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ip)
    return ""


def near_source(req: Request, agent_node: str) -> tuple[str, str]:
    """`?near=` as the server takes it: the node to sort from (`_agent` becomes the node of
    the agent answering) and, for `_ip`, the request's source address."""
    near = req.arg("near") or ""
    if near == "_agent":
        return agent_node, ""
    if near == "_ip":
        return near, source_addr(req)
    return near, ""


def path_arg(req: Request, prefix: str, missing: str) -> str:
    value = req.path[len(prefix):]
    if not value:
        raise BadRequest(missing)
    return value


class CatalogHandlers:
    def __init__(self, app: APIApp, catalog: CatalogBackend, node_name: str = "") -> None:
        self.app = app
        self.catalog = catalog
        #: this agent's node, which `?near=_agent` sorts from
        self.node_name = node_name
        app.add("/v1/catalog/register", ("PUT",), self.register)
        app.add("/v1/catalog/deregister", ("PUT",), self.deregister)
        app.add("/v1/catalog/datacenters", ("GET",), self.datacenters)
        app.add("/v1/catalog/nodes", ("GET",), self.nodes)
        app.add("/v1/catalog/services", ("GET",), self.services)
        app.add("/v1/catalog/service/", ("GET",), self.service)
        app.add("/v1/catalog/node/", ("GET",), self.node)
        app.add("/v1/catalog/node-services/", ("GET",), self.node_services)

    async def register(self, req: Request) -> Response:
        parse_token(req)
        check_enterprise_meta(req)
        await self.catalog.register(register_request(req.body))
        return self.app.json(req, True)

    async def deregister(self, req: Request) -> Response:
        parse_token(req)
        check_enterprise_meta(req)
        await self.catalog.deregister(deregister_request(req.body))
        return self.app.json(req, True)

    async def datacenters(self, req: Request) -> Response:
        return self.app.json(req, self.catalog.datacenters())

    async def nodes(self, req: Request) -> Response:
        opts = parse_query(req, self.app.discovery_max_stale)
        flt = request_filter(opts, NODE_FIELDS)
        near, source_ip = near_source(req, self.node_name)
        meta, nodes = await self.catalog.nodes(
            node_meta_filter(req), opts, near=near, source_ip=source_ip)
        return self.app.json(req, apply_filter(flt, [n.to_api() for n in nodes]), meta)

    async def services(self, req: Request) -> Response:
        opts = parse_query(req, self.app.discovery_max_stale)
        # the server filters instances before the roll-up; compiling here fails a bad
        # expression before any read
        request_filter(opts, CATALOG_SERVICE_FIELDS)
        meta, services = await self.catalog.services(node_meta_filter(req), opts)
        return self.app.json(req, services, meta)

    async def service(self, req: Request) -> Response:
        opts = parse_query(req, self.app.discovery_max_stale)
        name = path_arg(req, "/v1/catalog/service/", "Missing service name")
        flt = request_filter(opts, CATALOG_SERVICE_FIELDS)
        near, source_ip = near_source(req, self.node_name)
        meta, pairs = await self.catalog.service_nodes(
            name, req.query.get("tag", []), node_meta_filter(req), opts, near=near,
            source_ip=source_ip,
        )
        body = [svc.to_catalog_api(node) for node, svc in pairs]
        return self.app.json(req, apply_filter(flt, body), meta)

    async def node(self, req: Request) -> Response:
        opts = parse_query(req, self.app.discovery_max_stale)
        name = path_arg(req, "/v1/catalog/node/", "Missing node name")
        flt = request_filter(opts, SERVICE_FIELDS)
        meta, node, services = await self.catalog.node_services(name, opts)
        if node is None:
            return self.app.json(req, None, meta)
        by_id = {s.id: s.to_api() for s in services}
        if flt is not None:
            by_id = flt.select_map(by_id)
        body = {"Node": node.to_api(), "Services": by_id}
        return self.app.json(req, body, meta)

    async def node_services(self, req: Request) -> Response:
        opts = parse_query(req, self.app.discovery_max_stale)
        name = path_arg(req, "/v1/catalog/node-services/", "Missing node name")
        flt = request_filter(opts, SERVICE_FIELDS)
        meta, node, services = await self.catalog.node_services(name, opts)
        body = {
            "Node": node.to_api() if node is not None else None,
            "Services": apply_filter(flt, [s.to_api() for s in services]),
        }
        return self.app.json(req, body, meta)


__all__ = [
    "CATALOG_SERVICE_FIELDS", "CHECK_FIELDS", "ENTRY_FIELDS", "NODE_FIELDS", "SERVICE_FIELDS",
    "CatalogHandlers", "apply_filter", "near_source", "node_meta_filter", "path_arg",
    "request_filter", "source_addr",
]
