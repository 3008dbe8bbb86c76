"""Connections to servers' RPC ports, pooled (Consul's agent/pool/pool.go).

One yamux session per server address carries every call to it; a call takes a stream from the
session's idle list (or opens one), writes the request, reads the response and puts the stream
back for the next call. Concurrent first calls to an address share one dial. A session that
broke (the server restarted, the network dropped it) is forgotten as soon as that is seen and
the next call dials again; sessions idle longer than `max_time` are closed by a reaper.

Errors say what is safe: `ConnectFailed` (nothing was sent; any call may go to another server),
`CallFailed` (broken mid-call; only reads may be repeated), `RemoteError` (the server's own
error string, unchanged). Their texts follow Consul's ("rpc error getting client: ...",
"rpc error making call: ...").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from proconsul.rpc.codec import MsgpackCodec
from proconsul.rpc.errors import (
    CallFailed,
    CodecError,
    ConnectFailed,
    RemoteError,
    RPCTimeout,
    YamuxError,
)
from proconsul.rpc.types import RPCType
from proconsul.rpc.yamux import Session, Stream, StreamState, YamuxConfig

log = logging.getLogger("proconsul.pool")

#: the deadline of a call without a timeout (reusable: it holds no state)
_NO_DEADLINE = contextlib.nullcontext()

#: states of an idle stream that can carry another call
_REUSABLE = (StreamState.SYN_SENT, StreamState.ESTABLISHED)

#: pool.go's defaultDialTimeout
DIAL_TIMEOUT = 10.0
#: a client agent's clientRPCConnMaxIdle and clientMaxStreams
CLIENT_MAX_TIME = 127.0
CLIENT_MAX_STREAMS = 32
#: a server's serverRPCCache and serverMaxStreams
SERVER_MAX_TIME = 120.0
SERVER_MAX_STREAMS = 64


def split_address(addr: str) -> tuple[str, int]:
    """("10.0.0.1", 8300) from "10.0.0.1:8300"; IPv6 hosts come bracketed ("[::1]:8300")."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {addr}: missing port in address")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


@dataclass(slots=True, eq=False)
class _Client:
    """One stream with its codec and net/rpc sequence counter."""

    stream: Stream
    codec: MsgpackCodec
    seq: int = 0


@dataclass(slots=True, eq=False)
class _Conn:
    addr: str
    session: Session
    last_used: float = field(default_factory=time.monotonic)
    refs: int = 0
    should_close: bool = False
    idle: list[_Client] = field(default_factory=list)

    @property
    def broken(self) -> bool:
        return self.session.is_closed or self.session.remote_go_away


