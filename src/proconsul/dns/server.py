"""The DNS listeners: UDP and TCP sockets in front of the answer cache and the resolver.

A datagram first meets the compiled `Responder`: it parses the query and, when a plan for the
question is cached, renders the answer without leaving C (`drain_udp` reads and answers a batch
per wake-up). Only a miss comes up here: the resolver builds a plan from the catalog view, the
plan is cached under the question, and the answer is rendered from it. Concurrent misses for
one question share a single resolution. When the view reports a change, exactly the cached
plans built from the changed names are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import TYPE_CHECKING, Any, cast

from proconsul.dns import wire
from proconsul.dns.recursor import Recursors
from proconsul.dns.resolver import DNSSettings, Resolution, Resolver
from proconsul.dns.view import CatalogView
from proconsul.errors import ProconsulError
from proconsul.structs.query import QueryOptions

if TYPE_CHECKING:
    from proconsul.config.runtime import RuntimeConfig
    from proconsul.http.backend import CatalogBackend, HealthBackend

log = logging.getLogger("proconsul.dns")

#: a TCP connection that sends nothing for this long is closed
TCP_IDLE_TIMEOUT = 10.0
#: datagrams read per socket wake-up before other work gets the loop
UDP_BUDGET = 256
#: receive buffer asked for UDP listeners (the kernel may grant less)
UDP_RCVBUF = 4 << 20

Addr = Any


class DNSServer:
    """Serves one agent's DNS interface on any number of UDP/TCP listener pairs."""

    def __init__(self, responder: wire.Responder, resolver: Resolver,
                 recursors: Recursors) -> None:
        self.responder = responder
        self.resolver = resolver
        self.recursors = recursors
        self._deps: dict[str, set[bytes]] = {}
        self._pending: dict[bytes, asyncio.Future[Resolution]] = {}
        self._udp: list[socket.socket] = []
        self._tcp: list[asyncio.Server] = []
        self._conns: set[_TCPConnection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.resolved = 0
        self.forwarded = 0
        self.errors = 0

    # -- listeners -----------------------------------------------------------------------------

    async def listen(self, host: str, port: int) -> tuple[int, int]:
        """Bind UDP and TCP on host:port (port 0 picks free ones); returns the bound ports."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
            udp.bind((host, port))
            udp.setblocking(False)
        except OSError:
            udp.close()
            raise
        udp_port = udp.getsockname()[1]
        server = await loop.create_server(lambda: _TCPConnection(self), host,
                                          port or udp_port, reuse_address=True)
        self._udp.append(udp)
        self._tcp.append(server)
        loop.add_reader(udp.fileno(), self._readable, udp)
        return udp_port, server.sockets[0].getsockname()[1]

    def _readable(self, sock: socket.socket) -> None:
        wire.drain_udp(sock, self.responder, lambda q, a: self._udp_miss(sock, q, a),
                       UDP_BUDGET)

    def _udp_miss(self, sock: socket.socket, query: wire.Query, addr: Addr) -> None:
        self._spawn(self._answer_udp(sock, query, addr))

    async def _answer_udp(self, sock: socket.socket, query: wire.Query, addr: Addr) -> None:
        data = await self.answer(query, tcp=False)
        if data:
            try:
                sock.sendto(data, addr)
            except OSError:
                pass  # UDP is lossy: the client retries

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- answering a miss ----------------------------------------------------------------------

    async def answer(self, query: wire.Query, tcp: bool) -> bytes:
        """The response to a question the cache could not answer."""
        try:
            res = await self._resolve(query)
        except ProconsulError as exc:
            # no leader with stale reads off, a failed read: Consul answers SERVFAIL
            self.errors += 1
            log.warning("dns: lookup failed: name=%s error=%s", query.qname, exc)
            return wire.error_response(query, wire.RCODE_SERVFAIL, self.responder.opts)
        if res.plan is not None:
            return self.responder.render(query, res.plan, tcp)
        self.forwarded += 1
        reply = await self.recursors.forward(forward_request(query), tcp)
        if reply is None:
            return wire.error_response(query, wire.RCODE_SERVFAIL, self.responder.opts)
        # the relayed message keeps every upstream byte; only RA is ours to set
        return reply[:3] + bytes((reply[3] | 0x80,)) + reply[4:]

    async def _resolve(self, query: wire.Query) -> Resolution:
        key = query.key
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[Resolution] = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        view = self.resolver.view
        try:
            start = view.version
            res = await self.resolver.resolve(query)
            if (res.plan is not None and res.deps is not None
                    and not view.changed_since(start, res.deps)):
                self._store(query, res.plan, res.deps)
            self.resolved += 1
            fut.set_result(res)
            return res
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            del self._pending[key]

    def _store(self, query: wire.Query, plan: wire.Plan, deps: frozenset[str]) -> None:
        responder = self.responder
        before = len(responder)
        responder.store(query, plan)
        if len(responder) <= before:
            # the responder emptied its full cache: the dependency index restarts with it
            self._deps = {}
        for dep in deps:
            self._deps.setdefault(dep, set()).add(query.key)

    def invalidate(self, deps: set[str]) -> None:
        """Drop every cached plan built from one of `deps` (called by the catalog view)."""
        forget = self.responder.forget
        for dep in deps:
            for key in self._deps.pop(dep, ()):
                forget(key)

    # -- TCP -----------------------------------------------------------------------------------

    def handle_tcp(self, data: bytes, conn: _TCPConnection) -> None:
        out = self.responder.lookup(data, True)
        if isinstance(out, bytes):
            if out:
                conn.send(out)
            return
        self._spawn(self._answer_tcp(out, conn))

    async def _answer_tcp(self, query: wire.Query, conn: _TCPConnection) -> None:
        conn.send(await self.answer(query, tcp=True))

    # -- reload --------------------------------------------------------------------------------

    async def reconfigure(self, cfg: RuntimeConfig) -> None:
        """Apply a reloaded configuration: new answer rules, limits and recursors take effect
        for the next query (listeners stay; Consul does not move them on reload either)."""
        opts, settings, recursors, query_opts = dns_parts(cfg)
        old = self.recursors
        view = self.resolver.view
        view.reset(query_opts)
        self.resolver = Resolver(settings, view, self.resolver.datacenters,
                                 recursors=bool(recursors))
        self.recursors = recursors
        self.responder = wire.Responder(opts)
        self._deps = {}
        await old.close()

    # -- shutdown ------------------------------------------------------------------------------

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._udp:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._udp.clear()
        for server in self._tcp:
            server.close()
        for conn in list(self._conns):
            conn.close()
        for server in self._tcp:
            await server.wait_closed()
        self._tcp.clear()
        for task in list(self._tasks):
            task.cancel()
        await self.resolver.view.close()
        await self.recursors.close()


class _TCPConnection(asyncio.Protocol):
    """Length-prefixed DNS messages on one TCP connection; answers may go out of order."""

    def __init__(self, server: DNSServer) -> None:
        self._server = server
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self._server._conns.add(self)
        self._touch()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(TCP_IDLE_TIMEOUT, self.close)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._touch()
        buf = self._buf
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + size:
                break
            msg = bytes(buf[2:2 + size])
            del buf[:2 + size]
            self._server.handle_tcp(msg, self)

    def send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing() and data:
            self._transport.write(struct.pack("!H", len(data)) + data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._transport = None
        self._server._conns.discard(self)


def forward_request(query: wire.Query) -> bytes:
    """The question re-encoded for a recursor: same ID, opcode, RD/CD bits and EDNS."""
    flags = (query.opcode & 0xF) << 11 | (0x0100 if query.rd else 0) | (0x0010 if query.cd else 0)
    head = struct.pack("!HHHHHH", query.id, flags, 1, 0, 0, 1 if query.edns else 0)
    if not query.edns:
        return head + query.question
    options = b""
    if query.ecs is not None:
        options = struct.pack("!HH", 8, len(query.ecs)) + query.ecs
    opt = b"\x00" + struct.pack("!HHIH", wire.TYPE_OPT, max(query.edns_size, 512),
                                0x8000 if query.edns_do else 0, len(options)) + options
    return head + query.question + opt



def dns_parts(cfg: RuntimeConfig) -> tuple[wire.RenderOptions, DNSSettings, Recursors,
                                           QueryOptions]:
    """What `dns_config`, `recursors`, `domain` and `alt_domain` decide, built afresh at start
    and on every reload."""
    dc = cfg.dns_config
    recursors = Recursors(cfg.recursors, dc.recursor_timeout, dc.recursor_strategy or "sequential")
    opts = wire.RenderOptions(
        udp_answer_limit=dc.udp_answer_limit, enable_truncate=dc.enable_truncate,
        compress=not dc.disable_compression, recursion_available=bool(recursors))
    query_opts = QueryOptions(allow_stale=dc.allow_stale,
                              max_stale=dc.max_stale if dc.allow_stale else 0.0)
    return opts, DNSSettings.from_config(cfg), recursors, query_opts


def build_dns_server(cfg: RuntimeConfig, catalog: CatalogBackend,
                     health: HealthBackend) -> DNSServer:
    """The DNS interface of an agent, wired to its catalog and health endpoints."""
    opts, settings, recursors, query_opts = dns_parts(cfg)
    holder: list[DNSServer] = []
    view = CatalogView(catalog, health, query_opts, lambda deps: holder[0].invalidate(deps))
    try:
        datacenters = catalog.datacenters()
    except ProconsulError:
        # a client agent that has not reached a server yet knows only its own datacenter
        datacenters = [cfg.datacenter]
    resolver = Resolver(settings, view, datacenters, recursors=bool(recursors))
    server = DNSServer(wire.Responder(opts), resolver, recursors)
    holder.append(server)
    return server
