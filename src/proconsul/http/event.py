"""/v1/event/fire/:name and /v1/event/list (Consul's agent/event_endpoint.go).

Both answer from the agent itself: fire broadcasts into the LAN pool, list reads the agent's
ring of recent events. The list is a blocking query of its own kind: `index` and `wait` are
parsed as everywhere else, but the answer carries only `X-Consul-Index` (derived from the newest
event's ID, so it is not monotonic) and none of the leader headers.
"""

from __future__ import annotations

from typing import Any, Protocol

from proconsul.errors import BadRequest
from proconsul.http.app import APIApp
from proconsul.http.params import parse_wait
from proconsul.http.request import Request, Response
from proconsul.structs.query import QueryOptions

FIRE_PREFIX = "/v1/event/fire/"


class EventBackend(Protocol):
    """What the event routes need from the agent (agent.user_events.UserEvents)."""

    def fire(self, name: str, payload: bytes = b"", node_filter: str = "",
             service_filter: str = "", tag_filter: str = "", dc: str = "") -> dict[str, Any]:
        """Broadcast an event; the event object. Raises an HTTPError (500) with Consul's
        message when it is refused."""
        ...

    async def list(self, name: str = "", index: int = 0,
                   wait: float = 0.0) -> tuple[int, list[dict[str, Any]]]:
        """The index and the recent events, blocking while the index equals `index`."""
        ...


def request_payload(req: Request) -> bytes:
    """The body, read only when Content-Length announces one (Consul checks
    `req.ContentLength > 0`, so a chunked body is not a payload)."""
    length = req.headers.get("content-length", "")
    try:
        announced = int(length)
    except ValueError:
        return b""
    return req.body if announced > 0 else b""


class EventHandlers:
    def __init__(self, app: APIApp, events: EventBackend) -> None:
        self.app = app
        self.events = events
        app.add(FIRE_PREFIX, ("PUT",), self.fire)
        app.add("/v1/event/list", ("GET",), self.list)

    async def fire(self, req: Request) -> Response:
        dc = req.arg("dc") or ""
        name = req.path[len(FIRE_PREFIX):] if req.path.startswith(FIRE_PREFIX) else ""
        if not name:
            raise BadRequest("Missing name")
        event = self.events.fire(
            name, request_payload(req), req.arg("node") or "", req.arg("service") or "",
            req.arg("tag") or "", dc,
        )
        return self.app.json(req, event)

    async def list(self, req: Request) -> Response:
        opts = QueryOptions()
        parse_wait(req, opts)
        index, events = await self.events.list(
            req.arg("name") or "", opts.min_query_index, opts.max_query_time)
        return self.app.json(req, events, headers=[("X-Consul-Index", str(max(index, 1)))])
