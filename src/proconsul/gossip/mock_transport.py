"""An in-memory network of gossip transports (mirrors hashicorp/memberlist mock_transport.go).

Every transport gets a fake address on one `MockNetwork`; packets are delivered on the next loop
iteration and streams are in-memory pipes. Tests use it to run many nodes deterministically in one
process, and can cut a node off (`partition`) or drop a share of packets to exercise failure
detection without touching real sockets.
"""

from __future__ import annotations

import asyncio
import random

from proconsul.gossip.transport import (
    Address,
    PacketHandler,
    Stream,
    StreamHandler,
    StreamPair,
)


class MockNetwork:
    def __init__(self, drop_rate: float = 0.0, seed: int | None = None) -> None:
        self._transports: dict[Address, MockTransport] = {}
        self._next_port = 20000
        self._cut: set[Address] = set()
        self.drop_rate = drop_rate
        self._rng = random.Random(seed)
        self.packets = 0

    def new_transport(self, host: str = "127.0.0.1") -> MockTransport:
        self._next_port += 1
        transport = MockTransport(self, (host, self._next_port))
        self._transports[transport.advertise()] = transport
        return transport

    def partition(self, addr: Address, cut: bool = True) -> None:
        """Make `addr` unreachable (both ways) or reachable again."""
        if cut:
            self._cut.add(addr)
        else:
            self._cut.discard(addr)

    def _reachable(self, src: Address, dst: Address) -> MockTransport | None:
        if src in self._cut or dst in self._cut:
            return None
        target = self._transports.get(dst)
        if target is None or target._on_packet is None:
            return None
        return target

    def _deliver(self, src: Address, dst: Address, buf: bytes) -> None:
        target = self._reachable(src, dst)
        if target is None or (self.drop_rate and self._rng.random() < self.drop_rate):
            return
        self.packets += 1
        loop = asyncio.get_running_loop()
        handler = target._on_packet
        assert handler is not None
        loop.call_soon(handler, buf, src, loop.time())

    def _remove(self, addr: Address) -> None:
        self._transports.pop(addr, None)


class _Pipe:
    """The writing end of an in-memory stream: bytes land in the peer's reader."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._closed = False

    def write(self, data: bytes) -> None:
        if not self._closed:
            self._reader.feed_data(data)

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._reader.feed_eof()


class MockTransport:
    def __init__(self, network: MockNetwork, addr: Address) -> None:
        self._net = network
        self._addr = addr
        self._on_packet: PacketHandler | None = None
        self._on_stream: StreamHandler | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def advertise(self) -> Address:
        return self._addr

    def start(self, on_packet: PacketHandler, on_stream: StreamHandler) -> None:
        self._on_packet = on_packet
        self._on_stream = on_stream

    def write_to(self, buf: bytes, addr: Address) -> float:
        self._net._deliver(self._addr, addr, buf)
        return asyncio.get_running_loop().time()

    async def dial(self, addr: Address, timeout: float) -> Stream:
        target = self._net._reachable(self._addr, addr)
        if target is None or target._on_stream is None:
            await asyncio.sleep(0)
            raise ConnectionRefusedError(f"dial tcp {addr[0]}:{addr[1]}: connection refused")
        ours, theirs = asyncio.StreamReader(), asyncio.StreamReader()
        local = StreamPair(ours, _Pipe(theirs), addr)
        remote = StreamPair(theirs, _Pipe(ours), self._addr)
        task = asyncio.ensure_future(target._on_stream(remote))
        target._tasks.add(task)
        task.add_done_callback(target._tasks.discard)
        return local

    async def shutdown(self) -> None:
        self._on_packet = None
        self._on_stream = None
        self._net._remove(self._addr)
        for task in list(self._tasks):
            task.cancel()
