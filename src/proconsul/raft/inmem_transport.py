"""The in-memory twin of the network transport (hashicorp/raft inmem_transport.go), with the
faults tests need: cut links (one way or both), partitions, dropped and delayed messages.

Every transport of one InmemNetwork runs on the same event loop. A request to an unreachable
peer fails at once, as a refused connection would; a dropped request fails after
`drop_timeout`, as a lost one would; delays apply to requests and answers alike. A pipeline
delivers its requests one after another in order, as one TCP stream would.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, BinaryIO, TypeVar

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

__all__ = ["InmemNetwork", "InmemPipeline", "InmemTransport"]

R = TypeVar("R")

_CHUNK = 64 << 10


class InmemNetwork:
    """The switchboard the in-memory transports are plugged into."""

    def __init__(self, *, seed: int | None = None, rpc_timeout: float = 10.0,
                 drop_timeout: float = 0.05) -> None:
        self.rpc_timeout = rpc_timeout
        self.drop_timeout = drop_timeout
        self._rng = random.Random(seed)
        self._nodes: dict[str, InmemTransport] = {}
        self._cut: set[tuple[str, str]] = set()
        self._delay: dict[tuple[str, str], float] = {}
        self._drop: dict[tuple[str, str], float] = {}
        #: RPCs delivered, by (kind, source, target); tests read it
        self.delivered: Counter[tuple[str, str, str]] = Counter()

    def transport(self, address: str) -> InmemTransport:
        """A transport at `address`, replacing a closed one there (a restarted server)."""
        current = self._nodes.get(address)
        if current is not None and not current.closed:
            raise ValueError(f"address {address} is already in use")
        node = InmemTransport(self, address)
        self._nodes[address] = node
        return node

    # -- faults ----------------------------------------------------------------------------

    def cut(self, src: str, dst: str) -> None:
        """Messages from src to dst are lost (answers included)."""
        self._cut.add((src, dst))

    def disconnect(self, a: str, b: str) -> None:
        self.cut(a, b)
        self.cut(b, a)

    def reconnect(self, a: str, b: str) -> None:
        self._cut.discard((a, b))
        self._cut.discard((b, a))

    def isolate(self, address: str) -> None:
        for other in self._nodes:
            if other != address:
                self.disconnect(address, other)

    def partition(self, *groups: Iterable[str]) -> None:
        """Only servers within the same group reach each other; unlisted ones reach nobody."""
        self.heal()
        side = {addr: n for n, group in enumerate(groups) for addr in group}
        for a in self._nodes:
            for b in self._nodes:
                if a != b and (a not in side or b not in side or side[a] != side[b]):
                    self._cut.add((a, b))

    def heal(self) -> None:
        self._cut.clear()

    def set_delay(self, src: str, dst: str, seconds: float) -> None:
        self._delay[(src, dst)] = seconds

    def set_drop(self, src: str, dst: str, probability: float) -> None:
        self._drop[(src, dst)] = probability

    def clear_faults(self) -> None:
        self._cut.clear()
        self._delay.clear()
        self._drop.clear()

    # -- delivery --------------------------------------------------------------------------

    async def _hop(self, src: str, dst: str) -> None:
        """Carry one message from src to dst, or raise as the network would."""
        delay = self._delay.get((src, dst), 0.0)
        if delay:
            await asyncio.sleep(delay)
        if (src, dst) in self._cut:
            raise TransportError(f"failed to connect to peer: {dst}")
        drop = self._drop.get((src, dst), 0.0)
        if drop and self._rng.random() < drop:
            await asyncio.sleep(self.drop_timeout)
            raise TransportError(f"i/o timeout talking to {dst}")

    async def call(self, src: str, dst: str, kind: str,
                   invoke: Callable[[RPCHandler], Awaitable[R]]) -> R:
        await self._hop(src, dst)
        peer = self._nodes.get(dst)
        handler = peer.handler if peer is not None and not peer.closed else None
        if handler is None:
            raise TransportError(f"failed to connect to peer: {dst}")
        self.delivered[(kind, src, dst)] += 1
        # the handler runs to completion even if this caller gives up, as a server keeps
        # working on a request whose client went away
        task = asyncio.ensure_future(invoke(handler))
        done, _ = await asyncio.wait({task}, timeout=self.rpc_timeout)
        if not done:
            task.add_done_callback(_consume)
            raise TransportError(f"i/o timeout talking to {dst}")
        result = task.result()
        await self._hop(dst, src)
        return result


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), _CHUNK):
        yield data[start:start + _CHUNK]
        await asyncio.sleep(0)


class InmemTransport:
    """Transport, WithPreVote and WithPipeline over an InmemNetwork."""

    def __init__(self, network: InmemNetwork, address: str) -> None:
        self.network = network
        self.address = address
        self.handler: RPCHandler | None = None
        self.closed = False
        self._pipelines: set[InmemPipeline] = set()

    def local_addr(self) -> str:
        return self.address

    def set_handler(self, handler: RPCHandler | None) -> None:
        self.handler = handler

    def _check(self) -> None:
        if self.closed:
            raise TransportError("transport shutdown")

    async def append_entries(
        self, server_id: str, target: str, req: AppendEntriesRequest
    ) -> AppendEntriesResponse:
        self._check()
        return await self.network.call(self.address, target, "AppendEntries",
                                       lambda h: h.handle_append_entries(req))

    async def request_vote(
        self, server_id: str, target: str, req: RequestVoteRequest
    ) -> RequestVoteResponse:
        self._check()
        return await self.network.call(self.address, target, "RequestVote",
                                       lambda h: h.handle_request_vote(req))

    async def request_pre_vote(
        self, server_id: str, target: str, req: RequestPreVoteRequest
    ) -> RequestPreVoteResponse:
        self._check()
        return await self.network.call(self.address, target, "RequestPreVote",
                                       lambda h: h.handle_request_pre_vote(req))

    async def install_snapshot(
        self, server_id: str, target: str, req: InstallSnapshotRequest, data: BinaryIO
    ) -> InstallSnapshotResponse:
        self._check()
        state = data.read(req.size)
        return await self.network.call(self.address, target, "InstallSnapshot",
                                       lambda h: h.handle_install_snapshot(req, _chunks(state)))

    async def timeout_now(
        self, server_id: str, target: str, req: TimeoutNowRequest
    ) -> TimeoutNowResponse:
        self._check()
        return await self.network.call(self.address, target, "TimeoutNow",
                                       lambda h: h.handle_timeout_now(req))

    async def append_entries_pipeline(self, server_id: str, target: str) -> InmemPipeline:
        self._check()
        pipeline = InmemPipeline(self, server_id, target)
        self._pipelines.add(pipeline)
        return pipeline

    async def close(self) -> None:
        self.closed = True
        self.handler = None
        for pipeline in list(self._pipelines):
            await pipeline.close()


class InmemPipeline:
    """Requests queued to one peer, delivered one at a time in order."""

    def __init__(self, transport: InmemTransport, server_id: str, target: str) -> None:
        self._transport = transport
        self._server_id = server_id
        self._target = target
        self._queue: deque[tuple[AppendEntriesRequest,
                                 asyncio.Future[AppendEntriesResponse]]] = deque()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._inflight = 0
        self._max = 128
        self._closed = False
        self._worker = asyncio.ensure_future(self._deliver())

    async def append_entries(
        self, req: AppendEntriesRequest
    ) -> asyncio.Future[AppendEntriesResponse]:
        while self._inflight >= self._max and not self._closed:
            self._room.clear()
            await self._room.wait()
        if self._closed:
            raise TransportError("append pipeline closed")
        future: asyncio.Future[AppendEntriesResponse] = (
            asyncio.get_running_loop().create_future())
        self._inflight += 1
        self._queue.append((req, future))
        self._wake.set()
        return future

    async def _deliver(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while self._queue and not self._closed:
                req, future = self._queue[0]
                try:
                    resp = await self._transport.append_entries(
                        self._server_id, self._target, req)
                except TransportError as err:
                    self._fail(err)
                    return
                self._queue.popleft()
                self._inflight -= 1
                self._room.set()
                if not future.done():
                    future.set_result(resp)

    def _fail(self, err: TransportError) -> None:
        self._closed = True
        self._room.set()
        while self._queue:
            _, future = self._queue.popleft()
            if not future.done():
                future.set_exception(err)
                future.exception()  # a broken pipeline's later answers may go unread

    async def close(self) -> None:
        if self._worker.done():
            self._fail(TransportError("append pipeline closed"))
        else:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._fail(TransportError("append pipeline closed"))
        self._transport._pipelines.discard(self)
