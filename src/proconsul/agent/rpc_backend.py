"""The HTTP layer's backends over RPC: what a client agent hands `build_app`, so the /v1 API it
serves is answered by the servers (Consul's agent/*_endpoint.go calling a.RPC).

Each method makes one call under Consul's method name (server/rpc_endpoints.py answers it) and
decodes the reply into the records the HTTP handlers already render, so a response is the same
whether the endpoint ran in-process or on a server. Blocking queries block on the server: the
call carries MinQueryIndex and MaxQueryTime and waits for its single answer.

Remote errors come back as the exception classes the server raises for the same failure
(rpc/error_kinds.py), so status codes and bodies match as well.

A few Protocol methods are synchronous (status leader and peers, the Raft configuration, the
datacenter lists). Those answer from `ServerView`, the last reply of the server to each such
call, refreshed in the background after every use and on `refresh()`; a failed refresh is
raised to the next caller instead of an old answer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from proconsul.agent.rpc_operator import RPCOperator
from proconsul.errors import RPCError
from proconsul.gossip.serf.coordinate import Coordinate
from proconsul.http.backend import AgentBackend, LocalAgentBackend
from proconsul.http.event import EventBackend
from proconsul.http.operator_keyring import KeyringBackend
from proconsul.rpc.error_kinds import translate
from proconsul.state.catalog import HealthEntry, MetaFilter
from proconsul.state.coordinate import CoordinateEntry, DatacenterMap, coord_to_api
from proconsul.structs import wire as W
from proconsul.structs.catalog import HealthCheck, Node, NodeService
from proconsul.structs.kvs import KVEntry
from proconsul.structs.query import QueryMeta, QueryOptions
from proconsul.structs.session import Session

log = logging.getLogger("proconsul.agent.rpc")

TxnAnswer = tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]

#: how much longer than the blocking wait (plus its 1/16 jitter) a read may take before the
#: client gives up on the server
BLOCKING_GRACE = 10.0
#: the longest a blocking query may ask the server to wait (the servers' max_query_time)
DEFAULT_MAX_QUERY_TIME = 600.0


class Caller(Protocol):
    """ClientRPC's call (rpc/router.py)."""

    async def rpc(self, method: str, args: Any, *, is_read: bool = False,
                  timeout: float | None = None) -> Any: ...


class RPCClient:
    """Calls with the remote errors translated, and a deadline fitted to blocking reads."""

    def __init__(self, caller: Caller, datacenter: str,
                 max_query_time: float = DEFAULT_MAX_QUERY_TIME,
                 default_query_time: float = 300.0) -> None:
        self.caller = caller
        self.datacenter = datacenter
        self.max_query_time = max_query_time
        self.default_query_time = default_query_time

    async def write(self, method: str, args: dict[str, Any]) -> Any:
        args.setdefault("Datacenter", self.datacenter)
        return await self._call(method, args, False, None)

    async def read(self, method: str, args: dict[str, Any],
                   opts: QueryOptions | None = None) -> Any:
        timeout = None
        if opts is not None:
            args.update(W.query_to_wire(opts))
            if opts.min_query_index > 0:
                wait = min(opts.max_query_time or self.default_query_time, self.max_query_time)
                timeout = wait * 17 / 16 + BLOCKING_GRACE
        if not args.get("Datacenter"):
            args["Datacenter"] = self.datacenter
        return await self._call(method, args, True, timeout)

    async def _call(self, method: str, args: dict[str, Any], is_read: bool,
                    timeout: float | None) -> Any:
        try:
            return await self.caller.rpc(method, args, is_read=is_read, timeout=timeout)
        except RPCError as err:
            raise translate(err) from None


def _source(client: RPCClient, near: str, source_ip: str) -> dict[str, Any]:
    return W.source_to_wire(client.datacenter, near, source_ip)


