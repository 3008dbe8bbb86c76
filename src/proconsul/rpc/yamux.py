"""A yamux session over an asyncio connection, byte-compatible with hashicorp/yamux (spec.md).

Every frame starts with a 12-byte big-endian header: version (0), type (Data, WindowUpdate,
Ping, GoAway), flags (SYN, ACK, FIN, RST), stream id, length. The dialer opens odd stream ids,
the listener even ones; id 0 is the session (pings and go-away).

The receive side reads large chunks and handles every complete frame synchronously, so a burst
of small frames costs no task switches. Memory stays bounded without pausing the socket: a data
frame longer than the largest window is a protocol error before its payload is buffered, each
stream holds at most its receive window (256 KiB unless configured larger), streams waiting to
be accepted are capped by the accept backlog (beyond it the opener gets a RST, as in yamux), and
control replies (pings, resets) wait for the socket when its write buffer is full, which stops
reading until the peer drains it.

Writes are queued whole, so frames of different streams interleave only at frame boundaries,
and the frames queued during one turn of the event loop reach the transport as one write at the
end of it (one send for the responses or requests of many streams woken together). A writer
whose send window is spent waits for the peer's window update; a transport that stays full past
`connection_write_timeout` ends the session, as yamux's "safety valve" does.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections import deque
from dataclasses import dataclass
from enum import IntEnum

from proconsul.rpc.errors import (
    ConnectionReset,
    ConnectionWriteTimeout,
    KeepAliveTimeout,
    RemoteGoAway,
    SessionEOF,
    SessionShutdown,
    StreamClosed,
    StreamsExhausted,
    YamuxError,
    YamuxProtocolError,
    YamuxTimeout,
)

PROTO_VERSION = 0

TYPE_DATA = 0
TYPE_WINDOW_UPDATE = 1
TYPE_PING = 2
TYPE_GO_AWAY = 3

FLAG_SYN = 0x1
FLAG_ACK = 0x2
FLAG_FIN = 0x4
FLAG_RST = 0x8

GO_AWAY_NORMAL = 0
GO_AWAY_PROTO_ERR = 1
GO_AWAY_INTERNAL_ERR = 2

INITIAL_STREAM_WINDOW = 256 * 1024
HEADER_SIZE = 12
_HEADER = struct.Struct(">BBHII")
_MAX_STREAM_ID = 0xFFFFFFFF

#: bytes asked of the socket per read
_RECV_CHUNK = 256 * 1024
#: a transport write buffer above this makes the receive loop wait for the socket
_CONTROL_BACKLOG = 1024 * 1024


def encode_header(msg_type: int, flags: int, stream_id: int, length: int) -> bytes:
    return _HEADER.pack(PROTO_VERSION, msg_type, flags, stream_id, length)


def decode_header(buf: bytes | bytearray | memoryview) -> tuple[int, int, int, int, int]:
    """(version, type, flags, stream id, length) of the first 12 bytes."""
    version, msg_type, flags, stream_id, length = _HEADER.unpack_from(buf)
    return version, msg_type, flags, stream_id, length


@dataclass(slots=True)
class YamuxConfig:
    """hashicorp/yamux's DefaultConfig (durations in seconds)."""

    accept_backlog: int = 256
    enable_keepalive: bool = True
    keepalive_interval: float = 30.0
    connection_write_timeout: float = 10.0
    max_stream_window: int = INITIAL_STREAM_WINDOW
    #: an opened stream not acknowledged within this closes the session; 0 waits forever
    stream_open_timeout: float = 75.0
    #: a half-closed stream whose peer never closes is reset after this; 0 waits forever
    stream_close_timeout: float = 300.0

    def __post_init__(self) -> None:
        if self.accept_backlog <= 0:
            raise ValueError("backlog must be positive")
        if self.keepalive_interval <= 0:
            raise ValueError("keep-alive interval must be positive")
        if self.max_stream_window < INITIAL_STREAM_WINDOW:
            raise ValueError(f"MaxStreamWindowSize must be larger than {INITIAL_STREAM_WINDOW}")


class StreamState(IntEnum):
    INIT = 0
    SYN_SENT = 1
    SYN_RECEIVED = 2
    ESTABLISHED = 3
    LOCAL_CLOSE = 4
    REMOTE_CLOSE = 5
    CLOSED = 6
    RESET = 7


