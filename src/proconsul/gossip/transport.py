"""The seam between gossip logic and the network (mirrors hashicorp/memberlist transport.go).

Packets (UDP datagrams) arrive through a callback, not a queue or a task per packet, so one
event loop can carry thousands of gossip nodes; streams (TCP connections, used for push/pull,
TCP pings and reliable user messages) are small reader/writer pairs. `net_transport` puts this on
real sockets, `mock_transport` on an in-memory network for tests and scale simulation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

#: (host, port)
Address = tuple[str, int]

#: on_packet(buf, source address, receive time on the loop's clock)
PacketHandler = Callable[[bytes, Address, float], None]


class Stream(Protocol):
    """One side of a stream connection."""

    @property
    def peer(self) -> Address: ...

    async def read(self, n: int) -> bytes: ...

    async def readexactly(self, n: int) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


StreamHandler = Callable[[Stream], Awaitable[None]]


class Transport(Protocol):
    def advertise(self) -> Address:
        """The address other nodes reach this one at."""
        ...

    def start(self, on_packet: PacketHandler, on_stream: StreamHandler) -> None:
        """Begin delivering packets and accepted streams to the handlers."""
        ...

    def write_to(self, buf: bytes, addr: Address) -> float:
        """Send one packet; returns the send time on the loop's clock (for RTTs)."""
        ...

    async def dial(self, addr: Address, timeout: float) -> Stream:
        """Open a stream to `addr` (OSError or TimeoutError when it cannot)."""
        ...

    async def shutdown(self) -> None: ...


class StreamPair:
    """A `Stream` over an asyncio StreamReader and a writer (a real socket or a mock pipe)."""

    __slots__ = ("_reader", "_writer", "peer")

    def __init__(self, reader: asyncio.StreamReader, writer: _Writer, peer: Address) -> None:
        self._reader = reader
        self._writer = writer
        self.peer = peer

    async def read(self, n: int) -> bytes:
        return await self._reader.read(n)

    async def readexactly(self, n: int) -> bytes:
        return await self._reader.readexactly(n)

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        self._writer.close()


class _Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...
