"""A real single-voter server answering on a real RPC port, and the /v1 API built twice over
it: on the server's endpoint objects (as a server agent serves it) and on the RPC backend (as
a client agent serves it)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from proconsul.agent.rpc_backend import RPCBackend
from proconsul.http.api import build_app
from proconsul.http.app import APIApp
from proconsul.http.request import Request, Response
from proconsul.rpc.pool import ConnPool
from proconsul.rpc.router import ClientRPC, ServerInfo, ServerManager
from proconsul.rpc.server import RPCServer
from proconsul.server.fsm import FSM
from proconsul.server.operator_endpoint import OperatorEndpoint
from proconsul.server.rpc_endpoints import register_endpoints
from proconsul.server.server import Server
from proconsul.state.autopilot import AutopilotConfig
from tests.raft.cluster_support import single_voter

NODE = "agent1"
NODE_ID = "7f3a0c1e-5b2d-4c6e-9a8b-0d1e2f3a4b5c"


class CountingCaller:
    """ClientRPC with a tally of the methods called (to tell one blocking call from polling)."""

    def __init__(self, inner: ClientRPC) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    async def rpc(self, method: str, args: Any, *, is_read: bool = False,
                  timeout: float | None = None) -> Any:
        self.calls[method] += 1
        return await self.inner.rpc(method, args, is_read=is_read, timeout=timeout)


class LocalOnly:
    """The agent-side families (agent, local services, events, keyring) that do not go to the
    servers; the tests here never route to them, so every use is a failure."""

    node_name = NODE
    datacenter = "dc1"

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"agent-local backend used: {name}")


class DirectBackend:
    """The server's endpoint objects, as agent.agent.Backend wires them."""

    def __init__(self, srv: Server, local: Any) -> None:
        self.kvs = srv.kvs
        self.catalog = srv.catalog
        self.health = srv.health
        self.session = srv.session
        self.txn = srv.txn
        self.status = srv
        self.snapshot = srv.snapshot
        self.coordinate = srv.coordinate
        self.agent = local
        self.local = local
        self.events = local
        self.keyring = local
        assert srv.operator is not None
        self.operator = srv.operator


def make_request(method: str, target: str, body: Any = None,
                 headers: dict[str, str] | None = None) -> Request:
    path, _, qs = target.partition("?")
    raw = body if isinstance(body, bytes) else (
        b"" if body is None else json.dumps(body).encode())
    return Request(method, path, target, parse_qs(qs, keep_blank_values=True),
                   headers or {}, raw, ("127.0.0.1", 50000))


@dataclass
class Site:
    """One server with its RPC port, and the two API applications over it."""

    server: Server
    rpc_server: RPCServer
    direct: APIApp
    remote: APIApp
    backend: RPCBackend
    caller: CountingCaller
    pool: ConnPool

    async def call(self, app: APIApp, method: str, target: str, body: Any = None) -> Response:
        return await app.handle(make_request(method, target, body))


def new_app() -> APIApp:
    return APIApp(datacenter="dc1")


@asynccontextmanager
async def site(hold_timeout: float = 7.0, max_query_time: float = 600.0
               ) -> AsyncIterator[Site]:
    raft = await single_voter(FSM(), NODE_ID)
    srv = Server(raft, NODE, NODE_ID, "dc1", "127.0.0.1", coordinate_update_period=3600.0,
                 max_query_time=max_query_time)
    await srv.start()
    srv.operator = OperatorEndpoint(srv, raft, None, AutopilotConfig())
    rpc_server = RPCServer()
    register_endpoints(rpc_server, srv)
    await rpc_server.start("127.0.0.1", 0)
    host, port = rpc_server.address
    pool = ConnPool()
    manager = ServerManager()
    manager.add_server(ServerInfo(name=NODE, id=NODE_ID, datacenter="dc1",
                                  addr=f"{host}:{port}", port=port))
    caller = CountingCaller(ClientRPC(pool, manager, hold_timeout=hold_timeout))
    local = LocalOnly()
    backend = RPCBackend(caller, "dc1", agent=local, local=local, events=local,
                         keyring=local, max_query_time=max_query_time)
    await backend.start()
    direct = build_app(DirectBackend(srv, local), new_app())
    remote = build_app(backend, new_app())
    try:
        yield Site(srv, rpc_server, direct, remote, backend, caller, pool)
    finally:
        await backend.close()
        await pool.shutdown()
        await rpc_server.stop()
        await srv.stop()
        await raft.shutdown()


def run(coro: Any) -> None:
    asyncio.run(coro)


def header(resp: Response, name: str) -> str | None:
    return next((v for k, v in resp.headers if k.lower() == name.lower()), None)


def body_of(resp: Response) -> Any:
    return json.loads(resp.body)