class ConnPool:
    """Calls to any number of servers over one yamux session each."""

    def __init__(
        self,
        *,
        max_time: float = CLIENT_MAX_TIME,
        max_streams: int = CLIENT_MAX_STREAMS,
        max_inflight: int = 4096,
        dial_timeout: float = DIAL_TIMEOUT,
        reap_interval: float = 1.0,
        yamux_config: YamuxConfig | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        #: a session unused this long (and with no call under way) is closed; 0 keeps them
        self.max_time = max_time
        #: idle streams kept per session for later calls
        self.max_streams = max_streams
        self.dial_timeout = dial_timeout
        self.reap_interval = reap_interval
        self.yamux_config = yamux_config or YamuxConfig()
        self.log = logger or log
        self._max_inflight = max_inflight
        self._limit: asyncio.Semaphore | None = None
        self._pool: dict[str, _Conn] = {}
        self._dialing: dict[str, asyncio.Future[_Conn]] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._shutdown = False

    # -- public API -------------------------------------------------------------------------

    async def rpc(self, addr: str, method: str, args: Any, timeout: float | None = None) -> Any:
        """Call `method` on the server at `addr` ("host:port") and return its reply.

        `timeout` bounds the whole call, dial included; None leaves it to the server (a
        blocking query may legitimately take MaxQueryTime)."""
        if self._shutdown:
            raise ConnectFailed("rpc error: shutdown")
        limit = self._limit
        if limit is None:
            limit = self._start()
        # one deadline for the whole call; which phase it cut short decides the error
        deadline = _NO_DEADLINE if timeout is None else asyncio.timeout(timeout)
        conn: _Conn | None = None
        client: _Client | None = None
        async with limit:
            try:
                async with deadline:
                    conn, client = await self._get_client(addr)
                    reply = await self._call(client, method, args)
            except RemoteError:
                assert conn is not None and client is not None
                self._return_client(conn, client)
                raise
            except TimeoutError:
                if client is None:
                    raise ConnectFailed(
                        "rpc error getting client: failed to get conn: i/o timeout") from None
                client.stream.reset()
                raise RPCTimeout("rpc error making call: i/o deadline reached") from None
            except (CodecError, YamuxError, EOFError, ConnectionError, OSError) as exc:
                if client is None:
                    raise
                client.stream.reset()
                assert conn is not None
                if conn.broken:
                    self._clear_conn(conn)
                raise CallFailed(f"rpc error making call: {exc}") from None
            except BaseException:
                if client is not None:
                    client.stream.reset()
                raise
            else:
                self._return_client(conn, client)
                return reply
            finally:
                if conn is not None:
                    self._release_conn(conn)

    async def ping(self, addr: str, timeout: float | None = None) -> bool:
        """Status.Ping; True when the server answered (the router's health test)."""
        try:
            await self.rpc(addr, "Status.Ping", {}, timeout)
        except (RemoteError, ConnectFailed, CallFailed):
            return False
        return True

    def has_session(self, addr: str) -> bool:
        conn = self._pool.get(addr)
        return conn is not None and not conn.broken

    def num_sessions(self) -> int:
        return len(self._pool)

    def close_session(self, addr: str) -> None:
        """Forget the session to `addr` (streams under way finish first)."""
        conn = self._pool.get(addr)
        if conn is not None:
            self._clear_conn(conn)

    async def shutdown(self) -> None:
        self._shutdown = True
        if self._reaper is not None:
            self._reaper.cancel()
            try:
                await self._reaper
            except asyncio.CancelledError:
                pass
            self._reaper = None
        for fut in self._dialing.values():
            fut.cancel()
        conns = list(self._pool.values())
        self._pool.clear()
        await asyncio.gather(*(c.session.aclose() for c in conns), return_exceptions=True)

    # -- internals --------------------------------------------------------------------------

    def _start(self) -> asyncio.Semaphore:
        if self._limit is None:
            self._limit = asyncio.Semaphore(self._max_inflight)
        if self._reaper is None and self.max_time > 0:
            self._reaper = asyncio.get_running_loop().create_task(self._reap())
        return self._limit

    async def _call(self, client: _Client, method: str, args: Any) -> Any:
        client.seq += 1
        seq = client.seq
        await client.codec.write_request(method, seq, args)
        _, got_seq, error, body = await client.codec.read_response()
        if got_seq != seq:
            raise CodecError(f"rpc: response sequence {got_seq} does not match request {seq}")
        if error:
            raise RemoteError(error)
        return body

    async def _get_client(self, addr: str) -> tuple[_Conn, _Client]:
        for attempt in (0, 1):
            conn = await self._acquire(addr)
            try:
                while conn.idle:
                    client = conn.idle.pop()
                    if client.stream.state in _REUSABLE:
                        return conn, client
                    client.stream.close()
                stream = await conn.session.open_stream()
            except YamuxError as exc:
                self._clear_conn(conn)
                self._release_conn(conn)
                if attempt == 0:
                    continue  # the session may have died while idle: dial once more
                raise ConnectFailed(
                    f"rpc error getting client: failed to start stream: {exc}") from None
            except BaseException:
                self._release_conn(conn)
                raise
            return conn, _Client(stream, MsgpackCodec(stream))
        raise AssertionError("unreachable")

    async def _acquire(self, addr: str) -> _Conn:
        conn = self._pool.get(addr)
        if conn is not None and not conn.broken:
            return self._mark_used(conn)
        if conn is not None:
            self._clear_conn(conn)
        pending = self._dialing.get(addr)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._dialing[addr] = pending
            try:
                conn = await self._dial(addr)
            except BaseException as exc:
                if not pending.done():
                    pending.set_exception(exc if isinstance(exc, Exception) else ConnectFailed(
                        "rpc error getting client: failed to get conn: dial cancelled"))
                    pending.exception()  # marked retrieved; waiters, if any, still get it
                raise
            finally:
                if self._dialing.get(addr) is pending:
                    del self._dialing[addr]
            self._pool[addr] = conn
            if not pending.done():
                pending.set_result(conn)
            return self._mark_used(conn)
        try:
            conn = await asyncio.shield(pending)
        except asyncio.CancelledError:
            if pending.cancelled():
                raise ConnectFailed("rpc error: shutdown") from None
            raise
        if conn.broken:
            raise ConnectFailed("rpc error getting client: failed to get conn: "
                                "lead thread didn't get connection")
        return self._mark_used(conn)

    async def _dial(self, addr: str) -> _Conn:
        try:
            host, port = split_address(addr)
        except ValueError as exc:
            raise ConnectFailed(f"rpc error getting client: failed to get conn: {exc}") from None
        try:
            async with asyncio.timeout(self.dial_timeout):
                reader, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            raise ConnectFailed(f"rpc error getting client: failed to get conn: dial tcp "
                                f"{addr}: i/o timeout") from None
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise ConnectFailed(f"rpc error getting client: failed to get conn: dial tcp "
                                f"{addr}: connect: {reason}") from None
        try:
            writer.write(bytes((RPCType.MULTIPLEX_V2,)))
        except (ConnectionError, OSError) as exc:
            writer.close()
            raise ConnectFailed(f"rpc error getting client: failed to get conn: {exc}") from None
        session = Session(reader, writer, client=True, config=self.yamux_config,
                          logger=self.log)
        return _Conn(addr, session)

    @staticmethod
    def _mark_used(conn: _Conn) -> _Conn:
        conn.last_used = time.monotonic()
        conn.refs += 1
        return conn

    def _return_client(self, conn: _Conn, client: _Client) -> None:
        stream = client.stream
        if len(conn.idle) < self.max_streams and not conn.should_close and \
                not conn.broken and not stream.is_closed and stream.buffered() == 0:
            stream.shrink()
            conn.idle.append(client)
        else:
            stream.close()

    def _release_conn(self, conn: _Conn) -> None:
        conn.refs -= 1
        if conn.refs <= 0 and conn.should_close:
            self._close_conn(conn)

    def _clear_conn(self, conn: _Conn) -> None:
        conn.should_close = True
        if self._pool.get(conn.addr) is conn:
            del self._pool[conn.addr]
        if conn.refs <= 0:
            self._close_conn(conn)

    def _close_conn(self, conn: _Conn) -> None:
        for client in conn.idle:
            client.stream.close()
        conn.idle.clear()
        conn.session.close()
        self._background(conn.session.aclose())

    def _background(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        task.add_done_callback(_ignore_result)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval)
            now = time.monotonic()
            for addr, conn in list(self._pool.items()):
                if conn.broken:
                    self._clear_conn(conn)
                elif conn.refs <= 0 and now - conn.last_used >= self.max_time:
                    del self._pool[addr]
                    conn.should_close = True
                    self._close_conn(conn)


def _ignore_result(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
