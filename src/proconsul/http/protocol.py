"""The HTTP/1.1 server: an asyncio protocol on httptools, plus the listener that tracks connections.

Consul clients keep connections alive and park on blocking queries for up to ten minutes, so a
connection runs one handler at a time, as its own task, and answers pipelined requests strictly
in order; the event loop is never blocked by a slow handler. Bytes are parsed by the
`RequestReader` of `wire` (compiled when built) and answers are encoded there too; this module
owns what needs the event loop: ordering, timeouts, flow control, streaming, gzip, errors, and
shutdown. A malformed or oversized request is answered and the connection closed; nothing a
client sends raises into the event loop.

Timeouts are checked by one periodic sweep per `ConnectionTracker` rather than a timer per
request, which keeps the per-request path free of timer handles.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import types
import zlib
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Generator, Sequence
from typing import Any, cast

from proconsul.errors import ConnectionLimit, HTTPError, HTTPParseError
from proconsul.http.limits import HttpLimits
from proconsul.http.request import HTTPApp, Request, Response
from proconsul.http.wire import (
    CONTINUE,
    HEAD,
    IDLE,
    LAST_CHUNK,
    RequestReader,
    encode_chunk,
    encode_response,
    encode_stream_head,
    status_text,
)

__all__ = ["ConnectionTracker", "HttpLimits", "HttpProtocol", "HttpServer", "serve"]

_log = logging.getLogger("proconsul.http")

_TEXT = [("Content-Type", "text/plain; charset=utf-8")]
_GZIP_HEADERS = [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
# Bodies above this are written after their head instead of being copied into it.
_LARGE_BODY = 64 * 1024
_EAGER_TASKS = sys.version_info >= (3, 12)
_accepts_gzip_cache: dict[str, bool] = {}


def _accepts_gzip(value: str) -> bool:
    """Whether an Accept-Encoding value allows gzip (an explicit `gzip;q=0` refuses it)."""
    cached = _accepts_gzip_cache.get(value)
    if cached is not None:
        return cached
    accepted = False
    for item in value.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() != "gzip":
            continue
        accepted = True
        for param in params.split(";"):
            key, _, number = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    accepted = float(number) > 0
                except ValueError:
                    accepted = False
        break
    if len(_accepts_gzip_cache) < 64:
        _accepts_gzip_cache[value] = accepted
    return accepted


def _gzip(body: bytes, level: int) -> bytes:
    """gzip with zlib's window and hash sized to the body.

    Most Consul answers are a few hundred bytes; full-size zlib state is ~256 KiB allocated and
    cleared per answer, which costs more than compressing. A window at least as long as the
    body finds the same matches, so the output stays as small.
    """
    bits = min(15, max(9, (len(body) - 1).bit_length()))
    packer = zlib.compressobj(level, zlib.DEFLATED, 16 + bits, max(1, min(8, bits - 7)))
    return packer.compress(body) + packer.flush()


def _outcome(task: asyncio.Future[Any]) -> object:
    """A finished handler task's Response or exception; None when it was cancelled."""
    if task.cancelled():
        return None
    error = task.exception()
    return task.result() if error is None else error


@types.coroutine
def _drive(coro: Coroutine[Any, Any, Response], waiting_on: Any) -> Generator[Any, Any, Response]:
    """Continue a handler that was started outside a task and stopped at `waiting_on`.

    The task running this sees the same future the handler yielded, so waking, results and
    cancellation reach the handler exactly as if the task had started it.
    """
    while True:
        try:
            value = yield waiting_on
        except BaseException as exc:
            try:
                waiting_on = coro.throw(exc)
            except StopIteration as stop:
                return cast(Response, stop.value)
        else:
            try:
                waiting_on = coro.send(value)
            except StopIteration as stop:
                return cast(Response, stop.value)


async def _resume(coro: Coroutine[Any, Any, Response], waiting_on: Any) -> Response:
    return await _drive(coro, waiting_on)


def _plain(status: int, message: str, keep_alive: bool = False) -> bytes:
    return encode_response(status, _TEXT, message.encode("utf-8"), keep_alive)


