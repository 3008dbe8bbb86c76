"""Both gossip transports deliver packets to the handler with a receive time, and streams both
ways; the mock network also partitions and drops."""

from __future__ import annotations

import asyncio

import pytest

from proconsul.gossip.mock_transport import MockNetwork
from proconsul.gossip.net_transport import NetTransport
from proconsul.gossip.transport import Address, Stream, Transport


async def exchange(a: Transport, b: Transport) -> None:
    got: list[tuple[bytes, Address]] = []
    arrived = asyncio.Event()

    def on_packet(buf: bytes, src: Address, when: float) -> None:
        assert when > 0
        got.append((buf, src))
        arrived.set()

    async def on_stream(stream: Stream) -> None:
        head = await stream.readexactly(4)
        stream.write(head[::-1] + b"|" + stream.peer[0].encode())
        await stream.drain()
        stream.close()

    async def ignore_stream(stream: Stream) -> None:
        stream.close()

    a.start(lambda buf, src, when: None, ignore_stream)
    b.start(on_packet, on_stream)
    sent = a.write_to(b"ping", b.advertise())
    assert sent > 0
    await asyncio.wait_for(arrived.wait(), 2)
    assert got == [(b"ping", a.advertise())] or got[0][0] == b"ping"
    stream = await a.dial(b.advertise(), 2)
    stream.write(b"abcd")
    await stream.drain()
    reply = await asyncio.wait_for(stream.read(100), 2)
    assert reply.startswith(b"dcba|127.0.0.1")
    stream.close()


def test_net_transport_packets_and_streams() -> None:
    async def main() -> None:
        a, b = NetTransport("127.0.0.1", 0), NetTransport("127.0.0.1", 0)
        await a.listen()
        await b.listen()
        try:
            assert a.advertise()[1] == a.port and a.port != b.port
            await exchange(a, b)
        finally:
            await a.shutdown()
            await b.shutdown()

    asyncio.run(main())


def test_net_transport_dial_refused() -> None:
    async def main() -> None:
        a = NetTransport("127.0.0.1", 0)
        await a.listen()
        b = NetTransport("127.0.0.1", 0)
        port = (await b.listen())[1]
        await b.shutdown()
        try:
            with pytest.raises(OSError):
                await a.dial(("127.0.0.1", port), 1)
        finally:
            await a.shutdown()

    asyncio.run(main())


def test_mock_network_packets_streams_partition_and_drops() -> None:
    async def main() -> None:
        net = MockNetwork(seed=1)
        a, b = net.new_transport(), net.new_transport()
        await exchange(a, b)
        net.partition(b.advertise())
        with pytest.raises(ConnectionRefusedError):
            await a.dial(b.advertise(), 1)
        before = net.packets
        a.write_to(b"lost", b.advertise())
        await asyncio.sleep(0)
        assert net.packets == before
        net.partition(b.advertise(), cut=False)
        net.drop_rate = 1.0
        a.write_to(b"dropped", b.advertise())
        await asyncio.sleep(0)
        assert net.packets == before
        await b.shutdown()
        with pytest.raises(ConnectionRefusedError):
            await a.dial(b.advertise(), 1)

    asyncio.run(main())
