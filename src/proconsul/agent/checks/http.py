"""HTTP checks over a minimal asyncio HTTP/1.1 client.

The agent must not depend on a full HTTP client library just to probe health endpoints, and
thousands of checks need a client whose cost is one short-lived connection per probe. Like
Consul's checker this client disables keep-alive, sends `User-Agent: Consul Health Check` and
`Accept: text/plain, text/*, */*` unless overridden, follows up to 10 redirects unless told
not to, and keeps only the last OutputMaxSize bytes of the body for the Output.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from .monitor import IntervalCheck
from .output import TailBuffer
from .tcp import close_writer, go_dial_error, tls_client_context

DEFAULT_TIMEOUT = 10.0
USER_AGENT = "Consul Health Check"
DEFAULT_ACCEPT = "text/plain, text/*, */*"
#: Go's http.Client default redirect limit
MAX_REDIRECTS = 10
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
#: a header block larger than this is not a health endpoint talking
_MAX_HEADER_BYTES = 1 << 20


class HTTPProbeError(Exception):
    """A request that produced no usable response; the text is Consul's (Go's) wording.
    `url` names the request that failed when it is not the check's own (after redirects)."""

    def __init__(self, message: str, url: str = "") -> None:
        super().__init__(message)
        self.url = url


@dataclass(slots=True)
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: TailBuffer | None = None

    def header(self, name: str) -> str:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return ""

    @property
    def status_text(self) -> str:
        """Go's resp.Status: the code and the server's own reason phrase."""
        return f"{self.status} {self.reason}".rstrip() if self.reason else str(self.status)


def _go_method(method: str) -> str:
    return method[:1].upper() + method[1:].lower()