class RPCKVS:
    def __init__(self, client: RPCClient) -> None:
        self.c = client

    async def apply(self, op: str, entry: KVEntry) -> bool:
        return bool(await self.c.write("KVS.Apply", {"Op": op, "DirEnt": W.kv_to_wire(entry)}))

    async def get(self, key: str, opts: QueryOptions) -> tuple[QueryMeta, KVEntry | None]:
        reply = await self.c.read("KVS.Get", {"Key": key}, opts)
        entries = reply.get("Entries") or []
        return W.meta_from_wire(reply), W.kv_from_wire(entries[0]) if entries else None

    async def list_prefix(self, prefix: str, opts: QueryOptions
                          ) -> tuple[QueryMeta, list[KVEntry]]:
        reply = await self.c.read("KVS.List", {"Key": prefix}, opts)
        return W.meta_from_wire(reply), [W.kv_from_wire(e) for e in reply.get("Entries") or ()]

    async def list_keys(self, prefix: str, separator: str, opts: QueryOptions
                        ) -> tuple[QueryMeta, list[str]]:
        reply = await self.c.read("KVS.ListKeys", {"Prefix": prefix, "Seperator": separator},
                                  opts)
        return W.meta_from_wire(reply), [str(k) for k in reply.get("Keys") or ()]


class RPCCatalog:
    def __init__(self, client: RPCClient, view: ServerView) -> None:
        self.c = client
        self.view = view

    async def register(self, body: dict[str, Any]) -> None:
        await self.c.write("Catalog.Register", dict(body))

    async def deregister(self, body: dict[str, Any]) -> None:
        await self.c.write("Catalog.Deregister", dict(body))

    def datacenters(self) -> list[str]:
        return list(self.view.get("Catalog.ListDatacenters"))

    async def nodes(self, node_meta: MetaFilter, opts: QueryOptions, near: str = "",
                    source_ip: str = "") -> tuple[QueryMeta, list[Node]]:
        reply = await self.c.read("Catalog.ListNodes", {
            "NodeMetaFilters": W.meta_filter_to_wire(node_meta),
            "Source": _source(self.c, near, source_ip)}, opts)
        return W.meta_from_wire(reply), [W.node_from_wire(n) for n in reply.get("Nodes") or ()]

    async def services(self, node_meta: MetaFilter, opts: QueryOptions
                       ) -> tuple[QueryMeta, dict[str, list[str]]]:
        reply = await self.c.read("Catalog.ListServices", {
            "NodeMetaFilters": W.meta_filter_to_wire(node_meta)}, opts)
        services = {str(k): [str(t) for t in v or ()]
                    for k, v in (reply.get("Services") or {}).items()}
        return W.meta_from_wire(reply), services

    async def service_nodes(self, name: str, tags: list[str], node_meta: MetaFilter,
                            opts: QueryOptions, near: str = "", source_ip: str = "",
                            ) -> tuple[QueryMeta, list[tuple[Node, NodeService]]]:
        reply = await self.c.read("Catalog.ServiceNodes", {
            "ServiceName": name, "ServiceTags": list(tags), "TagFilter": bool(tags),
            "NodeMetaFilters": W.meta_filter_to_wire(node_meta),
            "Source": _source(self.c, near, source_ip)}, opts)
        return W.meta_from_wire(reply), [
            W.service_node_from_wire(s) for s in reply.get("ServiceNodes") or ()]

    async def node_services(self, node: str, opts: QueryOptions
                            ) -> tuple[QueryMeta, Node | None, list[NodeService]]:
        reply = await self.c.read("Catalog.NodeServices", {"Node": node}, opts)
        found, services = W.node_services_from_wire(reply.get("NodeServices"))
        return W.meta_from_wire(reply), found, services


