"""Raft over TCP with hashicorp/raft's NetworkTransport framing (see wire.py).

Outgoing: a pool of idle connections per peer (up to `max_pool`), one RPC at a time on each; a
connection that fails or whose caller gives up mid-RPC is closed, never reused. InstallSnapshot
gets a connection of its own, with a timeout scaled by the snapshot's size. A pipeline holds a
dedicated connection on which AppendEntries requests go out back to back (up to
`max_inflight` unanswered) while a reader task matches answers to requests in order.

Incoming: `handle_connection(reader, writer)` serves one connection, one request after another,
until the peer closes it. A server whose port is shared by several protocols (Consul's server
port reads a first byte, 0x01 for Raft) hands the connection over after that byte; peers then
dial with `connect_prefix=b"\\x01"`. `listen(host, port)` runs a listener of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO, TypeVar

import msgpack

from proconsul.raft import wire
from proconsul.raft.errors import TransportError
from proconsul.raft.transport import (
    AppendEntriesRequest,
    AppendEntriesResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    RequestPreVoteRequest,
    RequestPreVoteResponse,
    RequestVoteRequest,
    RequestVoteResponse,
    RPCHandler,
    TimeoutNowRequest,
    TimeoutNowResponse,
)

__all__ = ["NetPipeline", "NetworkTransport", "split_address"]

log = logging.getLogger("proconsul.raft.net")

R = TypeVar("R")

_READ = 256 << 10
#: bytes of snapshot per `timeout` allowed (hashicorp/raft DefaultTimeoutScale)
TIMEOUT_SCALE = 256 << 10
#: largest message accepted (a batch of entries); snapshot state is streamed, not buffered
MAX_MESSAGE = 64 << 20

_BROKEN = (OSError, EOFError, asyncio.IncompleteReadError, ValueError,
           msgpack.UnpackException, TimeoutError)


def split_address(address: str) -> tuple[str, int]:
    """("host", port) of "host:port" or "[v6]:port"."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise TransportError(f"invalid address: {address}")
    return host.strip("[]"), int(port)


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


