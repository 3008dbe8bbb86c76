"""/v1/status and /v1/operator/raft/configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proconsul.http.app import APIApp
from proconsul.http.params import check_enterprise_meta, parse_query
from proconsul.http.request import Request, Response

if TYPE_CHECKING:
    from proconsul.http.backend import StatusBackend


class StatusHandlers:
    def __init__(self, app: APIApp, status: StatusBackend) -> None:
        self.app = app
        self.status = status
        app.add("/v1/status/leader", ("GET",), self.leader)
        app.add("/v1/status/peers", ("GET",), self.peers)
        app.add("/v1/operator/raft/configuration", ("GET",), self.raft_configuration)

    async def leader(self, req: Request) -> Response:
        check_enterprise_meta(req)
        return self.app.json(req, self.status.leader())

    async def peers(self, req: Request) -> Response:
        check_enterprise_meta(req)
        return self.app.json(req, self.status.peers())

    async def raft_configuration(self, req: Request) -> Response:
        parse_query(req)
        return self.app.json(req, self.status.raft_configuration())