def build_request(method: str, target: str, host: str,
                  headers: Mapping[str, Sequence[str]], body: bytes) -> bytes:
    """Serialise one request, filling Consul's default headers only where the user set none."""
    lines = [f"{method} {target} HTTP/1.1"]
    given = {name.lower() for name in headers}
    host_values = [v for k, vs in headers.items() if k.lower() == "host" for v in vs]
    lines.append(f"Host: {host_values[0] if host_values else host}")
    for name, values in headers.items():
        if name.lower() in ("host", "content-length", "connection"):
            continue
        lines.extend(f"{name}: {value}" for value in values)
    if "user-agent" not in given:
        lines.append(f"User-Agent: {USER_AGENT}")
    if "accept" not in given:
        lines.append(f"Accept: {DEFAULT_ACCEPT}")
    if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def read_response(reader: asyncio.StreamReader, method: str,
                        max_body: int) -> Response:
    """Parse a response head and drain the body into a bounded tail buffer."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise HTTPProbeError("EOF" if not exc.partial else "unexpected EOF") from None
    except asyncio.LimitOverrunError:
        raise HTTPProbeError("net/http: server response headers exceeded limit") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HTTPProbeError(f"malformed HTTP response {lines[0]!r}")
    resp = Response(int(parts[1]), parts[2] if len(parts) > 2 else "")
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        resp.headers.append((name.strip(), value.strip()))
    resp.body = TailBuffer(max_body)
    if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
        return resp
    if "chunked" in resp.header("Transfer-Encoding").lower():
        await _read_chunked(reader, resp.body)
    elif resp.header("Content-Length"):
        remaining = int(resp.header("Content-Length"))
        while remaining > 0:
            chunk = await reader.read(min(remaining, 65536))
            if not chunk:
                raise HTTPProbeError("unexpected EOF")
            resp.body.write(chunk)
            remaining -= len(chunk)
    else:
        while chunk := await reader.read(65536):
            resp.body.write(chunk)
    return resp


async def _read_chunked(reader: asyncio.StreamReader, sink: TailBuffer) -> None:
    while True:
        size_line = await reader.readline()
        if not size_line:
            raise HTTPProbeError("unexpected EOF")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return
        sink.write(await reader.readexactly(size))
        await reader.readexactly(2)


@dataclass(slots=True)
class HTTPRequestSpec:
    """Everything one check sends; reused across probes."""

    url: str
    method: str = "GET"
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""
    tls_server_name: str = ""
    tls_skip_verify: bool = False
    disable_redirects: bool = False
    max_body: int = 4096


async def _exchange_once(spec: HTTPRequestSpec, url: str, method: str,
                         body: bytes, ctx: ssl.SSLContext | None) -> Response:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise HTTPProbeError(f'unsupported protocol scheme "{parts.scheme}"')
    host = parts.hostname or ""
    if not host:
        raise HTTPProbeError("no Host in request URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    use_ssl: ssl.SSLContext | None = None
    server_name: str | None = None
    if parts.scheme == "https":
        use_ssl = ctx or tls_client_context(spec.tls_skip_verify)
        server_name = spec.tls_server_name or host
    try:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=use_ssl, server_hostname=server_name, limit=_MAX_HEADER_BYTES)
    except (OSError, ssl.SSLError) as exc:
        raise HTTPProbeError(go_dial_error("tcp", addr, exc), url) from None
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        default_host = parts.netloc.rpartition("@")[2]
        writer.write(build_request(method, target, default_host, spec.headers, body))
        await writer.drain()
        return await read_response(reader, method, spec.max_body)
    except ConnectionError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise HTTPProbeError(f"read tcp {addr}: {reason.lower()}", url) from None
    except ssl.SSLError as exc:
        raise HTTPProbeError(str(exc), url) from None
    except HTTPProbeError as exc:
        raise HTTPProbeError(str(exc), url) from None
    finally:
        await close_writer(writer)


async def fetch(spec: HTTPRequestSpec, ctx: ssl.SSLContext | None = None) -> Response:
    """Perform the request with Go's redirect rules: 301/302/303 turn a non-GET/HEAD into a
    body-less GET, 307/308 repeat the method and body, and a 10th redirect is an error."""
    url, method, body = spec.url, spec.method or "GET", spec.body
    requests = 0
    while True:
        resp = await _exchange_once(spec, url, method, body, ctx)
        requests += 1
        location = resp.header("Location")
        if spec.disable_redirects or resp.status not in _REDIRECTS or not location:
            return resp
        url = urljoin(url, location)
        # Go refuses the request that would follow MAX_REDIRECTS earlier ones
        if requests >= MAX_REDIRECTS:
            raise HTTPProbeError(f"stopped after {MAX_REDIRECTS} redirects", url)
        if resp.status in (301, 302, 303) and method not in ("GET", "HEAD"):
            method, body = "GET", b""


class HTTPCheck(IntervalCheck):
    """2xx passing, 429 warning, anything else (or no response) critical."""

    default_timeout = DEFAULT_TIMEOUT

    _tls: ssl.SSLContext | None = None

    def _context(self) -> ssl.SSLContext | None:
        """Built once per https check (plain http needs none unless redirected to https):
        loading the CA bundle costs milliseconds, more than probing a local endpoint."""
        if self._tls is None and self.defn.http.lower().startswith("https:"):
            self._tls = tls_client_context(self.defn.tls_skip_verify)
        return self._tls

    def _spec(self) -> HTTPRequestSpec:
        d = self.defn
        return HTTPRequestSpec(
            url=d.http, method=(d.method or "GET").upper(), headers=d.header,
            body=d.body.encode(), tls_server_name=d.tls_server_name,
            tls_skip_verify=d.tls_skip_verify, disable_redirects=d.disable_redirects,
            max_body=d.output_max_size)

    async def probe(self) -> tuple[str, str]:
        spec = self._spec()
        op = _go_method(spec.method)
        prefix = f'{op} "{spec.url}"'
        try:
            async with asyncio.timeout(self.timeout):
                resp = await fetch(spec, self._context())
        except TimeoutError:
            return "critical", (f"{prefix}: context deadline exceeded "
                                "(Client.Timeout exceeded while awaiting headers)")
        except HTTPProbeError as exc:
            return "critical", f'{op} "{exc.url or spec.url}": {exc}'
        except (OSError, ValueError) as exc:
            return "critical", f"{prefix}: {exc}"
        body = resp.body.text() if resp.body is not None else ""
        output = f"HTTP {spec.method} {spec.url}: {resp.status_text} Output: {body}"
        if 200 <= resp.status <= 299:
            return "passing", output
        if resp.status == 429:
            return "warning", output
        return "critical", output
