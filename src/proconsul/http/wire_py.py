"""Pure-Python twin of the per-request HTTP/1.1 path: request heads in, response bytes out.

Every request crosses this module twice, so it is a hot path with a compiled twin
(`proconsul._speedups.http_wire`) of identical names and signatures; `wire.py` picks one. It is
sans-IO: `RequestReader` is the callback target of an httptools parser and turns bytes into
`Request` values, and the `encode_*` functions turn a response into the bytes to write. The
asyncio side (sockets, timeouts, ordering) lives in protocol.py.

Semantics follow Go's net/http where Consul's behaviour depends on them: Go's status texts, a
query string split like url.ParseQuery (`+` is a space, a parameter without `=` has the value
""), header values with CR/LF replaced by spaces and invalid header names dropped.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from urllib.parse import unquote_to_bytes

import httptools

from proconsul.errors import ConnectionLimit, HTTPParseError, ProconsulError
from proconsul.http.request import Request

__all__ = [
    "BODY",
    "CONTINUE",
    "HEAD",
    "IDLE",
    "LAST_CHUNK",
    "RequestReader",
    "encode_chunk",
    "encode_response",
    "encode_stream_head",
    "http_date",
    "parse_query",
    "split_target",
    "status_text",
]

#: Reader states, read by the protocol's timeout sweep: between messages, inside a request head,
#: inside a request body.
IDLE = 0
HEAD = 1
BODY = 2

#: The interim answer to `Expect: 100-continue`.
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: The zero-length chunk that ends a chunked body (no trailers).
LAST_CHUNK = b"0\r\n\r\n"

# Go's net/http StatusText table; clients and health checks print these texts.
_STATUS_TEXTS: dict[int, str] = {
    100: "Continue",
    101: "Switching Protocols",
    102: "Processing",
    103: "Early Hints",
    200: "OK",
    201: "Created",
    202: "Accepted",
    203: "Non-Authoritative Information",
    204: "No Content",
    205: "Reset Content",
    206: "Partial Content",
    207: "Multi-Status",
    208: "Already Reported",
    226: "IM Used",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    305: "Use Proxy",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    414: "Request URI Too Long",
    415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable",
    417: "Expectation Failed",
    418: "I'm a teapot",
    421: "Misdirected Request",
    422: "Unprocessable Entity",
    423: "Locked",
    424: "Failed Dependency",
    425: "Too Early",
    426: "Upgrade Required",
    428: "Precondition Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    451: "Unavailable For Legal Reasons",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates",
    507: "Insufficient Storage",
    508: "Loop Detected",
    510: "Not Extended",
    511: "Network Authentication Required",
}

# RFC 9110 token characters: a response header name with anything else is dropped, as Go does.
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_NEWLINES_TO_SPACE = str.maketrans("\r\n", "  ")
# Caches bounded so that hostile input cannot grow them without limit.
_CACHE_MAX = 512
_valid_names: set[str] = set()
_status_lines: dict[int, bytes] = {}
_header_names: dict[bytes, str] = {}
_methods: dict[bytes, str] = {}
_date_second = -1
_date_value = b""


def status_text(status: int) -> str:
    """The reason phrase Go sends; Go's fallback for codes it does not know."""
    text = _STATUS_TEXTS.get(status)
    return text if text is not None else f"status code {status}"


def http_date() -> bytes:
    """The current IMF-fixdate, formatted at most once per second since every response needs it."""
    global _date_second, _date_value
    now = int(time.time())
    if now != _date_second:
        _date_value = formatdate(now, usegmt=True).encode("ascii")
        _date_second = now
    return _date_value


def _decode_component(raw: bytes, plus: bool) -> str:
    """Percent-decode (and in query strings turn `+` into a space) like urllib.parse."""
    if plus and b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return raw.decode("utf-8", "replace")


def parse_query(query: bytes) -> dict[str, list[str]]:
    """Split a query string into decoded names mapped to their values in order.

    Consul reads flags by presence (`?recurse`), so a parameter without `=` keeps an empty value
    instead of being dropped; empty pieces between `&` are skipped as url.ParseQuery does.
    """
    result: dict[str, list[str]] = {}
    if b"%" not in query and b"+" not in query:
        # Nothing to unescape (the usual case): split the decoded text directly.
        for piece in query.decode("utf-8", "replace").split("&"):
            if piece:
                name, _, value = piece.partition("=")
                values = result.get(name)
                if values is None:
                    result[name] = [value]
                else:
                    values.append(value)
        return result
    for part in query.split(b"&"):
        if not part:
            continue
        raw_name, _, raw_value = part.partition(b"=")
        name = _decode_component(raw_name, True)
        value = _decode_component(raw_value, True) if raw_value else ""
        values = result.get(name)
        if values is None:
            result[name] = [value]
        else:
            values.append(value)
    return result