class RPCHealth:
    def __init__(self, client: RPCClient) -> None:
        self.c = client

    async def _checks(self, method: str, args: dict[str, Any], opts: QueryOptions
                      ) -> tuple[QueryMeta, list[HealthCheck]]:
        reply = await self.c.read(method, args, opts)
        return W.meta_from_wire(reply), [
            W.check_from_wire(c) for c in reply.get("HealthChecks") or ()]

    async def node_checks(self, node: str, opts: QueryOptions
                          ) -> tuple[QueryMeta, list[HealthCheck]]:
        return await self._checks("Health.NodeChecks", {"Node": node}, opts)

    async def service_checks(self, name: str, node_meta: MetaFilter, opts: QueryOptions,
                             near: str = "", source_ip: str = "",
                             ) -> tuple[QueryMeta, list[HealthCheck]]:
        return await self._checks("Health.ServiceChecks", {
            "ServiceName": name, "NodeMetaFilters": W.meta_filter_to_wire(node_meta),
            "Source": _source(self.c, near, source_ip)}, opts)

    async def checks_in_state(self, state: str, node_meta: MetaFilter, opts: QueryOptions,
                              near: str = "", source_ip: str = "",
                              ) -> tuple[QueryMeta, list[HealthCheck]]:
        return await self._checks("Health.ChecksInState", {
            "State": state, "NodeMetaFilters": W.meta_filter_to_wire(node_meta),
            "Source": _source(self.c, near, source_ip)}, opts)

    async def service_nodes(self, name: str, tags: list[str], node_meta: MetaFilter,
                            passing: bool, opts: QueryOptions, connect: bool = False,
                            near: str = "", source_ip: str = "",
                            ) -> tuple[QueryMeta, list[HealthEntry]]:
        reply = await self.c.read("Health.ServiceNodes", {
            "ServiceName": name, "ServiceTags": list(tags), "TagFilter": bool(tags),
            "NodeMetaFilters": W.meta_filter_to_wire(node_meta), "Passing": passing,
            "Connect": connect, "Source": _source(self.c, near, source_ip)}, opts)
        return W.meta_from_wire(reply), [
            W.health_entry_from_wire(e) for e in reply.get("Nodes") or ()]


class RPCSession:
    def __init__(self, client: RPCClient) -> None:
        self.c = client

    async def create(self, sess: Session) -> str:
        return str(await self.c.write("Session.Apply", {
            "Op": "create", "Session": W.session_to_wire(sess)}))

    async def destroy(self, sid: str) -> None:
        await self.c.write("Session.Apply", {"Op": "destroy", "Session": {"ID": sid}})

    async def renew(self, sid: str) -> list[Session]:
        reply = await self.c.write("Session.Renew", {"SessionID": sid})
        return [W.session_from_wire(s) for s in reply.get("Sessions") or ()]

    async def _sessions(self, method: str, args: dict[str, Any], opts: QueryOptions
                        ) -> tuple[QueryMeta, list[Session]]:
        reply = await self.c.read(method, args, opts)
        return W.meta_from_wire(reply), [
            W.session_from_wire(s) for s in reply.get("Sessions") or ()]

    async def get(self, sid: str, opts: QueryOptions) -> tuple[QueryMeta, list[Session]]:
        return await self._sessions("Session.Get", {"SessionID": sid}, opts)

    async def list_all(self, opts: QueryOptions) -> tuple[QueryMeta, list[Session]]:
        return await self._sessions("Session.List", {}, opts)

    async def node_sessions(self, node: str, opts: QueryOptions
                            ) -> tuple[QueryMeta, list[Session]]:
        return await self._sessions("Session.NodeSessions", {"Node": node}, opts)


class RPCTxn:
    def __init__(self, client: RPCClient) -> None:
        self.c = client

    async def apply(self, ops: list[tuple[str, KVEntry]]) -> TxnAnswer:
        reply = await self.c.write("Txn.Apply", {"Ops": W.txn_ops_to_wire(ops)})
        return (W.txn_results_from_wire(reply.get("Results")),
                W.txn_errors_from_wire(reply.get("Errors")))

    async def read(self, ops: list[tuple[str, KVEntry]], opts: QueryOptions
                   ) -> tuple[QueryMeta, TxnAnswer]:
        reply = await self.c.read("Txn.Read", {"Ops": W.txn_ops_to_wire(ops)}, opts)
        return W.meta_from_wire(reply), (W.txn_results_from_wire(reply.get("Results")),
                                         W.txn_errors_from_wire(reply.get("Errors")))


class RPCStatus:
    """Asked of a server on every call, so a leader change shows in the next answer."""

    def __init__(self, client: RPCClient) -> None:
        self.c = client

    async def leader(self) -> str:
        return str(await self.c.read("Status.Leader", {}) or "")

    async def peers(self) -> list[str]:
        return [str(p) for p in await self.c.read("Status.Peers", {}) or ()]


class RPCSnapshot:
    def __init__(self, client: RPCClient) -> None:
        self.c = client

    async def save(self) -> tuple[int, bytes]:
        reply = await self.c.read("Snapshot.Save", {})
        return int(reply.get("Index") or 0), bytes(reply.get("Archive") or b"")

    async def restore(self, archive: bytes) -> int:
        reply = await self.c.write("Snapshot.Restore", {"Archive": archive})
        return int(reply.get("Index") or 0)


