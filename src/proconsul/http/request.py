"""The request and response values that pass between the HTTP protocol and the handlers.

The protocol (protocol.py) turns bytes into a `Request` and a `Response` into bytes; handlers
never see sockets. `HTTPApp` is the seam: the router implements it, and tests or benches can
put any other app behind the same protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

__all__ = ["HTTPApp", "Handler", "Request", "Response"]


class Request:
    """One parsed HTTP request.

    `path` is percent-decoded (what routing matches), `raw_path` is as sent. `query` maps each
    decoded parameter name to its values in order; a parameter given without `=` maps to `[""]`
    (Consul treats presence as true for `?recurse`, `?pretty`, ...). Header names are lower-case;
    repeated headers are joined with ", ".
    """

    __slots__ = ("body", "headers", "method", "path", "query", "raw_path", "remote", "version")

    def __init__(
        self,
        method: str,
        path: str,
        raw_path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes = b"",
        remote: tuple[str, int] | None = None,
        version: str = "1.1",
    ) -> None:
        self.method = method
        self.path = path
        self.raw_path = raw_path
        self.query = query
        self.headers = headers
        self.body = body
        self.remote = remote
        self.version = version

    def arg(self, name: str) -> str | None:
        """The first value of query parameter `name`, or None when absent."""
        values = self.query.get(name)
        return values[0] if values else None

    def has(self, name: str) -> bool:
        return name in self.query

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.raw_path}>"


class Response:
    """A response: status, extra headers, and either a body or an async stream of chunks.

    The protocol adds Content-Length (or chunked framing for `stream`), Date, and gzip
    encoding when the client asked for it. `headers` must not include Content-Length.
    """

    __slots__ = ("body", "headers", "status", "stream")

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
        stream: AsyncIterator[bytes] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else []
        self.stream = stream

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)}B>"


Handler = Callable[[Request], Awaitable[Response]]


class HTTPApp(Protocol):
    """What the protocol calls: a handler plus the body limit of each route."""

    def body_limit(self, method: str, path: str) -> int:
        """Largest request body accepted for this route, in bytes."""
        ...

    def too_large(self, method: str, path: str, size: int, limit: int) -> Response:
        """The answer to a body over `limit` (Consul answers 413 with a route-specific text).

        `size` is the declared Content-Length, or -1 for a body sent without one (chunked),
        which is refused as soon as it passes the limit.
        """
        ...

    async def handle(self, request: Request) -> Response:
        """Answer one request. Errors raised here become a 500 with the error text."""
        ...
