"""/v1/snapshot (Consul's agent/snapshot_endpoint.go): GET streams an archive of the state,
PUT restores one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proconsul.http.app import APIApp
from proconsul.http.params import check_enterprise_meta, parse_query, parse_token
from proconsul.http.request import Request, Response

if TYPE_CHECKING:
    from proconsul.http.backend import SnapshotBackend


class SnapshotHandlers:
    def __init__(self, app: APIApp, snapshots: SnapshotBackend) -> None:
        self.app = app
        self.snapshots = snapshots
        app.add("/v1/snapshot", ("GET", "PUT"), self.endpoint)

    async def endpoint(self, req: Request) -> Response:
        if req.method == "GET":
            parse_query(req)
            index, archive = await self.snapshots.save()
            return Response(200, archive, [
                ("Content-Type", "application/x-gzip"),
                ("X-Consul-Index", str(max(index, 1))),
            ])
        parse_token(req)
        check_enterprise_meta(req)
        await self.snapshots.restore(req.body)
        return Response(200, b"", [])