def split_target(target: bytes) -> tuple[str, str, dict[str, list[str]]]:
    """Split a request target into (decoded path, path as sent, query).

    Absolute-form targets (`http://host/path`, sent through proxies) keep only their path, and a
    fragment, which clients should not send, is dropped.
    """
    if target[:1] != b"/":
        scheme_end = target.find(b"://")
        if scheme_end > 0:
            slash = target.find(b"/", scheme_end + 3)
            query_start = target.find(b"?", scheme_end + 3)
            if slash < 0 or 0 <= query_start < slash:
                target = b"/" + target[query_start:] if query_start >= 0 else b"/"
            else:
                target = target[slash:]
    raw, sep, query_bytes = target.partition(b"?")
    if sep:
        query_bytes = query_bytes.partition(b"#")[0]
    else:
        raw = raw.partition(b"#")[0]
    raw_path = raw.decode("utf-8", "replace")
    path = unquote_to_bytes(raw).decode("utf-8", "replace") if b"%" in raw else raw_path
    query = parse_query(query_bytes) if query_bytes else {}
    return path, raw_path, query


def _status_line(status: int, http10: bool) -> bytes:
    if http10:
        return f"HTTP/1.0 {status} {status_text(status)}\r\n".encode("latin-1")
    line = _status_lines.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} {status_text(status)}\r\n".encode("latin-1")
        if len(_status_lines) < _CACHE_MAX:
            _status_lines[status] = line
    return line


def _valid_name(name: str) -> bool:
    if name in _valid_names:
        return True
    if not name or not _TOKEN_CHARS.issuperset(name):
        return False
    if len(_valid_names) < _CACHE_MAX:
        _valid_names.add(name)
    return True


def _header_block(headers: list[tuple[str, str]]) -> bytes:
    parts = []
    for name, value in headers:
        if not _valid_name(name):
            continue
        if "\r" in value or "\n" in value:
            value = value.translate(_NEWLINES_TO_SPACE)
        parts.append(f"{name}: {value}\r\n")
    return "".join(parts).encode("utf-8")


def _connection_line(keep_alive: bool, http10: bool) -> bytes:
    if not keep_alive:
        return b"Connection: close\r\n"
    return b"Connection: keep-alive\r\n" if http10 else b""


def encode_response(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    keep_alive: bool,
    head: bool = False,
    http10: bool = False,
) -> bytes:
    """The bytes of a complete response: status line, headers, framing, Date, then the body.

    `head` leaves the body out but keeps its Content-Length (the answer to HEAD, or a head
    written before a large body that the caller sends on its own). 1xx, 204 and 304 answers
    carry neither a length nor a body, as in Go. `http10` answers in HTTP/1.0, where keep-alive
    must be said.
    """
    if 100 <= status < 200 or status == 204 or status == 304:
        length = b""
        body = b""
    else:
        length = b"Content-Length: %d\r\n" % len(body)
    return b"".join(
        (
            _status_line(status, http10),
            _header_block(headers),
            length,
            b"Date: ",
            http_date(),
            b"\r\n",
            _connection_line(keep_alive, http10),
            b"\r\n",
            b"" if head else body,
        )
    )


def encode_stream_head(
    status: int, headers: list[tuple[str, str]], keep_alive: bool, http10: bool = False
) -> bytes:
    """The head of a response whose body follows as chunks of unknown total length.

    HTTP/1.0 has no chunked coding: its body is delimited by closing the connection, so the
    caller must pass keep_alive=False and write the chunks unframed.
    """
    framing = b"" if http10 else b"Transfer-Encoding: chunked\r\n"
    return b"".join(
        (
            _status_line(status, http10),
            _header_block(headers),
            framing,
            b"Date: ",
            http_date(),
            b"\r\n",
            _connection_line(keep_alive, http10),
            b"\r\n",
        )
    )


_LINE_INDENT = re.compile(rb"(?m)^( +)")


def _twice(m: re.Match[bytes]) -> bytes:
    return m.group(1) * 2


