"""The HTTP/1.1 server over real sockets on 127.0.0.1, with each wire twin and each event loop."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
import uvloop

from proconsul.errors import NotFound
from proconsul.http import protocol
from proconsul.http.limits import HttpLimits
from proconsul.http.protocol import HttpServer
from proconsul.http.request import Request, Response
from tests.conftest import load_twin, twin_params

TEST_TIMEOUT = 10.0


@pytest.fixture(params=twin_params("proconsul._speedups.http_wire", "proconsul.http.wire_py"))
def wire(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Put one twin behind the protocol for the duration of a test."""
    module = load_twin(request, request.param)
    for name in ("RequestReader", "encode_response", "encode_stream_head", "encode_chunk"):
        monkeypatch.setattr(protocol, name, getattr(module, name))
    return module


# Handlers started as tasks on asyncio, and eagerly (HttpLimits.eager_handlers) on uvloop.
_eager = {"asyncio-task": False, "uvloop-eager": True}
_settings: dict[str, bool] = {"eager": False}


def make_limits(**overrides: Any) -> HttpLimits:
    return HttpLimits(**{"eager_handlers": _settings["eager"], **overrides})


@pytest.fixture(params=list(_eager))
def run(request: pytest.FixtureRequest, wire: ModuleType) -> Iterator[Callable[..., Any]]:
    """Run a test coroutine to completion on the chosen loop, bounded in time."""
    _settings["eager"] = _eager[request.param]

    def runner(coro: Awaitable[Any]) -> Any:
        async def bounded() -> Any:
            return await asyncio.wait_for(coro, TEST_TIMEOUT)

        if request.param.startswith("uvloop"):
            loop = uvloop.new_event_loop()
            try:
                return loop.run_until_complete(bounded())
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
        return asyncio.run(bounded())

    yield runner
    _settings["eager"] = False


