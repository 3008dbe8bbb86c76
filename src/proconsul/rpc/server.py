"""The server RPC port (Consul's agent/consul/rpc.go handleConn and friends).

A connection's first byte says what follows: RPCMultiplexV2 opens a yamux session whose every
stream serves net/rpc calls, RPCConsul serves calls on the bare connection, RPCRaft (and any
other type with a registered handler, such as RPCSnapshot) hands the connection over as it is.
Anything else is logged as Consul logs it and closed.

Calls on one stream or bare connection are served one after another, as net/rpc's ServeRequest
loop does; concurrency comes from the client opening more streams. A handler takes the decoded
arguments and returns the reply; whatever it raises travels back as the response's Error string
(`str(exc)`), which is what Consul clients compare ("No cluster leader").
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from proconsul.errors import ProconsulError
from proconsul.rpc.codec import MsgpackCodec, TCPConn
from proconsul.rpc.errors import CodecError, YamuxError
from proconsul.rpc.types import RPCType
from proconsul.rpc.yamux import Session, Stream, YamuxConfig

#: a registered method: decoded arguments in, reply out (raise to answer with an Error)
Handler = Callable[[Any], Awaitable[Any]]
#: takes over a whole connection after its type byte (the Raft transport's handle_connection)
ConnHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

log = logging.getLogger("proconsul.server.rpc")


def _log_conn(writer: asyncio.StreamWriter) -> str:
    """memberlist.LogConn's `from=host:port`."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"from={peer[0]}:{peer[1]}"
    return "from=<unknown address>"


