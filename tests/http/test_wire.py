"""Both twins of the per-request HTTP path, and a differential test holding them equal."""

from __future__ import annotations

import importlib
import re
from collections import deque
from email.utils import parsedate_to_datetime
from types import ModuleType
from urllib.parse import parse_qs, unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proconsul._compat import NO_EXTENSIONS
from proconsul.errors import ConnectionLimit, HTTPParseError
from proconsul.http.request import Request
from tests.conftest import load_twin, twin_params

COMPILED = "proconsul._speedups.http_wire"
PURE = "proconsul.http.wire_py"


@pytest.fixture(params=twin_params(COMPILED, PURE))
def wire(request: pytest.FixtureRequest) -> ModuleType:
    return load_twin(request, request.param)


class Reader:
    """A RequestReader of one twin with its queue and a record of body_limit calls."""

    def __init__(self, wire: ModuleType, limit: int = 1024, max_head: int = 4096) -> None:
        self.queue: deque[tuple[Request, bool]] = deque()
        self.limit_calls: list[tuple[str, str]] = []
        self.limit = limit
        self.reader = wire.RequestReader(self.queue, ("10.0.0.1", 4321), self._limit, max_head)

    def _limit(self, method: str, path: str) -> int:
        self.limit_calls.append((method, path))
        return self.limit

    def feed(self, *chunks: bytes) -> list[tuple[Request, bool]]:
        for chunk in chunks:
            self.reader.feed(chunk)
        out = list(self.queue)
        self.queue.clear()
        return out


GET = (
    b"GET /v1/kv/some/key?index=12&wait=5s HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8500\r\n"
    b"User-Agent: Go-http-client/1.1\r\n"
    b"X-Consul-Token: abc\r\n"
    b"Accept-Encoding: gzip\r\n"
    b"X-Many: 1\r\n"
    b"x-many: 2\r\n\r\n"
)


# ------------------------------------------------------------------ request reading


def test_reads_a_request_head(wire: ModuleType) -> None:
    r = Reader(wire)
    [(req, keep_alive)] = r.feed(GET)
    assert keep_alive is True
    assert req.method == "GET"
    assert req.path == "/v1/kv/some/key"
    assert req.raw_path == "/v1/kv/some/key"
    assert req.query == {"index": ["12"], "wait": ["5s"]}
    assert req.headers == {
        "host": "127.0.0.1:8500",
        "user-agent": "Go-http-client/1.1",
        "x-consul-token": "abc",
        "accept-encoding": "gzip",
        "x-many": "1, 2",
    }
    assert req.body == b""
    assert req.remote == ("10.0.0.1", 4321)
    assert req.version == "1.1"
    assert r.limit_calls == []  # no body, no limit lookup
    assert r.reader.state == wire.IDLE
    assert r.reader.messages == 1


def test_byte_by_byte_equals_whole(wire: ModuleType) -> None:
    whole = Reader(wire).feed(GET)
    pieces = Reader(wire).feed(*(GET[i : i + 1] for i in range(len(GET))))
    assert [(q.path, q.query, q.headers) for q, _ in whole] == [
        (q.path, q.query, q.headers) for q, _ in pieces
    ]


def test_pipelined_requests_queue_in_order(wire: ModuleType) -> None:
    r = Reader(wire)
    data = (
        b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(3))
        + b"GET /3 HTTP/1.1\r\nHo"
    )
    out = r.feed(data)
    assert [q.path for q, _ in out] == ["/0", "/1", "/2"]
    assert r.reader.state == wire.HEAD
    assert [q.path for q, _ in r.feed(b"st: h\r\n\r\n")] == ["/3"]


def test_percent_and_plus_decoding(wire: ModuleType) -> None:
    r = Reader(wire)
    [(req, _)] = r.feed(
        b"GET /v1/kv/a%2Fb+c%zz?recurse&key=a+b%20c&key=%E2%9C%93&=v&&e= HTTP/1.1\r\n"
        b"Host: h\r\n\r\n"
    )
    assert req.path == "/v1/kv/a/b+c%zz"
    assert req.raw_path == "/v1/kv/a%2Fb+c%zz"
    assert req.query == {"recurse": [""], "key": ["a b c", "✓"], "": ["v"], "e": [""]}