class _Stream:
    """Messages and raw bytes read from one connection through one msgpack buffer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._unpacker = msgpack.Unpacker(raw=True, max_buffer_size=MAX_MESSAGE)

    async def _fill(self) -> None:
        data = await self.reader.read(_READ)
        if not data:
            raise EOFError("connection closed")
        self._unpacker.feed(data)

    async def read_byte(self) -> int | None:
        """The next byte, or None at a clean end of stream."""
        while True:
            got: bytes = self._unpacker.read_bytes(1)
            if got:
                return got[0]
            try:
                await self._fill()
            except EOFError:
                return None

    async def read_obj(self) -> Any:
        while True:
            try:
                return self._unpacker.unpack()
            except msgpack.OutOfData:
                await self._fill()

    async def read_raw(self, size: int) -> AsyncIterator[bytes]:
        remaining = size
        while remaining:
            chunk = self._unpacker.read_bytes(min(remaining, _READ))
            if not chunk:
                await self._fill()
                continue
            remaining -= len(chunk)
            yield chunk

    async def read_response(self) -> tuple[str, Any]:
        error = wire.decode_error(await self.read_obj())
        return error, await self.read_obj()

    def send(self, rpc_type: int, body: wire.Wire) -> None:
        self.writer.write(bytes((rpc_type,)) + _pack(body))

    def close(self) -> None:
        self.writer.close()


class NetworkTransport:
    """Transport, WithPreVote and WithPipeline over TCP."""

    def __init__(self, local_addr: str, *, connect_prefix: bytes = b"", max_pool: int = 3,
                 timeout: float = 10.0, max_inflight: int = 8) -> None:
        self._local_addr = local_addr
        self.connect_prefix = connect_prefix
        self.max_pool = max_pool
        self.timeout = timeout
        self.max_inflight = max(max_inflight, 1)
        self._handler: RPCHandler | None = None
        self._pool: dict[str, list[_Stream]] = {}
        self._served: set[asyncio.StreamWriter] = set()
        self._serving: set[asyncio.Task[Any]] = set()
        self._pipelines: set[NetPipeline] = set()
        self._server: asyncio.Server | None = None
        self._closed = False

    def local_addr(self) -> str:
        return self._local_addr

    def set_handler(self, handler: RPCHandler | None) -> None:
        self._handler = handler

    # -- incoming -------------------------------------------------------------------------

    async def listen(self, host: str, port: int) -> int:
        """Accept Raft connections on host:port (0 picks a free port); the port bound."""
        self._server = await asyncio.start_server(self.handle_connection, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def handle_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        """Serve Raft RPCs on an accepted connection until it closes."""
        if self._closed:
            writer.close()
            return
        stream = _Stream(reader, writer)
        self._served.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._serving.add(task)
        try:
            while True:
                rpc_type = await stream.read_byte()
                if rpc_type is None:
                    return
                error, body = await self._serve_one(stream, rpc_type)
                writer.write(_pack(error) + _pack(body))
                await writer.drain()
        except _BROKEN as err:
            log.debug("raft connection closed: peer=%s error=%r",
                      writer.get_extra_info("peername"), err)
        except Exception:
            log.exception("failed to serve a raft request: peer=%s",
                          writer.get_extra_info("peername"))
        finally:
            self._served.discard(writer)
            if task is not None:
                self._serving.discard(task)
            writer.close()

    async def _serve_one(self, stream: _Stream, rpc_type: int) -> tuple[str, Any]:
        raw = await stream.read_obj()
        if not isinstance(raw, dict):
            raise ValueError("request is not a map")
        handler = self._handler
        if rpc_type == wire.RPC_INSTALL_SNAPSHOT:
            req = wire.decode_install_snapshot(raw)
            data = stream.read_raw(req.size)
            if handler is None:
                async for _ in data:
                    pass
                return "transport shutdown", None
            try:
                resp = await handler.handle_install_snapshot(req, data)
            finally:
                async for _ in data:  # what the handler left unread
                    pass
            return "", wire.encode_install_snapshot_response(resp)
        if handler is None:
            return "transport shutdown", None
        if rpc_type == wire.RPC_APPEND_ENTRIES:
            ae = await handler.handle_append_entries(wire.decode_append_entries(raw))
            return "", wire.encode_append_entries_response(ae)
        if rpc_type == wire.RPC_REQUEST_VOTE:
            rv = await handler.handle_request_vote(wire.decode_request_vote(raw))
            return "", wire.encode_request_vote_response(rv)
        if rpc_type == wire.RPC_REQUEST_PRE_VOTE:
            pv = await handler.handle_request_pre_vote(wire.decode_request_pre_vote(raw))
            return "", wire.encode_request_pre_vote_response(pv)
        if rpc_type == wire.RPC_TIMEOUT_NOW:
            tn = await handler.handle_timeout_now(wire.decode_timeout_now(raw))
            return "", wire.encode_timeout_now_response(tn)
        raise ValueError(f"unknown rpc type {rpc_type}")

    # -- outgoing -------------------------------------------------------------------------

    async def _dial(self, target: str) -> _Stream:
        if self._closed:
            raise TransportError("transport shutdown")
        host, port = split_address(target)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=_READ), self.timeout)
        except (OSError, TimeoutError) as err:
            raise TransportError(f"failed to dial {target}: {err!r}") from err
        if self.connect_prefix:
            writer.write(self.connect_prefix)
        return _Stream(reader, writer)

    async def _take(self, target: str) -> _Stream:
        pool = self._pool.get(target)
        while pool:
            stream = pool.pop()
            if not stream.writer.is_closing() and not stream.reader.at_eof():
                return stream
            stream.close()
        return await self._dial(target)

    def _give_back(self, target: str, stream: _Stream) -> None:
        pool = self._pool.setdefault(target, [])
        if self._closed or len(pool) >= self.max_pool:
            stream.close()
        else:
            pool.append(stream)

    async def _rpc(self, target: str, rpc_type: int, body: wire.Wire,
                   decode: Callable[[wire.Raw], R]) -> R:
        stream = await self._take(target)
        try:
            stream.send(rpc_type, body)
            await stream.writer.drain()
            error, raw = await asyncio.wait_for(stream.read_response(), self.timeout)
        except _BROKEN as err:
            stream.close()
            raise TransportError(f"rpc to {target} failed: {err!r}") from err
        except BaseException:
            stream.close()  # cut off mid-RPC: the connection's state is unknown
            raise
        self._give_back(target, stream)
        if error:
            raise TransportError(error)
        try:
            return decode(raw)
        except (ValueError, TypeError, AttributeError) as err:
            raise TransportError(f"bad response from {target}: {err}") from err

    async def append_entries(
        self, server_id: str, target: str, req: AppendEntriesRequest
    ) -> AppendEntriesResponse:
        return await self._rpc(target, wire.RPC_APPEND_ENTRIES,
                               wire.encode_append_entries(req),
                               wire.decode_append_entries_response)

    async def request_vote(
        self, server_id: str, target: str, req: RequestVoteRequest
    ) -> RequestVoteResponse:
        return await self._rpc(target, wire.RPC_REQUEST_VOTE, wire.encode_request_vote(req),
                               wire.decode_request_vote_response)

    async def request_pre_vote(
        self, server_id: str, target: str, req: RequestPreVoteRequest
    ) -> RequestPreVoteResponse:
        return await self._rpc(target, wire.RPC_REQUEST_PRE_VOTE,
                               wire.encode_request_pre_vote(req),
                               wire.decode_request_pre_vote_response)

    async def timeout_now(
        self, server_id: str, target: str, req: TimeoutNowRequest
    ) -> TimeoutNowResponse:
        return await self._rpc(target, wire.RPC_TIMEOUT_NOW, wire.encode_timeout_now(req),
                               wire.decode_timeout_now_response)

    async def install_snapshot(
        self, server_id: str, target: str, req: InstallSnapshotRequest, data: BinaryIO
    ) -> InstallSnapshotResponse:
        stream = await self._dial(target)
        timeout = self.timeout * max(1.0, req.size / TIMEOUT_SCALE)
        try:
            async with asyncio.timeout(timeout):
                stream.send(wire.RPC_INSTALL_SNAPSHOT, wire.encode_install_snapshot(req))
                remaining = req.size
                while remaining:
                    chunk = data.read(min(remaining, _READ))
                    if not chunk:
                        raise EOFError("snapshot shorter than its size")
                    stream.writer.write(chunk)
                    remaining -= len(chunk)
                    await stream.writer.drain()
                error, raw = await stream.read_response()
        except _BROKEN as err:
            raise TransportError(f"install snapshot to {target} failed: {err!r}") from err
        finally:
            stream.close()
        if error:
            raise TransportError(error)
        return wire.decode_install_snapshot_response(raw)

    async def append_entries_pipeline(self, server_id: str, target: str) -> NetPipeline:
        pipeline = NetPipeline(self, target, await self._dial(target))
        self._pipelines.add(pipeline)
        return pipeline

    async def close(self) -> None:
        self._closed = True
        self._handler = None
        if self._server is not None:
            self._server.close()
        for pipeline in list(self._pipelines):
            await pipeline.close()
        for pool in self._pool.values():
            for stream in pool:
                stream.close()
        self._pool.clear()
        for writer in list(self._served):
            writer.close()
        # closed connections end their handlers; let them finish rather than be cut off
        serving = self._serving - {asyncio.current_task()}
        if serving:
            await asyncio.wait(serving, timeout=self.timeout)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


class NetPipeline:
    """AppendEntries back to back on one connection; answers matched in order."""

    def __init__(self, transport: NetworkTransport, target: str, stream: _Stream) -> None:
        self._transport = transport
        self._target = target
        self._stream = stream
        self._waiting: deque[asyncio.Future[AppendEntriesResponse]] = deque()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False
        self._reader = asyncio.ensure_future(self._decode())

    async def append_entries(
        self, req: AppendEntriesRequest
    ) -> asyncio.Future[AppendEntriesResponse]:
        while len(self._waiting) >= self._transport.max_inflight and not self._closed:
            self._room.clear()
            await self._room.wait()
        if self._closed:
            raise TransportError("append pipeline closed")
        future: asyncio.Future[AppendEntriesResponse] = (
            asyncio.get_running_loop().create_future())
        self._waiting.append(future)
        try:
            self._stream.send(wire.RPC_APPEND_ENTRIES, wire.encode_append_entries(req))
            await self._stream.writer.drain()
        except _BROKEN as err:
            self._fail(TransportError(f"pipeline to {self._target} failed: {err!r}"))
            raise TransportError(f"pipeline to {self._target} failed: {err!r}") from err
        return future

    async def _decode(self) -> None:
        timeout = self._transport.timeout
        try:
            while True:
                if not self._waiting:
                    # nothing asked: wait for data or the end without a deadline
                    error, raw = await self._stream.read_response()
                else:
                    error, raw = await asyncio.wait_for(self._stream.read_response(), timeout)
                if not self._waiting:
                    raise ValueError("answer to no request")
                future = self._waiting.popleft()
                self._room.set()
                if future.done():
                    continue
                if error:
                    future.set_exception(TransportError(error))
                    future.exception()  # the sender may have stopped listening
                else:
                    future.set_result(wire.decode_append_entries_response(raw))
        except _BROKEN as err:
            self._fail(TransportError(f"pipeline to {self._target} failed: {err!r}"))

    def _fail(self, err: TransportError) -> None:
        self._closed = True
        self._room.set()
        self._stream.close()
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(err)
                future.exception()  # answers nobody reads any more

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        self._fail(TransportError("append pipeline closed"))
        self._transport._pipelines.discard(self)