class App:
    """Routes for the tests; records what handlers saw and whether they were cancelled."""

    def __init__(self) -> None:
        self.seen: list[Request] = []
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.produced = 0
        self.limit_calls = 0

    def body_limit(self, method: str, path: str) -> int:
        self.limit_calls += 1
        return 1024 if path.startswith("/small") else 1 << 20

    def too_large(self, method: str, path: str, size: int, limit: int) -> Response:
        text = f"Request body({size} bytes) too large, max size: {limit} bytes."
        return Response(413, text.encode())

    async def handle(self, request: Request) -> Response:
        self.seen.append(request)
        path = request.path
        if path == "/slow":
            await asyncio.sleep(float(request.arg("s") or "0.2"))
        elif path == "/block":
            self.started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        elif path == "/boom":
            raise RuntimeError("boom")
        elif path == "/late-boom":
            await asyncio.sleep(0)
            raise RuntimeError("late boom")
        elif path == "/chain":
            await asyncio.sleep(0)
            assert asyncio.current_task() is not None
            async with asyncio.timeout(1):
                await asyncio.sleep(0.01)
        elif path == "/badheader":
            return Response(200, b"x", [("X-Number", 5)])  # type: ignore[list-item]
        elif path == "/wrong":
            return "not a response"  # type: ignore[return-value]
        elif path == "/missing":
            raise NotFound("no such thing")
        elif path == "/stream":
            return Response(
                200,
                headers=[("Content-Type", "text/plain")],
                stream=self._chunks(int(request.arg("n") or "3"), int(request.arg("size") or "5")),
            )
        elif path == "/empty":
            return Response(200)
        body = request.body or f"{request.method} {request.path}".encode()
        return Response(200, body, [("Content-Type", "text/plain")])

    async def _chunks(self, count: int, size: int) -> AsyncIterator[bytes]:
        for i in range(count):
            self.produced += size
            yield bytes([48 + i % 10]) * size
            await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def serving(app: App, **overrides: Any) -> AsyncIterator[tuple[HttpServer, int]]:
    server = HttpServer(app, make_limits(**overrides))
    listener = await server.listen("127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, port
    finally:
        server.close()
        await server.tracker.wait_empty(2.0)
        listener.close()
        await listener.wait_closed()


class Client:
    """A raw HTTP/1.1 client: sends bytes as given and parses answers strictly."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, rcvbuf: int | None = None) -> Client:
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        else:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def get(self, path: str, extra: str = "") -> tuple[int, dict[str, str], bytes]:
        self.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode())
        return await self.response()

    async def response(self, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        line = await self.reader.readuntil(b"\r\n")
        version, status, _ = line.decode().split(" ", 2)
        assert version in ("HTTP/1.1", "HTTP/1.0")
        headers: dict[str, str] = {}
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode().partition(":")
            assert name.lower() not in headers, f"duplicate {name}"
            headers[name.lower()] = value.strip()
        if head or int(status) in (100, 204, 304):
            return int(status), headers, b""
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            chunks = bytearray()
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                if size == 0:
                    assert await self.reader.readuntil(b"\r\n") == b"\r\n"
                    break
                chunks += await self.reader.readexactly(size)
                assert await self.reader.readexactly(2) == b"\r\n"
            body = bytes(chunks)
        else:
            body = await self.reader.read()
        return int(status), headers, body

    async def closed(self, within: float = 2.0) -> bool:
        """True if the server closed the connection (EOF or reset) within `within` seconds."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), within)
            while data:
                data = await asyncio.wait_for(self.reader.read(65536), within)
        except (ConnectionError, asyncio.IncompleteReadError):
            return True
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@contextlib.contextmanager
def elapsed() -> Iterator[list[float]]:
    box = [0.0]
    start = time.perf_counter()
    yield box
    box[0] = time.perf_counter() - start


# ------------------------------------------------------------------ the happy paths


def test_keep_alive_two_requests_one_connection(run: Any) -> None:
    async def main() -> None:
        app = App()
        async with serving(app) as (server, port):
            c = await Client.connect(port)
            status, _, body = await c.get("/a?x=1")
            assert (status, body) == (200, b"GET /a")
            status, headers, body = await c.get("/b")
            assert (status, body) == (200, b"GET /b")
            assert "connection" not in headers
            assert headers["content-type"] == "text/plain"
            assert "date" in headers
            assert server.connections == 1
            assert [r.query for r in app.seen] == [{"x": ["1"]}, {}]
            await c.close()

    run(main())


def test_pipelining_answers_in_order_with_slow_first(run: Any) -> None:
    async def main() -> None:
        app = App()
        async with serving(app) as (_, port):
            c = await Client.connect(port)
            c.send(
                b"GET /slow?s=0.2 HTTP/1.1\r\nHost: t\r\n\r\n"
                b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n"
                b"PUT /two HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz"
            )
            bodies = [(await c.response())[2] for _ in range(3)]
            assert bodies == [b"GET /slow", b"GET /one", b"xyz"]
            await c.close()

    run(main())


def test_slow_handler_does_not_stall_other_connections(run: Any) -> None:
    async def main() -> None:
        app = App()
        async with serving(app) as (_, port):
            slow = await Client.connect(port)
            slow.send(b"GET /slow?s=0.8 HTTP/1.1\r\nHost: t\r\n\r\n")
            fast = await Client.connect(port)
            with elapsed() as took:
                assert (await fast.get("/quick"))[2] == b"GET /quick"
            assert took[0] < 0.5
            assert (await slow.response())[2] == b"GET /slow"
            await slow.close()
            await fast.close()

    run(main())


def test_chunked_request_body(run: Any) -> None:
    async def main() -> None:
        async with serving(App()) as (_, port):
            c = await Client.connect(port)
            c.send(b"PUT /kv HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            c.send(b"5\r\nhello\r\n")
            await asyncio.sleep(0.01)
            c.send(b"6\r\n world\r\n0\r\n\r\n")
            assert (await c.response())[2] == b"hello world"
            assert (await c.get("/after"))[2] == b"GET /after"
            await c.close()

    run(main())


def test_streaming_response(run: Any) -> None:
    async def main() -> None:
        async with serving(App()) as (_, port):
            c = await Client.connect(port)
            status, headers, body = await c.get("/stream?n=4&size=3")
            assert status == 200
            assert headers["transfer-encoding"] == "chunked"
            assert "content-length" not in headers
            assert body == b"000111222333"
            assert (await c.get("/after"))[2] == b"GET /after"
            await c.close()

    run(main())


def test_streaming_respects_backpressure(run: Any) -> None:
    async def main() -> None:
        app = App()
        async with serving(app) as (_, port):
            c = await Client.connect(port, rcvbuf=16384)
            c.send(b"GET /stream?n=512&size=65536 HTTP/1.1\r\nHost: t\r\n\r\n")
            await asyncio.sleep(0.3)
            assert app.produced < 16 * 1024 * 1024  # paused well before the 32 MiB end
            _, _, body = await c.response()
            assert len(body) == 512 * 65536
            await c.close()

    run(main())


def test_streaming_client_disconnect_stops_the_stream(run: Any) -> None:
    async def main() -> None:
        app = App()
        async with serving(app) as (server, port):
            c = await Client.connect(port, rcvbuf=16384)
            c.send(b"GET /stream?n=100000&size=65536 HTTP/1.1\r\nHost: t\r\n\r\n")
            await asyncio.sleep(0.2)
            await c.close()
            assert await server.tracker.wait_empty(2.0)
            produced = app.produced
            await asyncio.sleep(0.1)
            assert app.produced == produced < 100000 * 65536

    run(main())


def test_expect_100_continue(run: Any) -> None:
    async def main() -> None:
        async with serving(App()) as (_, port):
            c = await Client.connect(port)
            c.send(
                b"PUT /kv HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
            )
            status, _, _ = await c.response()
            assert status == 100
            c.send(b"data")
            assert (await c.response())[:3:2] == (200, b"data")
            await c.close()

    run(main())


def test_expect_100_continue_refused_when_too_large(run: Any) -> None:
    async def main() -> None:
        async with serving(App()) as (_, port):
            c = await Client.connect(port)
            c.send(
                b"PUT /small HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                b"Content-Length: 5000\r\n\r\n"
            )
            status, headers, _ = await c.response()
            assert status == 413
            assert headers["connection"] == "close"
            await c.close()

    run(main())


def test_head_has_length_but_no_body(run: Any) -> None:
    async def main() -> None:
        async with serving(App()) as (_, port):
            c = await Client.connect(port)
            c.send(b"HEAD /thing HTTP/1.1\r\nHost: t\r\n\r\n")
            status, headers, body = await c.response(head=True)
            assert (status, headers["content-length"], body) == (200, "11", b"")
            assert (await c.get("/next"))[2] == b"GET /next"
            await c.close()

    run(main())


def test_gzip_when_accepted(run: Any) -> None:
    async def main() -> None:
        async with serving(App()) as (_, port):
            c = await Client.connect(port)
            _, headers, body = await c.get("/small", "Accept-Encoding: gzip\r\n")
            # below gziphandler's 1400-byte minimum Consul answers uncompressed
            assert "content-encoding" not in headers and body == b"GET /small"
            await c.close()
        async with serving(App(), gzip_min_size=0) as (_, port):
            c = await Client.connect(port)
            _, headers, body = await c.get("/zip", "Accept-Encoding: gzip, deflate\r\n")
            assert headers["content-encoding"] == "gzip"
            assert headers["vary"] == "Accept-Encoding"
            assert gzip.decompress(body) == b"GET /zip"
            _, headers, body = await c.get("/plain")
            assert "content-encoding" not in headers and body == b"GET /plain"
            _, headers, body = await c.get("/refused", "Accept-Encoding: gzip;q=0\r\n")
            assert "content-encoding" not in headers and body == b"GET /refused"
            _, headers, body = await c.get("/empty", "Accept-Encoding: gzip\r\n")
            assert "content-encoding" not in headers and body == b""
            await c.close()

    run(main())


def test_http10(run: Any) -> None:
    async def main() -> None:
        async with serving(App()) as (_, port):
            c = await Client.connect(port)
            c.send(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            _, headers, body = await c.response()
            assert headers["connection"] == "keep-alive" and body == b"GET /old"
            c.send(b"GET /old2 HTTP/1.0\r\n\r\n")
            _, headers, body = await c.response()
            assert headers["connection"] == "close" and body == b"GET /old2"
            assert await c.closed()
            await c.close()

    run(main())


def test_connection_close_request(run: Any) -> None:
    async def main() -> None:
        async with serving(App()) as (_, port):
            c = await Client.connect(port)
            _, headers, _ = await c.get("/bye", "Connection: close\r\n")
            assert headers["connection"] == "close"
            assert await c.closed()
            await c.close()

    run(main())


# ------------------------------------------------------------------ errors and limits


def test_handler_exception_is_500_with_text(run: Any) -> None:
    async def main() -> None:
        async with serving(App()) as (_, port):
            c = await Client.connect(port)
            status, headers, body = await c.get("/boom")
            assert (status, body) == (500, b"boom")
            assert headers["content-type"].startswith("text/plain")
            assert (await c.get("/missing"))[:3:2] == (404, b"no such thing")
            assert (await c.get("/still"))[2] == b"GET /still"
            await c.close()

    run(main())


def test_handler_failures_after_waiting_and_bad_results(run: Any) -> None:
    async def main() -> None:
        async with serving(App()) as (_, port):
            c = await Client.connect(port)
            assert (await c.get("/late-boom"))[:3:2] == (500, b"late boom")
            assert (await c.get("/wrong"))[:3:2] == (500, b"handler returned str")
            status, _, body = await c.get("/badheader")
            assert status == 500 and body.startswith(b"invalid response")
            assert (await c.get("/chain"))[:3:2] == (200, b"GET /chain")
            await c.close()

    run(main())


def test_many_pipelined_requests(run: Any) -> None:
    async def main() -> None:
        async with serving(App(), max_pipelined=4) as (_, port):
            c = await Client.connect(port)
            c.send(b"".join(b"GET /p%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(500)))
            for i in range(500):
                assert (await c.response())[2] == b"GET /p%d" % i
            assert (await c.get("/after"))[2] == b"GET /after"
            await c.close()

    run(main())


def test_malformed_request_is_400_and_others_still_served(run: Any) -> None:
    async def main() -> None:
        async with serving(App()) as (_, port):
            bad = await Client.connect(port)
            bad.send(b"NOT HTTP AT ALL\r\n\r\n")
            status, headers, _ = await bad.response()
            assert status == 400 and headers["connection"] == "close"
            assert await bad.closed()
            await bad.close()
            good = await Client.connect(port)
            assert (await good.get("/fine"))[0] == 200
            await good.close()

    run(main())


def test_error_after_pipelined_requests_keeps_order(run: Any) -> None:
    async def main() -> None:
        async with serving(App()) as (_, port):
            c = await Client.connect(port)
            c.send(b"GET /slow?s=0.1 HTTP/1.1\r\nHost: t\r\n\r\nBROKEN\r\n\r\n")
            assert (await c.response())[:3:2] == (200, b"GET /slow")
            assert (await c.response())[0] == 400
            await c.close()

    run(main())


def test_oversized_head_is_431(run: Any) -> None:
    async def main() -> None:
        async with serving(App(), max_header_bytes=2048) as (_, port):
            c = await Client.connect(port)
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n")
            status, headers, body = await c.response()
            assert status == 431 and headers["connection"] == "close"
            assert body == b"431 Request Header Fields Too Large"
            assert await c.closed()
            await c.close()

    run(main())


def test_oversized_body_by_content_length(run: Any) -> None:
    async def main() -> None:
        app = App()
        async with serving(app) as (_, port):
            c = await Client.connect(port)
            c.send(b"PUT /small HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000)
            status, headers, body = await c.response()
            assert status == 413 and headers["connection"] == "close"
            assert body == b"Request body(2000 bytes) too large, max size: 1024 bytes."
            assert await c.closed()
            await c.close()
            assert app.seen == []

    run(main())


def test_oversized_chunked_body(run: Any) -> None:
    async def main() -> None:
        async with serving(App()) as (_, port):
            c = await Client.connect(port)
            c.send(b"PUT /small HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(3):
                c.send(b"200\r\n" + b"y" * 512 + b"\r\n")
            status, _, body = await c.response()
            assert status == 413
            assert body == b"Request body(-1 bytes) too large, max size: 1024 bytes."
            await c.close()

    run(main())


def test_connections_per_client_are_limited(run: Any) -> None:
    async def main() -> None:
        async with serving(App(), max_conns_per_client=2) as (_, port):
            first = await Client.connect(port)
            second = await Client.connect(port)
            assert (await first.get("/1"))[0] == 200
            third = await Client.connect(port)
            status, _, _ = await third.response()
            assert status == 429
            assert (await second.get("/2"))[0] == 200
            for c in (first, second, third):
                await c.close()

    run(main())


# ------------------------------------------------------------------ timeouts and disconnects


def test_slowloris_head_is_cut_off(run: Any) -> None:
    async def main() -> None:
        async with serving(App(), header_timeout=0.3) as (_, port):
            c = await Client.connect(port)
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
            with elapsed() as took:
                assert await c.closed(within=2.0)
            assert 0.2 < took[0] < 1.5
            await c.close()

    run(main())


def test_silent_connection_is_cut_off(run: Any) -> None:
    async def main() -> None:
        async with serving(App(), header_timeout=0.3, idle_timeout=5) as (_, port):
            c = await Client.connect(port)
            with elapsed() as took:
                assert await c.closed(within=2.0)
            assert took[0] < 1.5
            await c.close()

    run(main())


def test_slow_body_is_cut_off(run: Any) -> None:
    async def main() -> None:
        async with serving(App(), body_timeout=0.3) as (_, port):
            c = await Client.connect(port)
            c.send(b"PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            assert await c.closed(within=2.0)
            await c.close()

    run(main())


def test_idle_keep_alive_is_closed(run: Any) -> None:
    async def main() -> None:
        async with serving(App(), idle_timeout=0.3, header_timeout=5) as (server, port):
            c = await Client.connect(port)
            assert (await c.get("/x"))[0] == 200
            await asyncio.sleep(0.1)
            assert server.connections == 1
            with elapsed() as took:
                assert await c.closed(within=2.0)
            assert took[0] < 1.5
            await c.close()

    run(main())


def test_client_that_stops_reading_is_dropped(run: Any) -> None:
    async def main() -> None:
        app = App()
        async with serving(app, idle_timeout=0.3) as (server, port):
            c = await Client.connect(port, rcvbuf=16384)
            c.send(b"GET /stream?n=100000&size=65536 HTTP/1.1\r\nHost: t\r\n\r\n")
            await asyncio.sleep(0.1)
            assert server.connections == 1
            assert await server.tracker.wait_empty(2.0)
            assert app.produced < 100000 * 65536
            c.writer.transport.abort()

    run(main())


def test_long_handler_is_not_a_timeout(run: Any) -> None:
    async def main() -> None:
        limits = {"idle_timeout": 0.2, "header_timeout": 0.2, "body_timeout": 0.2}
        async with serving(App(), **limits) as (_, port):
            c = await Client.connect(port)
            assert (await c.get("/slow?s=0.8"))[2] == b"GET /slow"
            await c.close()

    run(main())


def test_disconnect_cancels_handler(run: Any) -> None:
    async def main() -> None:
        app = App()
        async with serving(app, eof_grace=0.1) as (server, port):
            c = await Client.connect(port)
            c.send(b"GET /block HTTP/1.1\r\nHost: t\r\n\r\n")
            await asyncio.wait_for(app.started.wait(), 2)
            await c.close()
            await asyncio.wait_for(app.cancelled.wait(), 2)
            assert await server.tracker.wait_empty(2.0)

    run(main())


def test_half_closed_client_still_gets_a_quick_answer(run: Any) -> None:
    async def main() -> None:
        async with serving(App(), eof_grace=1.0) as (_, port):
            c = await Client.connect(port)
            c.send(b"GET /slow?s=0.05 HTTP/1.1\r\nHost: t\r\n\r\n")
            c.writer.write_eof()
            assert (await c.response())[2] == b"GET /slow"
            assert await c.closed()
            await c.close()

    run(main())


def test_shutdown_finishes_running_answers_and_closes_idle(run: Any) -> None:
    async def main() -> None:
        app = App()
        server = HttpServer(app, make_limits())
        listener = await server.listen("127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        idle = await Client.connect(port)
        assert (await idle.get("/x"))[0] == 200
        busy = await Client.connect(port)
        busy.send(b"GET /slow?s=0.3 HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.sleep(0.05)
        with elapsed() as took:
            shutdown = asyncio.ensure_future(server.shutdown(timeout=5.0))
            assert await idle.closed()
            _, headers, body = await busy.response()
            assert body == b"GET /slow" and headers["connection"] == "close"
            assert await busy.closed()
            await busy.close()
            await shutdown
        assert took[0] < 1.5
        assert server.connections == 0
        with pytest.raises(OSError):
            await Client.connect(port)
        await idle.close()
        await busy.close()

    run(main())


def test_shutdown_cancels_handlers_past_the_grace(run: Any) -> None:
    async def main() -> None:
        app = App()
        server = HttpServer(app, make_limits())
        listener = await server.listen("127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        c = await Client.connect(port)
        c.send(b"GET /block HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.wait_for(app.started.wait(), 2)
        await server.shutdown(timeout=0.2)
        assert app.cancelled.is_set()
        assert await c.closed()
        await c.close()

    run(main())


def test_unix_socket_listener(run: Any, tmp_path: Any) -> None:
    async def main() -> None:
        server = HttpServer(App(), make_limits())
        path = str(tmp_path / "http.sock")
        await server.listen_unix(path)
        try:
            reader, writer = await asyncio.open_unix_connection(path)
            c = Client(reader, writer)
            status, _, body = await c.get("/over-unix")
            assert (status, body) == (200, b"GET /over-unix")
            await c.close()
        finally:
            await server.shutdown(1.0)

    run(main())


def test_serve_helper_listens_on_several_addresses(run: Any) -> None:
    async def main() -> None:
        listener = await protocol.serve(App(), ["127.0.0.1", "localhost"], 0)
        try:
            ports = {sock.getsockname()[1] for sock in listener.sockets}
            assert len(listener.sockets) >= 1 and len(ports) >= 1
            c = await Client.connect(next(iter(ports)))
            assert (await c.get("/hi"))[2] == b"GET /hi"
            await c.close()
        finally:
            listener.close()
            await listener.wait_closed()

    run(main())