def test_absolute_form_and_fragment(wire: ModuleType) -> None:
    assert wire.split_target(b"http://example.com:8500/v1/agent/self?x=1") == (
        "/v1/agent/self",
        "/v1/agent/self",
        {"x": ["1"]},
    )
    assert wire.split_target(b"http://example.com?x=1") == ("/", "/", {"x": ["1"]})
    assert wire.split_target(b"http://example.com") == ("/", "/", {})
    assert wire.split_target(b"/a#frag") == ("/a", "/a", {})
    assert wire.split_target(b"/a?b=1#frag") == ("/a", "/a", {"b": ["1"]})
    assert wire.split_target(b"*") == ("*", "*", {})


def test_chunked_body_is_joined(wire: ModuleType) -> None:
    r = Reader(wire)
    [(req, _)] = r.feed(
        b"PUT /v1/kv/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"3\r\nabc\r\n",
        b"4\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    assert req.body == b"abcdefg"
    assert "x-trailer" not in req.headers
    assert r.limit_calls == [("PUT", "/v1/kv/k")]


def test_content_length_body(wire: ModuleType) -> None:
    r = Reader(wire)
    [(req, _)] = r.feed(b"PUT /k HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhel", b"lo")
    assert req.body == b"hello"


def test_content_length_over_limit_is_refused_before_the_body(wire: ModuleType) -> None:
    r = Reader(wire, limit=10)
    with pytest.raises(ConnectionLimit) as info:
        r.feed(b"PUT /v1/kv/k HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n")
    assert info.value.status == 413
    assert r.reader.rejected == ("PUT", "/v1/kv/k", 11, 10)
    assert r.feed(b"01234567890") == []  # the reader is finished


def test_chunked_body_over_limit_is_refused(wire: ModuleType) -> None:
    r = Reader(wire, limit=10)
    r.feed(b"PUT /k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n")
    with pytest.raises(ConnectionLimit) as info:
        r.feed(b"6\r\nghijkl\r\n")
    assert info.value.status == 413
    assert r.reader.rejected == ("PUT", "/k", -1, 10)  # no declared size


def test_oversized_head(wire: ModuleType) -> None:
    r = Reader(wire, max_head=200)
    with pytest.raises(ConnectionLimit) as info:
        r.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 300)
    assert info.value.status == 431


def test_oversized_head_complete_in_one_piece(wire: ModuleType) -> None:
    r = Reader(wire, max_head=200)
    with pytest.raises(ConnectionLimit) as info:
        r.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 300 + b"\r\n\r\nGET / HTTP/1.1\r\n")
    assert info.value.status == 431
    assert r.queue == deque()


def test_oversized_head_arriving_in_pieces(wire: ModuleType) -> None:
    r = Reader(wire, max_head=200)
    r.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ")
    with pytest.raises(ConnectionLimit):
        for _ in range(30):
            r.feed(b"a" * 10)


def test_many_pipelined_small_heads_are_not_one_big_head(wire: ModuleType) -> None:
    r = Reader(wire, max_head=200)
    out = r.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" * 50)
    assert len(out) == 50


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost h\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 requires Host, as Go enforces
        b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
    ],
)
def test_malformed_requests(wire: ModuleType, data: bytes) -> None:
    r = Reader(wire)
    with pytest.raises(HTTPParseError):
        r.feed(data)


def test_http10_without_host_and_keep_alive(wire: ModuleType) -> None:
    [(req, keep_alive)] = Reader(wire).feed(b"GET / HTTP/1.0\r\n\r\n")
    assert req.version == "1.0" and keep_alive is False
    [(_, keep_alive)] = Reader(wire).feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert keep_alive is True