class ConnectionTracker:
    """The open connections of one server: per-client counts, timeout sweep, and shutdown.

    The sweep runs only while connections are open, every `limits.sweep_interval()` seconds.
    """

    __slots__ = ("_conns", "_handle", "_interval", "_limits", "_per_client", "closing")

    def __init__(self, limits: HttpLimits) -> None:
        self._limits = limits
        self._conns: set[HttpProtocol] = set()
        self._per_client: dict[str, int] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._interval = limits.sweep_interval()
        #: True once shutdown began: new connections are refused, answers end connections.
        self.closing = False

    def __len__(self) -> int:
        return len(self._conns)

    def add(self, conn: HttpProtocol, client: str) -> bool:
        """Register a new connection; False when its client already has too many."""
        limit = self._limits.max_conns_per_client
        count = self._per_client.get(client, 0)
        if self.closing or (limit and client and count >= limit):
            return False
        self._per_client[client] = count + 1
        self._conns.add(conn)
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(self._interval, self._sweep)
        return True

    def discard(self, conn: HttpProtocol, client: str) -> None:
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        count = self._per_client.get(client, 0) - 1
        if count > 0:
            self._per_client[client] = count
        else:
            self._per_client.pop(client, None)
        if not self._conns and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _sweep(self) -> None:
        self._handle = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in list(self._conns):
            conn.check_timeouts(now)
        if self._conns:
            self._handle = loop.call_later(self._interval, self._sweep)

    def finish(self) -> None:
        """Refuse new connections, close idle ones, and let busy ones end after their answer."""
        self.closing = True
        for conn in list(self._conns):
            conn.finish()

    def abort(self) -> None:
        """Cancel every running handler and close every connection now."""
        self.closing = True
        for conn in list(self._conns):
            conn.abort()

    async def wait_empty(self, timeout: float | None = None) -> bool:
        """Wait until every connection is gone; False if `timeout` ran out first."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._conns:
            if deadline is not None and loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True


class HttpProtocol(asyncio.Protocol):
    """One HTTP/1.x connection: parses requests, runs handlers one at a time, writes answers.

    :param app: answers the requests and sets the body limit per route.
    :param limits: sizes and timeouts; the defaults are Consul's.
    :param tracker: the server's connection set; a private one is made when omitted.
    """

    __slots__ = (
        "_app",
        "_client",
        "_continue_owed",
        "_current",
        "_drain_waiter",
        "_eager",
        "_eof_since",
        "_final",
        "_gzip",
        "_limits",
        "_linger_since",
        "_loop",
        "_paused_since",
        "_queue",
        "_reader",
        "_reading_paused",
        "_task",
        "_tracker",
        "_transport",
        "_watch_key",
        "_watch_since",
        "_write_paused",
    )

    def __init__(
        self,
        app: HTTPApp,
        limits: HttpLimits | None = None,
        tracker: ConnectionTracker | None = None,
    ) -> None:
        self._app = app
        self._limits = limits if limits is not None else HttpLimits()
        self._tracker = tracker if tracker is not None else ConnectionTracker(self._limits)
        self._gzip = self._limits.gzip
        self._eager = self._limits.eager_handlers and not _EAGER_TASKS
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._queue: deque[tuple[Request, bool]] = deque()
        self._reader: RequestReader | None = None
        self._task: asyncio.Future[Any] | None = None
        self._current: tuple[Request, bool] | None = None
        self._client = ""
        self._write_paused = False
        self._reading_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._continue_owed = False
        self._final: bytes | None = None
        self._linger_since = -1.0
        self._paused_since = 0.0
        self._eof_since = -1.0
        self._watch_key = 0
        self._watch_since = 0.0

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self._transport = transport
        peer = transport.get_extra_info("peername")
        remote: tuple[str, int] | None = None
        if isinstance(peer, tuple) and len(peer) >= 2:
            remote = (str(peer[0]), int(peer[1]))
            self._client = remote[0]
        self._watch_since = self._loop.time()
        if not self._tracker.add(self, self._client):
            status = 503 if self._tracker.closing else 429
            transport.write(_plain(status, "too many connections from this address"))
            self._start_linger()
            # Untracked, so the sweep does not see it: bound its linger with a timer.
            self._loop.call_later(self._limits.linger_timeout, self._abort_transport)
            return
        self._reader = RequestReader(
            self._queue, remote, self._app.body_limit, self._limits.max_header_bytes
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._tracker.discard(self, self._client)
        task = self._task
        if task is not None:
            self._task = None
            self._current = None
            task.cancel()
        self._queue.clear()
        if self._reader is not None:
            self._reader.close()
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_exception(ConnectionResetError("connection lost"))

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        transport = self._transport
        if reader is None or transport is None or self._linger_since >= 0 or self._final:
            return  # answering an error or lingering before close: drop what arrives
        try:
            reader.feed(data)
        except ConnectionLimit as exc:
            self._reject(exc)
        except HTTPParseError as exc:
            _log.debug("malformed request from %s: %s", self._client, exc)
            self._final = _plain(400, "400 Bad Request")
        else:
            if reader.expect_continue:
                reader.expect_continue = False
                self._continue_owed = True
            if len(self._queue) >= self._limits.max_pipelined and not self._reading_paused:
                self._reading_paused = True
                transport.pause_reading()
        if self._task is None:
            self._pump()

    def eof_received(self) -> bool:
        if self._task is None and not self._queue:
            return False  # nothing owed: let the transport close
        # Answer what was asked; the sweep cancels a handler still running after eof_grace,
        # since a client that stopped sending has usually gone.
        self._eof_since = self._loop.time()
        return True

    def pause_writing(self) -> None:
        self._write_paused = True
        self._paused_since = self._loop.time()

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self._task is None:
            self._pump()

    # ------------------------------------------------------------------ requests

    def _pump(self) -> None:
        """Answer queued requests in order, then settle what the connection still owes.

        A loop rather than recursion: one read can queue hundreds of pipelined requests, and
        handlers that finish without waiting are answered in this same pass.
        """
        queue = self._queue
        while queue:
            if self._task is not None or self._write_paused or self._transport is None:
                return
            request, keep_alive = queue.popleft()
            self._start(request, keep_alive)
        transport = self._transport
        if self._task is not None or transport is None or self._linger_since >= 0:
            return
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        if self._final is not None:
            transport.write(self._final)
            self._start_linger()
        elif self._eof_since >= 0:
            self._close_transport()
        elif self._continue_owed:
            self._continue_owed = False
            transport.write(CONTINUE)

    def _start(self, request: Request, keep_alive: bool) -> None:
        """Run the handler; answer now if it finished, else when its task does."""
        try:
            coro: Coroutine[Any, Any, Response] = self._app.handle(request)
            if self._eager:
                try:
                    waiting_on = coro.send(None)
                except StopIteration as stop:
                    self._finish(request, keep_alive, stop.value)
                    return
                coro = _resume(coro, waiting_on)
        except asyncio.CancelledError:
            self._close_transport()
            return
        except Exception as exc:
            self._finish(request, keep_alive, exc)
            return
        self._current = (request, keep_alive)
        if _EAGER_TASKS:
            task = asyncio.Task(coro, loop=self._loop, eager_start=True)  # type: ignore[call-arg]
            if task.done():
                self._current = None
                outcome = _outcome(task)
                if outcome is None:
                    self._close_transport()
                else:
                    self._finish(request, keep_alive, outcome)
                return
        else:
            task = self._loop.create_task(coro)
        self._task = task
        task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Future[Any]) -> None:
        outcome = _outcome(task)
        if task is not self._task or self._current is None:
            return  # the connection went away or was aborted meanwhile
        request, keep_alive = self._current
        self._task = None
        self._current = None
        if outcome is None:
            self._close_transport()
            return
        self._finish(request, keep_alive, outcome)
        self._pump()

    def _finish(self, request: Request, keep_alive: bool, outcome: object) -> None:
        """Answer with what the handler produced: a Response, or the exception it raised."""
        if type(outcome) is not Response:
            if isinstance(outcome, BaseException):
                outcome = self._failure(request, outcome)
            elif not isinstance(outcome, Response):
                outcome = self._failure(
                    request, TypeError(f"handler returned {type(outcome).__name__}")
                )
        self._respond(request, outcome, keep_alive)

    def _failure(self, request: Request, exc: BaseException) -> Response:
        """The answer to a handler that raised: its status when it is an HTTPError, else 500."""
        if isinstance(exc, HTTPError):
            status = exc.status
            if status >= 500:
                _log.error("request %s %s failed: %s", request.method, request.raw_path, exc)
        else:
            status = 500
            _log.error(
                "request %s %s failed: %s",
                request.method,
                request.raw_path,
                exc,
                exc_info=exc,
            )
        return Response(status, str(exc).encode("utf-8", "replace"), list(_TEXT))

    def _respond(self, request: Request, response: Response, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        if self._tracker.closing:
            keep_alive = False
        if response.stream is not None:
            self._start_stream(request, response, keep_alive)
            return
        try:
            status = response.status
            body = response.body
            headers = response.headers
            if self._gzip and body and len(body) >= self._limits.gzip_min_size:
                accept = request.headers.get("accept-encoding")
                if (
                    accept is not None
                    and _accepts_gzip(accept)
                    and request.method != "HEAD"
                    and not any(name.lower() == "content-encoding" for name, _ in headers)
                ):
                    body = _gzip(body, self._limits.gzip_level)
                    headers = [*headers, *_GZIP_HEADERS]
            head = request.method == "HEAD"
            http10 = request.version == "1.0"
            if len(body) > _LARGE_BODY and not head and status >= 200 and status not in (204, 304):
                data = encode_response(status, headers, body, keep_alive, True, http10)
                transport.write(data)
                transport.write(body)
            else:
                transport.write(encode_response(status, headers, body, keep_alive, head, http10))
        except Exception as exc:
            # A response the wire cannot carry (a header that is not text, a body that is not
            # bytes) is the handler's bug: answer 500 rather than fail the connection.
            self._failure(request, exc)
            transport.write(_plain(500, f"invalid response: {exc}", keep_alive))
        if not keep_alive:
            self._queue.clear()
            self._start_linger()

    # ------------------------------------------------------------------ streaming

    def _start_stream(self, request: Request, response: Response, keep_alive: bool) -> None:
        transport = self._transport
        stream = response.stream
        assert transport is not None and stream is not None
        http10 = request.version == "1.0"
        if http10:
            keep_alive = False
        try:
            head = encode_stream_head(response.status, response.headers, keep_alive, http10)
        except Exception as exc:
            self._failure(request, exc)
            transport.write(_plain(500, f"invalid response: {exc}", keep_alive))
            return
        transport.write(head)
        if request.method == "HEAD":
            if not keep_alive:
                self._start_linger()
            return
        self._current = (request, keep_alive)
        task = self._loop.create_task(self._stream(stream, http10))
        self._task = task
        task.add_done_callback(self._stream_done)

    async def _stream(self, stream: AsyncIterator[bytes], http10: bool) -> None:
        """Copy the handler's chunks to the socket, waiting whenever the socket is full."""
        try:
            async for chunk in stream:
                transport = self._transport
                if transport is None:
                    return
                if chunk:
                    transport.write(chunk if http10 else encode_chunk(chunk))
                if self._write_paused:
                    waiter = self._drain_waiter = self._loop.create_future()
                    await waiter
            if self._transport is not None and not http10:
                self._transport.write(LAST_CHUNK)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    def _stream_done(self, task: asyncio.Future[Any]) -> None:
        error = None if task.cancelled() else task.exception()
        if task is not self._task or self._current is None:
            return
        request, keep_alive = self._current
        self._task = None
        self._current = None
        if error is not None:
            # The head is out, so no error status can follow: cut the body short instead.
            _log.error(
                "streaming %s %s failed: %s",
                request.method,
                request.raw_path,
                error,
                exc_info=error,
            )
            self._close_transport()
        elif task.cancelled():
            self._close_transport()
        elif not keep_alive:
            self._start_linger()
        else:
            self._pump()

    # ------------------------------------------------------------------ closing

    def _reject(self, exc: ConnectionLimit) -> None:
        reader = self._reader
        assert reader is not None
        if exc.status == 413 and reader.rejected is not None:
            method, path, size, limit = reader.rejected
            try:
                response = self._app.too_large(method, path, size, limit)
                self._final = encode_response(
                    response.status, response.headers, response.body, False
                )
            except Exception as error:
                _log.error("too_large answer for %s %s failed", method, path, exc_info=error)
                self._final = _plain(413, "413 Request Entity Too Large")
        else:
            self._final = _plain(exc.status, f"{exc.status} {status_text(exc.status)}")
        _log.debug("request from %s refused: %s", self._client, exc)

    def _start_linger(self) -> None:
        """Send FIN after the last answer and drop further bytes until the client closes."""
        transport = self._transport
        if transport is None or self._linger_since >= 0:
            return
        self._linger_since = self._loop.time()
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()

    def _close_transport(self) -> None:
        """Close (flushing what is buffered) and stop writing: the connection is finished."""
        transport = self._transport
        if transport is not None:
            self._transport = None
            transport.close()

    def _abort_transport(self) -> None:
        """Drop the connection without flushing: for clients that no longer read."""
        transport = self._transport
        if transport is not None:
            self._transport = None
            transport.abort()

    def check_timeouts(self, now: float) -> None:
        """Close the connection if the client let a read phase overrun (called by the sweep).

        Progress is judged by (reader state, messages begun): as long as it is unchanged the
        phase is the same, so no timestamps are taken on the per-request path.
        """
        transport = self._transport
        if transport is None:
            return
        limits = self._limits
        if self._linger_since >= 0:
            if now - self._linger_since >= limits.linger_timeout:
                self._transport = None
                transport.abort()
            return
        if self._eof_since >= 0:
            if now - self._eof_since >= limits.eof_grace:
                _log.debug("client %s half-closed; abandoning its request", self._client)
                self._abort_handler()
            return
        reader = self._reader
        if reader is None:
            return
        if self._write_paused and now - self._paused_since >= limits.idle_timeout:
            _log.debug("closing connection from %s: it stopped reading answers", self._client)
            self._abort_handler()
            return
        if self._task is not None or self._queue or self._reading_paused or self._write_paused:
            self._watch_since = now  # waiting on us, not on the client
            return
        key = reader.messages * 4 + reader.state
        if key != self._watch_key:
            self._watch_key = key
            self._watch_since = now
            return
        state = key & 3
        if state == IDLE:
            timeout = limits.idle_timeout if reader.messages else limits.header_timeout
        elif state == HEAD:
            timeout = limits.header_timeout
        else:
            timeout = limits.body_timeout
        if now - self._watch_since >= timeout:
            _log.debug("closing connection from %s: read timeout", self._client)
            self._close_transport()

    def _abort_handler(self) -> None:
        task = self._task
        self._task = None
        self._current = None
        self._queue.clear()
        if task is not None:
            task.cancel()
        self._abort_transport()

    def finish(self) -> None:
        """Close now if idle; otherwise end the connection after the answer being prepared."""
        reader = self._reader
        idle = self._task is None and not self._queue
        if idle and (reader is None or reader.state == IDLE):
            self._close_transport()

    def abort(self) -> None:
        """Cancel the running handler and close the connection without an answer."""
        self._abort_handler()


