"""Gossip over real sockets (mirrors hashicorp/memberlist net_transport.go).

One UDP socket and one TCP listener on the same port number, as memberlist binds them. Packets
go straight from the datagram protocol to the handler (no queue, no task); accepted
connections become `Stream`s served by one task each.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from proconsul.gossip.transport import (
    Address,
    PacketHandler,
    Stream,
    StreamHandler,
    StreamPair,
)

log = logging.getLogger("proconsul.memberlist")

#: memberlist's receive buffer per packet (udpPacketBufSize)
UDP_PACKET_BUF = 65536
#: socket receive buffer asked for (memberlist tries 2 MiB, then smaller)
UDP_RECV_BUF = 2 << 20


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: NetTransport) -> None:
        self._owner = owner
        self._loop = asyncio.get_running_loop()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        handler = self._owner._on_packet
        if handler is not None and data:
            handler(data, (addr[0], addr[1]), self._loop.time())

    def error_received(self, exc: Exception) -> None:
        log.debug("memberlist: UDP error: %s", exc)


class NetTransport:
    """UDP + TCP on `bind_addr:bind_port` (port 0: a free port, the same for both)."""

    def __init__(self, bind_addr: str, bind_port: int, advertise: Address | None = None) -> None:
        self._bind = (bind_addr, bind_port)
        self._advertise = advertise
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._on_packet: PacketHandler | None = None
        self._on_stream: StreamHandler | None = None
        self._conns: set[asyncio.Task[object]] = set()
        self.port = bind_port

    async def listen(self, attempts: int = 20) -> Address:
        """Bind both sockets; with port 0 retry until one number is free for UDP and TCP."""
        loop = asyncio.get_running_loop()
        host, port = self._bind
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _ in range(attempts if port == 0 else 1):
            udp_sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                udp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECV_BUF)
                udp_sock.bind((host, port))
                bound = udp_sock.getsockname()[1]
                tcp = await asyncio.start_server(self._accept, host, bound, reuse_address=True)
            except OSError:
                udp_sock.close()
                if port:
                    raise
                continue
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), sock=udp_sock)
            self._udp = transport
            self._tcp = tcp
            self.port = bound
            return host, bound
        raise OSError(f"no free port for gossip on {host}")

    def advertise(self) -> Address:
        return self._advertise or (self._bind[0], self.port)

    def start(self, on_packet: PacketHandler, on_stream: StreamHandler) -> None:
        self._on_packet = on_packet
        self._on_stream = on_stream

    def write_to(self, buf: bytes, addr: Address) -> float:
        if self._udp is not None:
            self._udp.sendto(buf, addr)
        return asyncio.get_running_loop().time()

    async def dial(self, addr: Address, timeout: float) -> Stream:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(addr[0], addr[1])
        return StreamPair(reader, writer, addr)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = self._on_stream
        peer = writer.get_extra_info("peername") or ("", 0)
        if handler is None:
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            await handler(StreamPair(reader, writer, (peer[0], peer[1])))
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.debug("memberlist: stream from %s:%d failed: %s", peer[0], peer[1], exc)
        finally:
            self._conns.discard(task)
            writer.close()

    async def shutdown(self) -> None:
        self._on_packet = None
        self._on_stream = None
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._conns):
                task.cancel()
            await self._tcp.wait_closed()
