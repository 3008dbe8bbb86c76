"""/v1/agent: self, members, join, leave, force-leave, reload and metrics (Consul's
agent/agent_endpoint.go)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proconsul.errors import GossipError, HTTPError
from proconsul.filter import compile_filter
from proconsul.http.app import APIApp, text_response
from proconsul.http.params import check_enterprise_meta, parse_token
from proconsul.http.request import Request, Response

if TYPE_CHECKING:
    from proconsul.http.backend import AgentBackend

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def wants_prometheus(req: Request) -> bool:
    if req.arg("format") == "prometheus":
        return True
    accept = req.headers.get("accept", "")
    return "application/openmetrics-text" in accept or "text/plain; version=0.0.4" in accept


class AgentHandlers:
    def __init__(self, app: APIApp, agent: AgentBackend) -> None:
        self.app = app
        self.agent = agent
        app.add("/v1/agent/self", ("GET",), self.self_)
        app.add("/v1/agent/members", ("GET",), self.members)
        app.add("/v1/agent/leave", ("PUT",), self.leave)
        app.add("/v1/agent/join/", ("PUT",), self.join)
        app.add("/v1/agent/force-leave/", ("PUT",), self.force_leave)
        app.add("/v1/agent/reload", ("PUT",), self.reload)
        app.add("/v1/agent/metrics", ("GET",), self.metrics)

    async def self_(self, req: Request) -> Response:
        parse_token(req)
        return self.app.json(req, self.agent.self_info())

    async def members(self, req: Request) -> Response:
        check_enterprise_meta(req)
        wan = _flag(req, "wan")
        segment = req.arg("segment") or ""
        members = self.agent.members(wan, segment)
        expr = req.arg("filter")
        if expr:
            members = compile_filter(expr).select(members)
        return self.app.json(req, members)

    async def leave(self, req: Request) -> Response:
        await self.agent.leave()
        return Response(200, b"", [])

    async def join(self, req: Request) -> Response:
        """Join the LAN (or with ?wan the WAN) pool through `address`; a failure is a 500
        whose body is the join error, as Consul's AgentJoin."""
        address = req.path[len("/v1/agent/join/"):]
        if not address:
            return text_response(400, "Missing address")
        try:
            await self.agent.join(address, _flag(req, "wan"))
        except GossipError as err:
            return text_response(500, str(err))
        return Response(200, b"", [])

    async def force_leave(self, req: Request) -> Response:
        node = req.path[len("/v1/agent/force-leave/"):]
        if not node:
            return text_response(400, "Missing node name")
        try:
            await self.agent.force_leave(node, _flag(req, "prune"), _flag(req, "wan"))
        except GossipError as err:
            return text_response(500, str(err))
        return Response(200, b"", [])

    async def reload(self, req: Request) -> Response:
        try:
            await self.agent.reload()
        except HTTPError:
            raise
        except Exception as err:
            return text_response(500, str(err))
        return Response(200, b"", [])

    async def metrics(self, req: Request) -> Response:
        if wants_prometheus(req):
            text = self.agent.prometheus_metrics()
            if text is None:
                # Consul sets the reason but writes no body, so clients see an empty 200.
                return Response(200, b"", [
                    ("Content-Type", "application/json; charset=utf-8"),
                    ("X-Consul-Reason",
                     "Prometheus is not enabled since its retention time is not positive"),
                ])
            return Response(200, text.encode(), [("Content-Type", PROMETHEUS_TYPE)])
        return self.app.json(req, self.agent.metrics())


def _flag(req: Request, name: str) -> bool:
    """A presence flag (`?wan`, `?prune`): set unless given as 0/false."""
    return req.has(name) and (req.arg(name) or "true").lower() not in ("0", "false")