class Stream:
    """One logical connection inside a session: `read`, `write`, half-`close` and `reset`."""

    def __init__(self, session: Session, stream_id: int, state: StreamState) -> None:
        self.session = session
        self.stream_id = stream_id
        self.state = state
        self._recv_buf = bytearray()
        self._recv_window = INITIAL_STREAM_WINDOW
        self._send_window = INITIAL_STREAM_WINDOW
        self._recv_ready = asyncio.Event()
        self._send_ready = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._close_timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<yamux.Stream {self.stream_id} {self.state.name}>"

    # -- reading ----------------------------------------------------------------------------

    async def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (everything buffered when n < 0) as soon as any are there; b"" once
        the peer has closed its side and the buffer is empty."""
        while True:
            state = self.state
            if state is StreamState.RESET:
                raise ConnectionReset()
            if self._recv_buf:
                if n < 0 or n >= len(self._recv_buf):
                    data = bytes(self._recv_buf)
                    self._recv_buf.clear()
                else:
                    data = bytes(self._recv_buf[:n])
                    del self._recv_buf[:n]
                self._send_window_update()
                return data
            if state in (StreamState.REMOTE_CLOSE, StreamState.CLOSED):
                return b""
            if self.session.is_closed:
                return b""
            self._recv_ready.clear()
            await self._recv_ready.wait()

    async def readexactly(self, n: int) -> bytes:
        parts: list[bytes] = []
        need = n
        while need:
            chunk = await self.read(need)
            if not chunk:
                raise asyncio.IncompleteReadError(b"".join(parts), n)
            parts.append(chunk)
            need -= len(chunk)
        return b"".join(parts)

    def buffered(self) -> int:
        return len(self._recv_buf)

    def shrink(self) -> None:
        """Let go of the receive buffer's memory while the stream sits idle."""
        if not self._recv_buf:
            self._recv_buf = bytearray()

    # -- writing ----------------------------------------------------------------------------

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of `data`, in frames no larger than the peer's window allows."""
        if not isinstance(data, bytes):
            data = bytes(data)  # the transport may keep a reference until it has sent it
        async with self._send_lock:
            view = memoryview(data)
            total = len(view)
            sent = 0
            while sent < total:
                session = self.session
                if session.is_closed:
                    raise session.shutdown_error or SessionShutdown()
                state = self.state
                if state in (StreamState.LOCAL_CLOSE, StreamState.CLOSED):
                    raise StreamClosed()
                if state is StreamState.RESET:
                    raise ConnectionReset()
                window = self._send_window
                if window == 0:
                    self._send_ready.clear()
                    await self._send_ready.wait()
                    continue
                size = min(window, total - sent)
                flags = self._send_flags()
                self.session._write_frame(
                    encode_header(TYPE_DATA, flags, self.stream_id, size), view[sent:sent + size]
                )
                self._send_window -= size
                sent += size
                await self.session._drain()

    # -- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Half-close: tell the peer we send no more; reading goes on until its FIN."""
        state = self.state
        if state in (StreamState.SYN_SENT, StreamState.SYN_RECEIVED, StreamState.ESTABLISHED):
            self.state = StreamState.LOCAL_CLOSE
            timeout = self.session.config.stream_close_timeout
            if timeout > 0 and self._close_timer is None:
                self._close_timer = asyncio.get_running_loop().call_later(
                    timeout, self._close_timeout)
            self._send_control(FLAG_FIN)
            self._notify()
        elif state is StreamState.REMOTE_CLOSE:
            self.state = StreamState.CLOSED
            self._send_control(FLAG_FIN)
            self._notify()
            self._cancel_close_timer()
            self.session._close_stream(self.stream_id)
        elif state is StreamState.INIT:
            self.state = StreamState.CLOSED
            self.session._close_stream(self.stream_id)

    def reset(self) -> None:
        """Hard-close both directions at once; the peer's reads and writes fail with a reset."""
        if self.state in (StreamState.CLOSED, StreamState.RESET):
            return
        self.state = StreamState.RESET
        self._recv_buf.clear()
        self._cancel_close_timer()
        if not self.session.is_closed:
            self.session._write_frame(
                encode_header(TYPE_WINDOW_UPDATE, FLAG_RST, self.stream_id, 0))
        self._notify()
        self.session._close_stream(self.stream_id)

    @property
    def is_closed(self) -> bool:
        return self.state in (StreamState.CLOSED, StreamState.RESET)

    # -- internals --------------------------------------------------------------------------

    def _send_flags(self) -> int:
        if self.state is StreamState.INIT:
            self.state = StreamState.SYN_SENT
            return FLAG_SYN
        if self.state is StreamState.SYN_RECEIVED:
            self.state = StreamState.ESTABLISHED
            return FLAG_ACK
        return 0

    def _send_window_update(self) -> None:
        """Give the peer back the window our reads freed (and carry a pending SYN or ACK)."""
        if self.state in (StreamState.CLOSED, StreamState.RESET) or self.session.is_closed:
            return
        max_window = self.session.config.max_stream_window
        delta = (max_window - len(self._recv_buf)) - self._recv_window
        flags = self._send_flags()
        if delta < max_window // 2 and flags == 0:
            return
        self._recv_window += delta
        self.session._write_frame(
            encode_header(TYPE_WINDOW_UPDATE, flags, self.stream_id, delta))

    def _send_control(self, extra_flags: int) -> None:
        if self.session.is_closed:
            return
        flags = self._send_flags() | extra_flags
        self.session._write_frame(encode_header(TYPE_WINDOW_UPDATE, flags, self.stream_id, 0))

    def _notify(self) -> None:
        self._recv_ready.set()
        self._send_ready.set()

    def _cancel_close_timer(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None

    def _close_timeout(self) -> None:
        self._close_timer = None
        if self.state is StreamState.LOCAL_CLOSE:
            self.reset()

    def _force_close(self) -> None:
        if self.state is not StreamState.RESET:
            self.state = StreamState.CLOSED
        self._cancel_close_timer()
        self._notify()

    def _process_flags(self, flags: int) -> None:
        close_stream = False
        if flags & FLAG_ACK:
            if self.state is StreamState.SYN_SENT:
                self.state = StreamState.ESTABLISHED
            self.session._establish_stream(self.stream_id)
        if flags & FLAG_FIN:
            if self.state in (StreamState.SYN_SENT, StreamState.SYN_RECEIVED,
                              StreamState.ESTABLISHED):
                self.state = StreamState.REMOTE_CLOSE
                self._notify()
            elif self.state is StreamState.LOCAL_CLOSE:
                self.state = StreamState.CLOSED
                close_stream = True
                self._notify()
            else:
                self.session.log.error("yamux: unexpected FIN flag in state %d", self.state)
                raise YamuxProtocolError("unexpected flag")
        if flags & FLAG_RST:
            self.state = StreamState.RESET
            close_stream = True
            self._notify()
        if close_stream:
            self._cancel_close_timer()
            self.session._close_stream(self.stream_id)

    def _incr_send_window(self, flags: int, delta: int) -> None:
        self._process_flags(flags)
        self._send_window += delta
        self._send_ready.set()

    def _receive_data(self, flags: int, payload: memoryview) -> None:
        self._process_flags(flags)
        length = len(payload)
        if not length:
            return
        if length > self._recv_window:
            self.session.log.error(
                "yamux: receive window exceeded (stream: %d, remain: %d, recv: %d)",
                self.stream_id, self._recv_window, length)
            raise YamuxProtocolError("recv window exceeded")
        if self.state is StreamState.RESET:
            return
        self._recv_buf += payload
        self._recv_window -= length
        self._recv_ready.set()


class _Slots:
    """A counting semaphore whose waiters fail when the session ends."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        while self.free <= 0:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            finally:
                if fut in self._waiters:
                    self._waiters.remove(fut)
        self.free -= 1

    def release(self) -> None:
        self.free += 1
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                break

    def fail(self, exc: BaseException) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(exc)


class Session:
    """A yamux session over one connection. Construct it inside a running loop: the receive
    loop (and the keep-alive pinger when enabled) start at once."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        client: bool,
        config: YamuxConfig | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.config = config or YamuxConfig()
        self.log = logger or logging.getLogger("proconsul.rpc.yamux")
        self.client = client
        self._reader = reader
        self._writer = writer
        self._next_id = 1 if client else 2
        self._streams: dict[int, Stream] = {}
        self._inflight: set[int] = set()
        self._open_timers: dict[int, asyncio.TimerHandle] = {}
        self._syn_slots = _Slots(self.config.accept_backlog)
        self._accept_queue: deque[Stream] = deque()
        self._accept_ready = asyncio.Event()
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._ping_id = 0
        self._local_go_away = False
        self._remote_go_away = False
        self._closed = False
        self._shutdown_err: YamuxError | None = None
        self._closed_event = asyncio.Event()
        self._buf = bytearray()
        #: frames written this turn of the loop, handed to the transport by `_flush`
        self._out: list[bytes | memoryview] = []
        self._out_size = 0
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._recv_task = loop.create_task(self._recv_loop())
        self._keepalive_task: asyncio.Task[None] | None = None
        if self.config.enable_keepalive:
            self._keepalive_task = loop.create_task(self._keepalive())

    # -- public API -------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def remote_go_away(self) -> bool:
        return self._remote_go_away

    @property
    def shutdown_error(self) -> YamuxError | None:
        return self._shutdown_err

    def num_streams(self) -> int:
        return len(self._streams)

    def remote_address(self) -> str:
        peer = self._writer.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            return f"{peer[0]}:{peer[1]}"
        return str(peer)

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    async def open_stream(self) -> Stream:
        """A new outbound stream; its SYN is on the wire when this returns, so data may follow
        before the peer acknowledges it."""
        if self._closed:
            raise self._shutdown_err or SessionShutdown()
        if self._remote_go_away:
            raise RemoteGoAway()
        await self._syn_slots.acquire()
        if self._closed:
            self._syn_slots.release()
            raise self._shutdown_err or SessionShutdown()
        stream_id = self._next_id
        if stream_id >= _MAX_STREAM_ID - 1:
            self._syn_slots.release()
            raise StreamsExhausted()
        self._next_id += 2
        stream = Stream(self, stream_id, StreamState.INIT)
        self._streams[stream_id] = stream
        self._inflight.add(stream_id)
        if self.config.stream_open_timeout > 0:
            self._open_timers[stream_id] = asyncio.get_running_loop().call_later(
                self.config.stream_open_timeout, self._open_timeout, stream)
        stream._send_window_update()
        try:
            await self._drain()
        except BaseException:
            stream.reset()
            raise
        return stream

    async def accept_stream(self) -> Stream:
        """The next stream the peer opened; raises the session's shutdown error once closed."""
        while not self._accept_queue:
            if self._closed:
                raise self._shutdown_err or SessionShutdown()
            self._accept_ready.clear()
            await self._accept_ready.wait()
        stream = self._accept_queue.popleft()
        stream._send_window_update()
        return stream

    async def ping(self) -> float:
        """Round-trip time in seconds of one ping; YamuxTimeout past connection_write_timeout."""
        if self._closed:
            raise self._shutdown_err or SessionShutdown()
        ping_id = self._ping_id
        self._ping_id = (ping_id + 1) & _MAX_STREAM_ID
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[ping_id] = fut
        start = time.monotonic()
        try:
            self._write_frame(encode_header(TYPE_PING, FLAG_SYN, 0, ping_id))
            await self._drain()
            async with asyncio.timeout(self.config.connection_write_timeout):
                await fut
        except TimeoutError:
            raise YamuxTimeout() from None
        finally:
            self._pings.pop(ping_id, None)
        return time.monotonic() - start

    def go_away(self) -> None:
        """Refuse further inbound streams (they get a RST); existing ones carry on."""
        self._local_go_away = True
        if not self._closed:
            self._write_frame(encode_header(TYPE_GO_AWAY, 0, 0, GO_AWAY_NORMAL))

    def close(self, err: YamuxError | None = None) -> None:
        """End the session: every stream is closed and every waiter woken with the error."""
        if self._closed:
            return
        self._flush()  # what was written before the close (a go-away, resets) still goes out
        self._closed = True
        self._shutdown_err = err or SessionShutdown()
        current = asyncio.current_task()
        if self._recv_task is not current:
            self._recv_task.cancel()
        if self._keepalive_task is not None and self._keepalive_task is not current:
            self._keepalive_task.cancel()
        self._writer.close()
        for stream in list(self._streams.values()):
            stream._force_close()
        self._streams.clear()
        self._inflight.clear()
        for timer in self._open_timers.values():
            timer.cancel()
        self._open_timers.clear()
        self._syn_slots.fail(self._shutdown_err)
        for fut in self._pings.values():
            if not fut.done():
                fut.set_exception(SessionShutdown())
        self._pings.clear()
        for pending in self._accept_queue:
            pending._force_close()
        self._accept_queue.clear()
        self._accept_ready.set()
        self._closed_event.set()

    async def aclose(self) -> None:
        """close(), then wait until the socket and the session's tasks are done."""
        self.close()
        tasks = [t for t in (self._recv_task, self._keepalive_task)
                 if t is not None and t is not asyncio.current_task()]
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        try:
            await self._writer.wait_closed()
        except (OSError, RuntimeError):
            pass

    # -- sending ----------------------------------------------------------------------------

    def _write_frame(self, header: bytes, body: memoryview | bytes | None = None) -> None:
        """Queue one frame (`body` must not change until it is sent: bytes, or a view of
        bytes); the queue goes to the transport at the end of this turn of the loop."""
        if self._closed:
            raise self._shutdown_err or SessionShutdown()
        out = self._out
        if not out:
            self._loop.call_soon(self._flush)
        out.append(header)
        self._out_size += HEADER_SIZE
        if body is not None and len(body):
            out.append(body)
            self._out_size += len(body)

    def _flush(self) -> None:
        out = self._out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._out_size = 0
        if self._closed:
            return
        try:
            self._writer.write(data)
        except (RuntimeError, OSError) as exc:
            self.close(SessionShutdown(str(exc) or "session shutdown"))

    async def _drain(self) -> None:
        if self._closed:
            return
        transport = self._writer.transport
        try:
            if not transport.is_closing() and self._out_size + \
                    transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[1]:
                return  # room in the transport: nothing to wait for
        except (AttributeError, RuntimeError):
            pass
        self._flush()
        try:
            async with asyncio.timeout(self.config.connection_write_timeout):
                await self._writer.drain()
        except TimeoutError:
            err = ConnectionWriteTimeout()
            self.close(err)
            raise err from None
        except (ConnectionError, OSError) as exc:
            self.close(SessionShutdown(str(exc) or "session shutdown"))
            raise SessionShutdown() from exc

    def _write_buffer_size(self) -> int:
        transport = self._writer.transport
        try:
            return int(transport.get_write_buffer_size())
        except (AttributeError, RuntimeError):
            return 0

    # -- receiving --------------------------------------------------------------------------

    async def _recv_loop(self) -> None:
        reader = self._reader
        try:
            while True:
                chunk = await reader.read(_RECV_CHUNK)
                if not chunk:
                    self.close(SessionEOF())
                    return
                self._buf += chunk
                self._process()
                if self._write_buffer_size() + self._out_size > _CONTROL_BACKLOG:
                    await self._drain()
        except YamuxProtocolError as exc:
            self._go_away_error(GO_AWAY_PROTO_ERR)
            self.close(exc)
        except YamuxError as exc:
            self.close(exc)
        except (ConnectionError, OSError) as exc:
            self.close(SessionShutdown(str(exc) or "session shutdown"))
        except Exception as exc:
            # never leave a session half alive: whatever broke the receive loop ends it
            self.log.error("yamux: Failed to read header: %s", exc, exc_info=True)
            self.close(SessionShutdown(str(exc) or "session shutdown"))

    def _process(self) -> None:
        buf = self._buf
        view = memoryview(buf)
        end = len(buf)
        off = 0
        max_window = self.config.max_stream_window
        complete = False
        try:
            while end - off >= HEADER_SIZE:
                version, msg_type, flags, stream_id, length = _HEADER.unpack_from(buf, off)
                if version != PROTO_VERSION:
                    self.log.error("yamux: Invalid protocol version: %d", version)
                    raise YamuxError("invalid protocol version")
                if msg_type == TYPE_DATA:
                    if length > max_window:
                        self.log.error("yamux: receive window exceeded (stream: %d, recv: %d)",
                                       stream_id, length)
                        raise YamuxProtocolError("recv window exceeded")
                    if end - off - HEADER_SIZE < length:
                        break
                    start = off + HEADER_SIZE
                    self._handle_stream_frame(msg_type, flags, stream_id, length,
                                              view[start:start + length])
                    off = start + length
                    if self._closed:
                        return
                    continue
                off += HEADER_SIZE
                if msg_type == TYPE_WINDOW_UPDATE:
                    self._handle_stream_frame(msg_type, flags, stream_id, length, None)
                elif msg_type == TYPE_PING:
                    self._handle_ping(flags, length)
                elif msg_type == TYPE_GO_AWAY:
                    self._handle_go_away(length)
                else:
                    raise YamuxError("invalid msg type")
                if self._closed:
                    return
            complete = True
        finally:
            # a frame that raised may still hold a slice of the buffer: compact only after a
            # clean pass (the session is closing otherwise)
            view.release()
            if complete and off:
                del buf[:off]

    def _handle_stream_frame(self, msg_type: int, flags: int, stream_id: int, length: int,
                             payload: memoryview | None) -> None:
        if flags & FLAG_SYN:
            self._incoming_stream(stream_id)
            if self._closed:
                return
        stream = self._streams.get(stream_id)
        if stream is None:
            if msg_type == TYPE_DATA and length:
                self.log.warning("yamux: Discarding data for stream: %d", stream_id)
            else:
                self.log.warning(
                    "yamux: frame for missing stream: Vsn:0 Type:%d Flags:%d StreamID:%d "
                    "Length:%d", msg_type, flags, stream_id, length)
            return
        if payload is None:
            stream._incr_send_window(flags, length)
        else:
            stream._receive_data(flags, payload)

    def _incoming_stream(self, stream_id: int) -> None:
        if self._local_go_away:
            self._write_frame(encode_header(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0))
            return
        if stream_id in self._streams:
            self.log.error("yamux: duplicate stream declared")
            raise YamuxProtocolError("duplicate stream initiated")
        if len(self._accept_queue) >= self.config.accept_backlog:
            self.log.warning("yamux: backlog exceeded, forcing connection reset")
            self._write_frame(encode_header(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0))
            return
        stream = Stream(self, stream_id, StreamState.SYN_RECEIVED)
        self._streams[stream_id] = stream
        self._accept_queue.append(stream)
        self._accept_ready.set()

    def _handle_ping(self, flags: int, ping_id: int) -> None:
        if flags & FLAG_SYN:
            self._write_frame(encode_header(TYPE_PING, FLAG_ACK, 0, ping_id))
            return
        fut = self._pings.pop(ping_id, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _handle_go_away(self, code: int) -> None:
        if code == GO_AWAY_NORMAL:
            self._remote_go_away = True
        elif code == GO_AWAY_PROTO_ERR:
            self.log.error("yamux: received protocol error go away")
            raise YamuxError("yamux protocol error")
        elif code == GO_AWAY_INTERNAL_ERR:
            self.log.error("yamux: received internal error go away")
            raise YamuxError("remote yamux internal error")
        else:
            self.log.error("yamux: received unexpected go away")
            raise YamuxError("unexpected go away received")

    def _go_away_error(self, code: int) -> None:
        if not self._closed:
            self._local_go_away = True
            try:
                self._write_frame(encode_header(TYPE_GO_AWAY, 0, 0, code))
            except (YamuxError, OSError, RuntimeError):
                pass

    # -- stream bookkeeping -----------------------------------------------------------------

    def _close_stream(self, stream_id: int) -> None:
        if stream_id in self._inflight:
            self._inflight.discard(stream_id)
            self._syn_slots.release()
            timer = self._open_timers.pop(stream_id, None)
            if timer is not None:
                timer.cancel()
        self._streams.pop(stream_id, None)

    def _establish_stream(self, stream_id: int) -> None:
        if stream_id in self._inflight:
            self._inflight.discard(stream_id)
            self._syn_slots.release()
        timer = self._open_timers.pop(stream_id, None)
        if timer is not None:
            timer.cancel()

    def _open_timeout(self, stream: Stream) -> None:
        self._open_timers.pop(stream.stream_id, None)
        if stream.stream_id in self._inflight and not self._closed:
            self.log.error("yamux: aborted stream open (destination=%s): i/o deadline reached",
                           self.remote_address())
            self.close()

    # -- keep-alive -------------------------------------------------------------------------

    async def _keepalive(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.config.keepalive_interval)
            try:
                await self.ping()
            except SessionShutdown:
                return
            except YamuxError as exc:
                if self._closed:
                    return
                self.log.error("yamux: keepalive failed: %s", exc)
                self.close(KeepAliveTimeout())
                return