class RPCServer:
    """Listens on the server RPC port and routes each connection by its first byte."""

    def __init__(
        self,
        *,
        handshake_timeout: float = 5.0,
        max_conns_per_client: int = 100,
        max_streams_per_session: int = 4096,
        yamux_config: YamuxConfig | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        #: rpc_handshake_timeout: how long a new connection may take to send its type byte
        self.handshake_timeout = handshake_timeout
        #: rpc_max_conns_per_client (0: no limit)
        self.max_conns_per_client = max_conns_per_client
        #: calls served at once on one yamux session; past it new streams wait in the backlog
        self.max_streams_per_session = max_streams_per_session
        self.yamux_config = yamux_config or YamuxConfig()
        self.log = logger or log
        self._methods: dict[str, Handler] = {}
        self._services: set[str] = set()
        self._conn_handlers: dict[int, ConnHandler] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sessions: set[Session] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._per_client: Counter[str] = Counter()
        self._closing = False
        self.register("Status.Ping", _status_ping)

    # -- registration -----------------------------------------------------------------------

    def register(self, name: str, handler: Handler) -> None:
        """Serve `Service.Method` with `handler`; registering a name again replaces it."""
        service, dot, method = name.partition(".")
        if not dot or not service or not method:
            raise ValueError(f"rpc: method name must be Service.Method: {name!r}")
        self._methods[name] = handler
        self._services.add(service)

    def unregister(self, name: str) -> None:
        self._methods.pop(name, None)
        self._services = {n.partition(".")[0] for n in self._methods}

    def methods(self) -> list[str]:
        return sorted(self._methods)

    def register_conn_handler(self, rpc_type: int, handler: ConnHandler) -> None:
        """Hand connections opening with `rpc_type` to `handler` (reader, writer), which then
        owns them; bytes the peer sent after the type byte are still in the reader."""
        if rpc_type in (RPCType.CONSUL, RPCType.MULTIPLEX_V2):
            raise ValueError("RPCConsul and RPCMultiplexV2 are served by the RPC server itself")
        self._conn_handlers[int(rpc_type)] = handler

    def set_raft_handler(self, handler: ConnHandler) -> None:
        self.register_conn_handler(RPCType.RAFT, handler)

    # -- calls ------------------------------------------------------------------------------

    async def dispatch(self, method: str, args: Any) -> tuple[Any, str]:
        """(reply, error string) of one call, with net/rpc's texts for unknown names."""
        handler = self._methods.get(method)
        if handler is None:
            service, dot, _ = method.rpartition(".")
            if not dot:
                return None, f"rpc: service/method request ill-formed: {method}"
            if service not in self._services:
                return None, f"rpc: can't find service {method}"
            return None, f"rpc: can't find method {method}"
        try:
            return await handler(args), ""
        except asyncio.CancelledError:
            raise
        except ProconsulError as exc:
            return None, str(exc) or type(exc).__name__
        except Exception as exc:
            self.log.error("RPC handler failed: method=%s error=%s", method, exc, exc_info=True)
            return None, str(exc) or type(exc).__name__

    async def serve_codec(self, codec: MsgpackCodec, conn_desc: str) -> None:
        """Serve calls on one stream or bare connection until the peer closes it."""
        while not self._closing:
            try:
                method, seq = await codec.read_request_header()
                args = await codec.read_object()
            except EOFError:
                return
            except (CodecError, YamuxError, ConnectionError, OSError) as exc:
                if "closed" not in str(exc) and str(exc) != "EOF":
                    self.log.error("RPC error: conn=%s error=%s", conn_desc, exc)
                return
            reply, error = await self.dispatch(method, args)
            try:
                await codec.write_response(method, seq, error, reply)
            except (YamuxError, ConnectionError, OSError):
                return
            except (TypeError, ValueError) as exc:
                # the reply could not be encoded: answer with the reason instead
                self.log.error("RPC error: conn=%s error=rpc: cannot encode reply of %s: %s",
                               conn_desc, method, exc)
                try:
                    await codec.write_response(method, seq, f"rpc: cannot encode reply: {exc}",
                                               None)
                except (YamuxError, ConnectionError, OSError):
                    return

    # -- listening --------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        self._closing = False
        self._server = await asyncio.start_server(self._accept, host, port)

    @property
    def address(self) -> tuple[str, int]:
        """The host and port actually bound (port 0 asks the OS for a free one)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("RPC server is not listening")
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    def num_sessions(self) -> int:
        """Yamux sessions open now (one per connected client pool)."""
        return len(self._sessions)

    async def stop(self) -> None:
        """Stop listening and end every connection, session and call under way."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            session.close()
        for writer in list(self._writers):
            writer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The connection is served by a task of our own: stop() cancels that one, and this
        # callback task (which asyncio's start_server expects to end without being cancelled)
        # just returns.
        peer = writer.get_extra_info("peername")
        client_ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if self.max_conns_per_client > 0 and \
                self._per_client[client_ip] >= self.max_conns_per_client:
            self.log.error("rejecting RPC conn from because rpc_max_conns_per_client exceeded: "
                           "conn=%s", _log_conn(writer))
            writer.close()
            return
        self._per_client[client_ip] += 1
        self._writers.add(writer)
        task = self._spawn(self.handle_connection(reader, writer))
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        finally:
            self._writers.discard(writer)
            self._per_client[client_ip] -= 1
            if self._per_client[client_ip] <= 0:
                del self._per_client[client_ip]

    async def handle_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        """Route one accepted connection by its first byte and serve it to the end."""
        desc = _log_conn(writer)
        try:
            if self.handshake_timeout > 0:
                async with asyncio.timeout(self.handshake_timeout):
                    first = await reader.read(1)
            else:
                first = await reader.read(1)
        except TimeoutError:
            self.log.error("failed to read byte: conn=%s error=i/o timeout", desc)
            writer.close()
            return
        except (ConnectionError, OSError) as exc:
            self.log.error("failed to read byte: conn=%s error=%s", desc, exc)
            writer.close()
            return
        if not first:
            writer.close()
            return
        typ = first[0]
        if typ == RPCType.CONSUL:
            try:
                await self.serve_codec(MsgpackCodec(TCPConn(reader, writer)), desc)
            finally:
                writer.close()
        elif typ == RPCType.MULTIPLEX_V2:
            await self._serve_multiplex(reader, writer, desc)
        elif typ in self._conn_handlers:
            self._writers.discard(writer)
            await self._conn_handlers[typ](reader, writer)
        else:
            self.log.error("unrecognized RPC byte: byte=%d conn=%s", typ, desc)
            writer.close()

    async def _serve_multiplex(self, reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter, desc: str) -> None:
        session = Session(reader, writer, client=False, config=self.yamux_config,
                          logger=logging.getLogger("proconsul.server"))
        self._sessions.add(session)
        slots = asyncio.Semaphore(self.max_streams_per_session)
        try:
            while True:
                await slots.acquire()
                try:
                    stream = await session.accept_stream()
                except YamuxError as exc:
                    slots.release()
                    if str(exc) not in ("EOF", "session shutdown") and not self._closing:
                        self.log.error("multiplex conn accept failed: conn=%s error=%s",
                                       desc, exc)
                    return
                task = self._spawn(self._serve_stream(stream, desc))
                task.add_done_callback(lambda _t: slots.release())
        finally:
            self._sessions.discard(session)
            await session.aclose()

    async def _serve_stream(self, stream: Stream, desc: str) -> None:
        try:
            try:
                first = await stream.read()
            except YamuxError as exc:
                self.log.error("Problem peeking connection: conn=%s err=%s", desc, exc)
                return
            if not first:
                return
            if first[0] == RPCType.GOSSIP:
                self.log.error("unrecognized RPC byte: byte=%d conn=%s", RPCType.GOSSIP, desc)
                return
            await self.serve_codec(MsgpackCodec(stream, initial=first), desc)
        finally:
            if not stream.is_closed:
                stream.close()


async def _status_ping(_args: Any) -> Any:
    """Status.Ping: answers nothing, proves the server is serving (the router's health test)."""
    return {}