def test_connection_close_ends_reading(wire: ModuleType) -> None:
    r = Reader(wire)
    out = r.feed(
        b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    assert [(q.path, k) for q, k in out] == [("/a", False)]
    assert r.feed(b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n") == []


def test_upgrade_is_answered_then_closed(wire: ModuleType) -> None:
    r = Reader(wire)
    out = r.feed(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
    assert [(q.path, k) for q, k in out] == [("/", False)]


def test_expect_continue(wire: ModuleType) -> None:
    r = Reader(wire)
    r.feed(b"PUT /k HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n")
    assert r.reader.expect_continue is True
    assert r.reader.state == wire.BODY
    [(req, _)] = r.feed(b"abc")
    assert req.body == b"abc"
    assert r.reader.expect_continue is False


def test_unknown_expectation(wire: ModuleType) -> None:
    r = Reader(wire)
    with pytest.raises(ConnectionLimit) as info:
        r.feed(b"PUT /k HTTP/1.1\r\nHost: h\r\nExpect: fancy\r\nContent-Length: 3\r\n\r\n")
    assert info.value.status == 417


def test_non_utf8_bytes_are_replaced(wire: ModuleType) -> None:
    [(req, _)] = Reader(wire).feed(b"GET /a%FF HTTP/1.1\r\nHost: h\r\nX-V: caf\xc3\xa9\r\n\r\n")
    assert req.path == "/a\ufffd"
    assert req.headers["x-v"] == "café"


# ------------------------------------------------------------------ response encoding

DATE = re.compile(rb"Date: ([^\r]+)\r\n")


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (200, "OK"),
        (400, "Bad Request"),
        (404, "Not Found"),
        (405, "Method Not Allowed"),
        (409, "Conflict"),
        (413, "Request Entity Too Large"),
        (429, "Too Many Requests"),
        (431, "Request Header Fields Too Large"),
        (500, "Internal Server Error"),
        (503, "Service Unavailable"),
        (599, "status code 599"),
    ],
)
def test_status_texts(wire: ModuleType, status: int, text: str) -> None:
    assert wire.status_text(status) == text
    assert wire.encode_response(status, [], b"", True).startswith(
        f"HTTP/1.1 {status} {text}\r\n".encode()
    )


def test_encode_response(wire: ModuleType) -> None:
    out = wire.encode_response(200, [("Content-Type", "application/json")], b'{"a":1}', True)
    date = DATE.search(out)
    assert date is not None
    parsedate_to_datetime(date.group(1).decode())
    assert DATE.sub(b"Date: D\r\n", out) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n"
        b"Date: D\r\n\r\n"
        b'{"a":1}'
    )


def test_encode_response_closing_and_http10(wire: ModuleType) -> None:
    out = DATE.sub(b"", wire.encode_response(404, [], b"", False))
    assert out == b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    out = DATE.sub(b"", wire.encode_response(200, [], b"x", True, http10=True))
    assert out == b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\nx"


def test_encode_response_head_and_no_content(wire: ModuleType) -> None:
    out = DATE.sub(b"", wire.encode_response(200, [], b"hello", True, head=True))
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    out = DATE.sub(b"", wire.encode_response(204, [], b"ignored", True))
    assert out == b"HTTP/1.1 204 No Content\r\n\r\n"
    out = DATE.sub(b"", wire.encode_response(304, [("ETag", "x")], b"ignored", True))
    assert out == b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n"


def test_header_injection_is_neutralised(wire: ModuleType) -> None:
    headers = [("X-A", "one\r\nSet-Cookie: x"), ("Bad Name", "v"), ("", "v"), ("X-É", "v")]
    out = DATE.sub(b"", wire.encode_response(200, headers, b"", True))
    assert out == b"HTTP/1.1 200 OK\r\nX-A: one  Set-Cookie: x\r\nContent-Length: 0\r\n\r\n"


def test_large_and_non_ascii_values(wire: ModuleType) -> None:
    big = "v" * 10000
    out = wire.encode_response(200, [("X-Big", big), ("X-U", "✓")], b"b" * 100000, True)
    assert b"X-Big: " + big.encode() + b"\r\n" in out
    assert "X-U: ✓\r\n".encode() in out
    assert out.endswith(b"\r\n\r\n" + b"b" * 100000)


def test_stream_framing(wire: ModuleType) -> None:
    head = DATE.sub(b"", wire.encode_stream_head(200, [("X-A", "1")], True))
    assert head == b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    head10 = DATE.sub(b"", wire.encode_stream_head(200, [], False, http10=True))
    assert head10 == b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n"
    assert wire.encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert wire.encode_chunk(b"x" * 300) == b"12c\r\n" + b"x" * 300 + b"\r\n"
    assert wire.encode_chunk(b"") == b""
    assert wire.LAST_CHUNK == b"0\r\n\r\n"
    assert wire.CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_http_date_is_cached_per_second(wire: ModuleType) -> None:
    first = wire.http_date()
    assert wire.http_date() in (first, wire.http_date())
    assert first.endswith(b" GMT")


# ------------------------------------------------------------------ differential

needs_compiled = pytest.mark.skipif(NO_EXTENSIONS, reason="compiled twins disabled")

