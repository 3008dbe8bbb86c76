"""The API application: routing, method checks, error mapping and the headers every answer
carries (Consul's agent/http.go `wrap` and ServeMux behaviour).

Routes are exact paths or prefixes ending in "/", as Consul registers them on Go's ServeMux;
the longest matching prefix wins. A path that is not in clean form (`//`, `/./`, `/../`) is
redirected to its clean form with 301, which is what ServeMux does before Consul sees it.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote_plus

from proconsul.errors import HTTPError, MethodNotAllowed
from proconsul.http import encode
from proconsul.http.request import Request, Response
from proconsul.structs.query import QueryMeta

log = logging.getLogger("proconsul.http")

RouteHandler = Callable[[Request], Awaitable[Response]]

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
KV_SIZE_DOC = "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"
TXN_SIZE_DOC = "https://developer.hashicorp.com/docs/agent/config/config-files#txn_max_req_len"
#: Bodies of routes without a limit of their own (snapshot restore is the largest user).
DEFAULT_BODY_LIMIT = 1 << 30

#: Routes answered by servers of a datacenter; another `?dc=` needs a WAN path.
DC_ROUTED = ("/v1/kv/", "/v1/session/", "/v1/txn", "/v1/status/", "/v1/operator/raft/",
             "/v1/operator/autopilot/", "/v1/catalog/", "/v1/health/", "/v1/coordinate/node",
             "/v1/coordinate/update", "/v1/query")
#: ... except these, which list every datacenter whatever `?dc=` says (Consul ignores it)
DC_GLOBAL = ("/v1/catalog/datacenters",)

INDEX_TEXT = (
    "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent "
    "configuration and restart."
)


class Route:
    __slots__ = ("allow", "handler", "methods")

    def __init__(self, methods: tuple[str, ...], handler: RouteHandler) -> None:
        self.methods = frozenset(methods)
        self.allow = "OPTIONS," + ",".join(methods)
        self.handler = handler


def clean_path(path: str) -> str:
    """Go's path.Clean, keeping a trailing slash as ServeMux's cleanPath does."""
    if not path:
        return "/"
    if path[0] != "/":
        path = "/" + path
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


def go_query_encode(query: dict[str, list[str]]) -> str:
    """Go's url.Values.Encode: keys sorted, each part query-escaped, joined with '&'."""
    return "&".join(
        f"{quote_plus(k, safe='-_.~')}={quote_plus(v, safe='-_.~')}"
        for k in sorted(query) for v in query[k]
    )


def text_response(status: int, body: str, headers: list[tuple[str, str]] | None = None
                  ) -> Response:
    hdrs = [("Content-Type", TEXT)]
    if headers:
        hdrs.extend(headers)
    return Response(status, body.encode(), hdrs)


def meta_headers(meta: QueryMeta) -> list[tuple[str, str]]:
    """X-Consul-Index (never 0), KnownLeader, LastContact and Effective-Consistency, spelled as
    Go's canonical header keys."""
    headers = [
        ("X-Consul-Index", str(meta.index if meta.index > 0 else 1)),
        ("X-Consul-Knownleader", "true" if meta.known_leader else "false"),
        ("X-Consul-Lastcontact", str(meta.last_contact_ms)),
        ("X-Consul-Query-Backend", "blocking-query"),
    ]
    if meta.consistency_level:
        headers.append(("X-Consul-Effective-Consistency", meta.consistency_level))
    return headers