class HttpServer:
    """Listeners for one HTTPApp, sharing a connection tracker so shutdown reaches every client.

    `listen` may be called several times (one per address); `shutdown` stops listening, lets
    running answers finish within a grace period and then cancels what is left.
    """

    def __init__(self, app: HTTPApp, limits: HttpLimits | None = None) -> None:
        self.app = app
        self.limits = limits if limits is not None else HttpLimits()
        self.tracker = ConnectionTracker(self.limits)
        self.servers: list[asyncio.Server] = []

    def protocol(self) -> HttpProtocol:
        """The protocol factory handed to the event loop."""
        return HttpProtocol(self.app, self.limits, self.tracker)

    async def listen(
        self,
        host: str | Sequence[str] | None,
        port: int,
        *,
        backlog: int = 1024,
        reuse_port: bool | None = None,
    ) -> asyncio.Server:
        """Accept connections on `host` (one address or several) and `port` (0: the OS picks)."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            self.protocol, host, port, backlog=backlog, reuse_port=reuse_port
        )
        self.servers.append(server)
        return server

    async def listen_unix(self, path: str, *, backlog: int = 1024) -> asyncio.Server:
        """Accept connections on a Unix socket (Consul's `unix://` HTTP addresses)."""
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(self.protocol, path, backlog=backlog)
        self.servers.append(server)
        return server

    @property
    def addresses(self) -> list[Any]:
        """The bound socket addresses of every listener."""
        return [sock.getsockname() for server in self.servers for sock in server.sockets or ()]

    @property
    def connections(self) -> int:
        return len(self.tracker)

    def close(self) -> None:
        """Stop listening and drop every connection at once, cancelling running handlers."""
        for server in self.servers:
            server.close()
        self.tracker.abort()

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Stop listening, let busy connections finish for up to `timeout`, then cancel them."""
        for server in self.servers:
            server.close()
        self.tracker.finish()
        if not await self.tracker.wait_empty(timeout):
            self.tracker.abort()
            await self.tracker.wait_empty(1.0)
        for server in self.servers:
            await server.wait_closed()


async def serve(
    app: HTTPApp,
    host: str | Sequence[str] | None,
    port: int,
    limits: HttpLimits | None = None,
) -> asyncio.Server:
    """Listen on `host` and `port` for `app`; for graceful shutdown keep an HttpServer instead."""
    return await HttpServer(app, limits).listen(host, port)
