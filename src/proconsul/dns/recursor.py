"""Forwarding of out-of-zone questions to upstream resolvers (Consul's `recursors`).

The client's query is relayed byte for byte and the upstream's reply comes back byte for byte.
A stub resolver library (aiodns/pycares) would parse the reply into records and lose unknown
types, EDNS options and the authority SOA that clients need for negative caching, so this is a
raw relay on asyncio sockets instead.

Each UDP attempt uses its own connected datagram endpoint: the kernel then drops datagrams from
any other source, the ephemeral source port adds entropy against spoofed replies, and concurrent
forwards that reuse a client's transaction ID cannot steal each other's answers. Every attempt is
bounded by `timeout`, and every socket is closed when its attempt ends.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import struct
from collections.abc import Sequence

from proconsul.errors import ConfigError, RecurseError

log = logging.getLogger("proconsul.dns")

DEFAULT_PORT = 53
STRATEGIES = ("sequential", "random")
HEADER_LEN = 12
MAX_MESSAGE = 65535  # the TCP length prefix is 16 bits
_QR = 0x80  # in header byte 2
_TC = 0x02  # in header byte 2
_RCODE = 0x0F  # in header byte 3
_ACCEPTED_RCODES = (0, 3)  # NOERROR, NXDOMAIN: the answer is final; anything else tries the next
_RCODE_NAMES = {1: "FORMERR", 2: "SERVFAIL", 4: "NOTIMP", 5: "REFUSED"}

Addr = tuple[str, int]


def parse_addr(addr: str) -> Addr:
    """`ip`, `ip:port`, `v6`, `[v6]` or `[v6]:port` -> (host, port), port 53 when absent.

    Only IP literals are accepted: resolving a recursor's name would itself need DNS, and
    doing so when the configuration loads would block on the very service being configured.
    """
    text = addr.strip()
    host, port_text, bracketed = text, None, text.startswith("[")
    if bracketed:
        end = text.find("]")
        rest = text[end + 1:] if end > 0 else "?"
        if rest and not rest.startswith(":"):
            raise ConfigError(f"Invalid recursor address: {addr!r}")
        host, port_text = text[1:end], (rest[1:] if rest else None)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"Invalid recursor address: {addr!r} is not an IP address")
    if bracketed and ip.version != 6:
        raise ConfigError(f"Invalid recursor address: {addr!r}")
    if port_text is None:
        return str(ip), DEFAULT_PORT
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) <= 65535:
        raise ConfigError(f"Invalid recursor address: {addr!r} has an invalid port")
    return str(ip), int(port_text)


def _format(addr: Addr) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_reply(data: bytes, txid: bytes) -> bool:
    """A full header, QR set and our transaction ID; anything else is stray or spoofed."""
    return len(data) >= HEADER_LEN and data[:2] == txid and bool(data[2] & _QR)


class _UDPExchange(asyncio.DatagramProtocol):
    """Resolves `reply` with the first valid answer; invalid datagrams are ignored."""

    def __init__(self, txid: bytes, reply: asyncio.Future[bytes]) -> None:
        self._txid = txid
        self._reply = reply

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self._reply.done() and _is_reply(data, self._txid):
            self._reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # on a connected socket this is the peer's ICMP error (port unreachable and the like)
        if not self._reply.done():
            self._reply.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._reply.done():
            self._reply.set_exception(exc or ConnectionError("socket closed"))


class Recursors:
    """The configured upstream resolvers, tried in turn until one gives a usable answer."""

    def __init__(self, addrs: Sequence[str], timeout: float = 2.0,
                 strategy: str = "sequential", rng: random.Random | None = None) -> None:
        if isinstance(addrs, str):  # a str is a Sequence[str] too: one address, not characters
            addrs = [addrs]
        self.addrs: tuple[Addr, ...] = tuple(parse_addr(a) for a in addrs)
        if not timeout > 0:  # also rejects NaN
            raise ConfigError(f"Invalid recursor_timeout: {timeout!r}")
        if strategy not in STRATEGIES:
            raise ConfigError(f"Invalid recursor_strategy: {strategy!r}")
        self.timeout = float(timeout)
        self.strategy = strategy
        self._rng = rng or random.Random()
        self._held: set[asyncio.BaseTransport] = set()
        self._closed = False

    def __bool__(self) -> bool:
        return bool(self.addrs)

    def __repr__(self) -> str:
        addrs = ", ".join(_format(a) for a in self.addrs)
        return f"Recursors([{addrs}], timeout={self.timeout}, strategy={self.strategy!r})"

    def order(self) -> list[Addr]:
        """The recursors in the order this query tries them (reshuffled per query if random)."""
        addrs = list(self.addrs)
        if self.strategy == "random":
            self._rng.shuffle(addrs)
        return addrs

    async def forward(self, request: bytes, tcp: bool) -> bytes | None:
        """Relay `request` and return the first NOERROR/NXDOMAIN reply, or None if all fail.

        `tcp` says the client asked over TCP, so the upstream is asked over TCP as well (its
        answer may be larger than any UDP reply). Network failures never raise.
        """
        if self._closed or not HEADER_LEN <= len(request) <= MAX_MESSAGE:
            return None
        for addr in self.order():
            if self._closed:
                return None
            try:
                reply = await self._attempt(addr, request, tcp)
            except Exception as err:
                log.warning("recurse failed: recursor=%s error=%s", _format(addr), _describe(err))
                continue
            rcode = reply[3] & _RCODE
            if rcode in _ACCEPTED_RCODES:
                return reply
            log.debug("recurse failed for question: recursor=%s rcode=%s",
                      _format(addr), _RCODE_NAMES.get(rcode, str(rcode)))
        if self.addrs and not self._closed:
            log.warning("all resolvers failed for question: recursors=%d", len(self.addrs))
        return None

    async def close(self) -> None:
        """Abort attempts in flight and refuse new ones; their forwards return None."""
        self._closed = True
        for transport in list(self._held):
            transport.close()
        self._held.clear()
        await asyncio.sleep(0)  # let the transports run connection_lost and release the sockets

    async def _attempt(self, addr: Addr, request: bytes, tcp: bool) -> bytes:
        if tcp:
            return await self._tcp(addr, request)
        reply = await self._udp(addr, request)
        if not reply[2] & _TC:
            return reply
        try:
            return await self._tcp(addr, request)
        except Exception as err:
            # the truncated reply is still a valid answer: a UDP client retries it over TCP
            log.debug("recurse over TCP after a truncated reply failed: recursor=%s error=%s",
                      _format(addr), _describe(err))
            return reply

    async def _udp(self, addr: Addr, request: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[bytes] = loop.create_future()
        try:
            async with asyncio.timeout(self.timeout):
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _UDPExchange(request[:2], reply), remote_addr=addr)
                self._held.add(transport)
                try:
                    transport.sendto(request)
                    return await reply
                finally:
                    self._held.discard(transport)
                    transport.close()
        except TimeoutError:
            raise RecurseError(f"read udp {_format(addr)}: i/o timeout after {self.timeout}s")

    async def _tcp(self, addr: Addr, request: bytes) -> bytes:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(*addr)
                self._held.add(writer.transport)
                writer.write(struct.pack("!H", len(request)) + request)
                await writer.drain()
                while True:  # bounded by the timeout; skips messages that are not our reply
                    (size,) = struct.unpack("!H", await reader.readexactly(2))
                    reply = await reader.readexactly(size)
                    if _is_reply(reply, request[:2]):
                        return reply
        except TimeoutError:
            raise RecurseError(f"read tcp {_format(addr)}: i/o timeout after {self.timeout}s")
        finally:
            if writer is not None:
                self._held.discard(writer.transport)
                writer.close()


def _describe(err: BaseException) -> str:
    if isinstance(err, asyncio.IncompleteReadError):
        return "connection closed before a full reply"
    return str(err) or type(err).__name__
