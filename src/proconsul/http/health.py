"""/v1/health (Consul's agent/health_endpoint.go): checks by node, service and state, and the
service entries discovery clients poll. Lists are always `[]`, never `null`, when empty."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proconsul.errors import BadRequest
from proconsul.http.app import APIApp
from proconsul.http.catalog import (
    CHECK_FIELDS,
    ENTRY_FIELDS,
    apply_filter,
    near_source,
    node_meta_filter,
    path_arg,
    request_filter,
)
from proconsul.http.params import parse_query
from proconsul.http.request import Request, Response

if TYPE_CHECKING:
    from proconsul.http.backend import HealthBackend

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def passing_param(req: Request) -> bool:
    """`?passing` alone means true; otherwise Go's strconv.ParseBool decides."""
    if not req.has("passing"):
        return False
    value = req.arg("passing") or ""
    if value == "" or value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest("Invalid value for ?passing")


class HealthHandlers:
    def __init__(self, app: APIApp, health: HealthBackend, node_name: str = "") -> None:
        self.app = app
        self.health = health
        #: this agent's node, which `?near=_agent` sorts from
        self.node_name = node_name
        app.add("/v1/health/node/", ("GET",), self.node)
        app.add("/v1/health/checks/", ("GET",), self.checks)
        app.add("/v1/health/service/", ("GET",), self.service)
        app.add("/v1/health/connect/", ("GET",), self.connect)
        app.add("/v1/health/state/", ("GET",), self.state)

    async def node(self, req: Request) -> Response:
        opts = parse_query(req, self.app.discovery_max_stale)
        name = path_arg(req, "/v1/health/node/", "Missing node name")
        flt = request_filter(opts, CHECK_FIELDS)
        meta, checks = await self.health.node_checks(name, opts)
        return self.app.json(req, apply_filter(flt, [c.to_api() for c in checks]), meta)

    async def checks(self, req: Request) -> Response:
        opts = parse_query(req, self.app.discovery_max_stale)
        name = path_arg(req, "/v1/health/checks/", "Missing service name")
        flt = request_filter(opts, CHECK_FIELDS)
        near, source_ip = near_source(req, self.node_name)
        meta, checks = await self.health.service_checks(
            name, node_meta_filter(req), opts, near=near, source_ip=source_ip)
        return self.app.json(req, apply_filter(flt, [c.to_api() for c in checks]), meta)

    async def state(self, req: Request) -> Response:
        opts = parse_query(req, self.app.discovery_max_stale)
        state = path_arg(req, "/v1/health/state/", "Missing check state")
        flt = request_filter(opts, CHECK_FIELDS)
        near, source_ip = near_source(req, self.node_name)
        meta, checks = await self.health.checks_in_state(
            state, node_meta_filter(req), opts, near=near, source_ip=source_ip)
        return self.app.json(req, apply_filter(flt, [c.to_api() for c in checks]), meta)

    async def service(self, req: Request) -> Response:
        return await self._entries(req, "/v1/health/service/", False)

    async def connect(self, req: Request) -> Response:
        return await self._entries(req, "/v1/health/connect/", True)

    async def _entries(self, req: Request, prefix: str, connect: bool) -> Response:
        opts = parse_query(req, self.app.discovery_max_stale)
        name = path_arg(req, prefix, "Missing service name")
        passing = passing_param(req)
        flt = request_filter(opts, ENTRY_FIELDS)
        near, source_ip = near_source(req, self.node_name)
        meta, entries = await self.health.service_nodes(
            name, req.query.get("tag", []), node_meta_filter(req), passing, opts,
            connect=connect, near=near, source_ip=source_ip,
        )
        body = [
            {"Node": node.to_api(), "Service": svc.to_api(),
             "Checks": [c.to_api() for c in checks]}
            for node, svc, checks in entries
        ]
        return self.app.json(req, apply_filter(flt, body), meta)