URL_CHARS = st.sampled_from([*"abcXYZ019/-._~%+=&?#;:@!$'()*, ", "%2F", "%41", "%e2%9c%93"])
TARGETS = st.lists(URL_CHARS, max_size=40).map(lambda parts: ("/" + "".join(parts)).encode())
RAW_TARGETS = st.binary(max_size=60).map(lambda b: b"/" + b)
NAMES = st.one_of(
    st.sampled_from(["Content-Type", "X-Consul-Index", "Vary", "bad name", "", "X-\u00e9"]),
    st.text(max_size=12),
)
VALUES = st.text(max_size=30)
HEADERS = st.lists(st.tuples(NAMES, VALUES), max_size=6)


def _twins() -> tuple[ModuleType, ModuleType]:
    return importlib.import_module(COMPILED), importlib.import_module(PURE)


@needs_compiled
@pytest.mark.c_extension
@settings(max_examples=300, deadline=None)
@given(target=st.one_of(TARGETS, RAW_TARGETS))
def test_split_target_matches(target: bytes) -> None:
    c, py = _twins()
    assert c.split_target(target) == py.split_target(target)
    query = target.partition(b"?")[2]
    assert c.parse_query(query) == py.parse_query(query)


@settings(max_examples=200, deadline=None)
@given(target=TARGETS)
def test_pure_matches_urllib(target: bytes) -> None:
    import proconsul.http.wire_py as py

    path, raw_path, query = py.split_target(target)
    text = target.decode()
    expected_raw, _, expected_query = text.partition("?")
    if "#" in (expected_query if "?" in text else expected_raw):
        return  # fragments are cut, urllib's helpers leave them
    assert raw_path == expected_raw
    assert path == unquote(expected_raw)
    assert query == parse_qs(expected_query, keep_blank_values=True)


@needs_compiled
@pytest.mark.c_extension
@settings(max_examples=300, deadline=None)
@given(
    status=st.integers(100, 999),
    headers=HEADERS,
    body=st.binary(max_size=200),
    keep_alive=st.booleans(),
    head=st.booleans(),
    http10=st.booleans(),
)
def test_encode_response_matches(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    keep_alive: bool,
    head: bool,
    http10: bool,
) -> None:
    c, py = _twins()
    got = c.encode_response(status, headers, body, keep_alive, head, http10)
    want = py.encode_response(status, headers, body, keep_alive, head, http10)
    assert DATE.sub(b"", got) == DATE.sub(b"", want)
    got = c.encode_stream_head(status, headers, keep_alive, http10)
    want = py.encode_stream_head(status, headers, keep_alive, http10)
    assert DATE.sub(b"", got) == DATE.sub(b"", want)
    assert c.encode_chunk(body) == py.encode_chunk(body)


HEADER_NAME = st.text(alphabet="abcXYZ-_0", min_size=1, max_size=10)
HEADER_VALUE = st.binary(max_size=20).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"").strip(b" \t")
)


@needs_compiled
@pytest.mark.c_extension
@settings(max_examples=200, deadline=None)
@given(
    target=TARGETS,
    headers=st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), max_size=8),
    body=st.binary(max_size=50),
    split=st.integers(1, 50),
)
def test_reader_matches(
    target: bytes, headers: list[tuple[str, bytes]], body: bytes, split: int
) -> None:
    target = target.replace(b" ", b"%20").replace(b"#", b"%23")
    data = b"POST " + target + b" HTTP/1.1\r\nHost: h\r\n"
    for name, value in headers:
        data += name.encode() + b": " + value + b"\r\n"
    data += b"Content-Length: %d\r\n\r\n" % len(body) + body
    results = []
    for module in _twins():
        r = Reader(module, limit=1 << 20)
        try:
            out = r.feed(*(data[i : i + split] for i in range(0, len(data), split)))
            results.append(
                [(q.method, q.path, q.raw_path, q.query, q.headers, q.body, k) for q, k in out]
            )
        except (HTTPParseError, ConnectionLimit) as exc:
            results.append([type(exc).__name__])
    assert results[0] == results[1]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=20,
)


@needs_compiled
@pytest.mark.c_extension
@given(value=JSON_VALUES, noise=st.binary(max_size=64))
def test_widen_indent_matches(value: object, noise: bytes) -> None:
    import orjson

    c, py = _twins()
    data = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    widened = c.widen_indent(data)
    assert widened == py.widen_indent(data)
    assert orjson.loads(widened) == value
    assert c.widen_indent(noise) == py.widen_indent(noise)