class RPCCoordinate:
    def __init__(self, client: RPCClient, view: ServerView, disabled: bool = False) -> None:
        self.c = client
        self.view = view
        self.disabled = disabled

    def list_datacenters(self) -> list[DatacenterMap]:
        return [W.datacenter_map_from_wire(m)
                for m in self.view.get("Coordinate.ListDatacenters") or ()]

    async def list_nodes(self, opts: QueryOptions) -> tuple[QueryMeta, list[CoordinateEntry]]:
        reply = await self.c.read("Coordinate.ListNodes", {}, opts)
        return W.meta_from_wire(reply), [
            W.coordinate_from_wire(e) for e in reply.get("Coordinates") or ()]

    async def node(self, node: str, opts: QueryOptions
                   ) -> tuple[QueryMeta, list[CoordinateEntry]]:
        reply = await self.c.read("Coordinate.Node", {"Node": node}, opts)
        return W.meta_from_wire(reply), [
            W.coordinate_from_wire(e) for e in reply.get("Coordinates") or ()]

    async def update(self, node: str, segment: str, coord: Coordinate | None) -> None:
        await self.c.write("Coordinate.Update", {
            "Node": node, "Segment": segment,
            "Coord": coord_to_api(coord) if coord is not None else None})


@dataclass(slots=True)
class _Answer:
    value: Any = None
    error: BaseException | None = None
    known: bool = False


class ServerView:
    """The last answer of the servers to the argument-less reads the HTTP layer makes
    synchronously. `get` returns it (or raises the error of the last attempt) and starts a
    refresh, so the next caller sees what the servers say by then; nothing is polled while
    nobody asks."""

    METHODS = ("Catalog.ListDatacenters", "Coordinate.ListDatacenters")

    def __init__(self, client: RPCClient) -> None:
        self.c = client
        self._answers: dict[str, _Answer] = {m: _Answer() for m in self.METHODS}
        self._pending: dict[str, asyncio.Task[None]] = {}

    async def refresh(self, *methods: str) -> None:
        """Ask the servers again (every method when none is named) and wait for the answers."""
        await asyncio.gather(*(self._fetch(m) for m in methods or self.METHODS))

    async def _fetch(self, method: str) -> None:
        answer = self._answers[method]
        try:
            value = await self.c.read(method, {})
        except RPCError as err:
            answer.error, answer.known = err, True
        else:
            answer.value, answer.error, answer.known = value, None, True

    def get(self, method: str) -> Any:
        answer = self._answers[method]
        self._refresh_later(method)
        if not answer.known:
            raise RPCError("No known Consul servers")
        if answer.error is not None:
            raise answer.error
        return answer.value

    def _refresh_later(self, method: str) -> None:
        if method in self._pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._fetch(method))
        self._pending[method] = task
        task.add_done_callback(lambda _t: self._pending.pop(method, None))

    async def close(self) -> None:
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class RPCBackend:
    """`http.backend.Backend` for a client agent: the server-side families over RPC, the
    agent's own ones (agent, local services and checks, events, keyring) as given."""

    def __init__(self, caller: Caller, datacenter: str, *, agent: AgentBackend,
                 local: LocalAgentBackend,
                 events: EventBackend, keyring: KeyringBackend,
                 disable_coordinates: bool = False,
                 max_query_time: float = DEFAULT_MAX_QUERY_TIME,
                 default_query_time: float = 300.0) -> None:
        self.client = RPCClient(caller, datacenter, max_query_time, default_query_time)
        self.view = ServerView(self.client)
        self.kvs = RPCKVS(self.client)
        self.catalog = RPCCatalog(self.client, self.view)
        self.health = RPCHealth(self.client)
        self.session = RPCSession(self.client)
        self.txn = RPCTxn(self.client)
        self.status = RPCStatus(self.client)
        self.snapshot = RPCSnapshot(self.client)
        self.coordinate = RPCCoordinate(self.client, self.view, disable_coordinates)
        self.agent = agent
        self.local = local
        self.events = events
        self.keyring = keyring
        self.operator = RPCOperator(self.client)

    async def start(self) -> None:
        """Fill the synchronous views once, before the API serves."""
        await self.view.refresh()

    async def close(self) -> None:
        await self.view.close()