class APIApp:
    """Implements `HTTPApp` for the /v1 API."""

    def __init__(
        self,
        pretty: bool = False,
        kv_max_value_size: int = 512 * 1024,
        txn_max_req_len: int = 512 * 1024,
        response_headers: dict[str, str] | None = None,
        block_endpoints: list[str] | None = None,
        discovery_max_stale: float = 0.0,
        datacenter: str = "dc1",
    ) -> None:
        self.pretty = pretty
        self.datacenter = datacenter
        self.kv_max_value_size = kv_max_value_size
        self.txn_max_req_len = txn_max_req_len
        self.discovery_max_stale = discovery_max_stale
        self.block_endpoints = list(block_endpoints or [])
        self._extra = [("X-Consul-Default-Acl-Policy", "allow")]
        for name, value in (response_headers or {}).items():
            self._extra.append((name, value))
        self._exact: dict[str, Route] = {}
        self._prefixes: list[tuple[str, Route]] = []

    # -- registration -------------------------------------------------------------------------

    def add(self, path: str, methods: tuple[str, ...], handler: RouteHandler) -> None:
        route = Route(methods, handler)
        if path.endswith("/"):
            self._prefixes.append((path, route))
            self._prefixes.sort(key=lambda p: len(p[0]), reverse=True)
        else:
            self._exact[path] = route

    def match(self, path: str) -> Route | None:
        route = self._exact.get(path)
        if route is not None:
            return route
        for prefix, route in self._prefixes:
            if path.startswith(prefix):
                return route
        return None

    # -- responses ----------------------------------------------------------------------------

    def json(
        self, req: Request, obj: Any, meta: QueryMeta | None = None, status: int = 200,
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        asked = req.has("pretty")
        hdrs = [("Content-Type", JSON)]
        if meta is not None:
            hdrs.extend(meta_headers(meta))
        if headers:
            hdrs.extend(headers)
        return Response(status, encode.dumps(obj, self.pretty or asked, asked), hdrs)

    # -- HTTPApp ------------------------------------------------------------------------------

    def body_limit(self, method: str, path: str) -> int:
        if path.startswith("/v1/kv/"):
            return self.kv_max_value_size
        if path == "/v1/txn":
            return max(self.txn_max_req_len, self.kv_max_value_size)
        return DEFAULT_BODY_LIMIT

    def too_large(self, method: str, path: str, size: int, limit: int) -> Response:
        doc = TXN_SIZE_DOC if path == "/v1/txn" else KV_SIZE_DOC
        if size >= 0:
            text = f"Request body({size} bytes) too large, max size: {limit} bytes. See {doc}."
        elif path == "/v1/txn":
            text = f"Request body too large, max size: {limit} bytes. See {doc}."
        else:
            text = f"Request body too large. Max allowed is {limit} bytes."
        return self._finish(text_response(413, text))

    async def handle(self, req: Request) -> Response:
        return self._finish(await self._dispatch(req))

    def _finish(self, resp: Response) -> Response:
        resp.headers.extend(self._extra)
        return resp

    async def _dispatch(self, req: Request) -> Response:
        path = req.path
        if not path.isprintable():
            return Response(400, b"", [("Content-Type", TEXT)])
        if "//" in path or "/." in path:
            cleaned = clean_path(path)
            if cleaned != path:
                return self._redirect(req, cleaned)
        if path == "/":
            return text_response(200, INDEX_TEXT)
        route = self.match(path)
        if route is None:
            if any(prefix == path + "/" for prefix, _ in self._prefixes):
                return self._redirect(req, path + "/")
            if "/v1/" in path:
                return text_response(404, "Invalid URL path: not a recognized HTTP API endpoint\n")
            return text_response(
                404, "Invalid URL path: if attempting to use the HTTP API, ensure the path "
                "starts with '/v1/'\n",
            )
        dc = req.arg("datacenter") or req.arg("dc")
        if (dc and dc != self.datacenter and path.startswith(DC_ROUTED)
                and not path.startswith(DC_GLOBAL)):
            return text_response(500, "No path to datacenter")
        for blocked in self.block_endpoints:
            if path.startswith(blocked):
                return text_response(403, "Endpoint is blocked by agent configuration")
        method = req.method
        if method == "OPTIONS":
            return Response(200, b"", [("Allow", route.allow)])
        if method not in route.methods:
            return text_response(
                405, str(MethodNotAllowed(f"method {method} not allowed")),
                [("Allow", route.allow)],
            )
        try:
            return await route.handler(req)
        except HTTPError as err:
            return text_response(err.status, str(err))
        except Exception as err:
            log.error("Request error: method=%s url=%s error=%r", method, req.raw_path, err)
            return text_response(500, str(err))

    def _redirect(self, req: Request, target: str) -> Response:
        query = go_query_encode(req.query)
        location = target + ("?" + query if query else "")
        body = b""
        if req.method in ("GET", "HEAD"):
            body = f'<a href="{location}">Moved Permanently</a>.\n\n'.encode()
        return Response(301, body, [("Location", location),
                                    ("Content-Type", "text/html; charset=utf-8")])
