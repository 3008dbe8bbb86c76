"""/v1/status/leader and /v1/status/peers."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from proconsul.http.app import APIApp
from proconsul.http.params import check_enterprise_meta
from proconsul.http.request import Request, Response

if TYPE_CHECKING:
    from proconsul.http.backend import StatusBackend


T = TypeVar("T")


class StatusHandlers:
    def __init__(self, app: APIApp, status: StatusBackend) -> None:
        self.app = app
        self.status = status
        app.add("/v1/status/leader", ("GET",), self.leader)
        app.add("/v1/status/peers", ("GET",), self.peers)

    async def leader(self, req: Request) -> Response:
        check_enterprise_meta(req)
        return self.app.json(req, await _value(self.status.leader()))

    async def peers(self, req: Request) -> Response:
        check_enterprise_meta(req)
        return self.app.json(req, await _value(self.status.peers()))


async def _value(answer: T | Awaitable[T]) -> T:
    """A server answers from its own Raft at once; a client agent asks a server."""
    if inspect.isawaitable(answer):
        return await answer
    return answer