def widen_indent(data: bytes) -> bytes:
    """Double the indentation at the start of every line.

    JSON bodies are encoded with a two-space indent and Consul's pretty form uses four; a JSON
    string cannot hold a raw newline, so every run of spaces after one is indentation.
    """
    return _LINE_INDENT.sub(_twice, data)


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body; empty data gives no bytes, since a zero chunk ends the body."""
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


def _header_name(raw: bytes) -> str:
    name = _header_names.get(raw)
    if name is None:
        name = raw.decode("latin-1").lower()
        if len(_header_names) < _CACHE_MAX:
            _header_names[raw] = name
    return name


def _method_name(raw: bytes) -> str:
    method = _methods.get(raw)
    if method is None:
        method = raw.decode("ascii")
        _methods[raw] = method
    return method


class RequestReader:
    """The httptools callback target of one connection: it queues each complete request.

    Each finished message is appended to `queue` as `(request, keep_alive)`; the protocol drains
    the queue after every `feed`. Limits are checked here, where the sizes are known, and surface
    from `feed` as `ConnectionLimit` (status 413, 417 or 431) or `HTTPParseError` (400); after
    either, or after a message that ends the connection, the reader ignores further bytes.

    :param queue: receives `(Request, keep_alive)` tuples in arrival order.
    :param remote: the peer address put on every request.
    :param body_limit: `(method, path) -> bytes allowed`, asked only for requests with a body.
    :param max_head: the most bytes a request head may take.
    """

    __slots__ = (
        "_body",
        "_body_limit",
        "_body_size",
        "_done",
        "_head_bytes",
        "_head_size",
        "_headers",
        "_limit",
        "_max_head",
        "_method",
        "_parser",
        "_path",
        "_query",
        "_queue",
        "_raw_path",
        "_remote",
        "_url",
        "_version",
        "expect_continue",
        "messages",
        "rejected",
        "state",
    )

    def __init__(
        self,
        queue: deque[tuple[Request, bool]],
        remote: tuple[str, int] | None,
        body_limit: Callable[[str, str], int],
        max_head: int,
    ) -> None:
        self._queue = queue
        self._remote = remote
        self._body_limit = body_limit
        self._max_head = max_head
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._url: bytes | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] | None = None
        self._body_size = 0
        self._limit = -1
        self._head_bytes = 0
        self._head_size = 0
        self._done = False
        self._method = ""
        self._path = ""
        self._raw_path = ""
        self._query: dict[str, list[str]] = {}
        self._version = "1.1"
        #: IDLE, HEAD or BODY: where the current message stands.
        self.state = IDLE
        #: Messages begun so far; with `state`, tells the timeout sweep whether bytes progress.
        self.messages = 0
        #: Set when the request being read waits for `100 Continue`; the protocol clears it.
        self.expect_continue = False
        #: (method, path, size, limit) of a body refused as too large, for HTTPApp.too_large.
        self.rejected: tuple[str, str, int, int] | None = None

    def feed(self, data: bytes) -> None:
        """Parse bytes from the socket; complete requests land in the queue."""
        parser = self._parser
        if self._done or parser is None:
            return
        if self.state != BODY:
            self._head_bytes += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Protocol switches are not offered: answer what was asked, then close.
            self._done = True
            if self._queue:
                self._queue.append((self._queue.pop()[0], False))
            return
        except httptools.HttpParserError as exc:
            if self._done:
                return  # bytes after a message that ends the connection are ignored
            self._done = True
            cause = exc.__context__
            if isinstance(cause, ProconsulError):
                raise cause from None
            raise HTTPParseError(str(exc) or "malformed request") from None
        if self.state != BODY and self._head_bytes > self._max_head:
            self._done = True
            raise ConnectionLimit("request header too large", 431)

    def close(self) -> None:
        """Drop the parser, which refers back to this reader, once the connection is gone."""
        self._parser = None
        self._done = True

    def on_url(self, url: bytes) -> None:
        if self._url is None:
            self._url = url
            self._head_size = len(url)
            self.state = HEAD
            self.messages += 1
        else:
            self._url += url
            self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.state != HEAD:
            return  # trailers of a chunked body are not kept
        self._head_size += len(name) + len(value) + 4
        key = _header_name(name)
        text = value.decode("utf-8", "replace")
        headers = self._headers
        previous = headers.get(key)
        headers[key] = text if previous is None else previous + ", " + text

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        self._head_bytes = 0
        if self._head_size > self._max_head:
            raise ConnectionLimit("request header too large", 431)
        method = self._method = _method_name(parser.get_method())
        version = self._version = parser.get_http_version()
        self._path, self._raw_path, self._query = split_target(self._url or b"/")
        headers = self._headers
        if version == "1.1" and "host" not in headers:
            raise HTTPParseError("missing required Host header")
        self.state = BODY
        self._limit = -1
        length = headers.get("content-length")
        chunked = "transfer-encoding" in headers
        if not chunked and (length is None or length == "0"):
            return
        limit = self._limit = self._body_limit(method, self._path)
        if not chunked and length is not None:
            size = int(length)
            if size > limit:
                self.rejected = (method, self._path, size, limit)
                raise ConnectionLimit("request body too large", 413)
        expect = headers.get("expect")
        if expect is not None and version == "1.1":
            if expect.lower() != "100-continue":
                raise ConnectionLimit("unsupported Expect header", 417)
            self.expect_continue = True

    def on_body(self, body: bytes) -> None:
        size = self._body_size = self._body_size + len(body)
        if 0 <= self._limit < size:
            # only a body without Content-Length gets here: its full size is unknown (-1)
            self.rejected = (self._method, self._path, -1, self._limit)
            raise ConnectionLimit("request body too large", 413)
        if self._body is None:
            self._body = [body]
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        keep_alive: bool = parser.should_keep_alive()
        parts = self._body
        request = Request(
            self._method,
            self._path,
            self._raw_path,
            self._query,
            self._headers,
            b"".join(parts) if parts is not None else b"",
            self._remote,
            self._version,
        )
        self._queue.append((request, keep_alive))
        self._url = None
        self._headers = {}
        self._body = None
        self._body_size = 0
        self.state = IDLE
        self.expect_continue = False
        if not keep_alive:
            self._done = True
