"""/v1/agent: self, members, leave, reload and metrics (Consul's agent/agent_endpoint.go)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proconsul.errors import HTTPError
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
        app.add("/v1/agent/reload", ("PUT",), self.reload)
        app.add("/v1/agent/metrics", ("GET",), self.metrics)

    async def self_(self, req: Request) -> Response:
        parse_token(req)
        return self.app.json(req, self.agent.self_info())

    async def members(self, req: Request) -> Response:
        check_enterprise_meta(req)
        wan = req.has("wan") and (req.arg("wan") or "true").lower() not in ("0", "false")
        members = self.agent.members(wan)
        expr = req.arg("filter")
        if expr:
            members = compile_filter(expr).select(members)
        return self.app.json(req, members)

    async def leave(self, req: Request) -> Response:
        await self.agent.leave()
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
