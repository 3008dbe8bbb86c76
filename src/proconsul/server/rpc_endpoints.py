"""The server's endpoints on the RPC port, under Consul's method names (KVS.Get, Catalog.Register,
Health.ServiceNodes, ...), so a client agent serves the same HTTP API through a server.

Each handler decodes a request map shaped as Consul's request struct (structs.KeyRequest,
structs.DCSpecificRequest, ...: QueryOptions flattened in, durations in nanoseconds), calls the
same endpoint object the local HTTP layer calls, and encodes the answer as Consul's reply struct
with QueryMeta flattened in (structs.IndexedDirEntries, structs.IndexedNodes, ...). Blocking
queries block here, on the server, exactly as they do for a local read; the client makes one
call per HTTP request. Errors travel as their text (see rpc/error_kinds.py for the way back).

Methods that are not Consul's: `Health.ServiceNodes` takes a `Passing` flag, because this
server applies `?passing` inside the blocking query (a Go client filtering on its side gets
the same answer), and `Snapshot.Save`/`Snapshot.Restore` carry the archive in one msgpack
object instead of Consul's dedicated snapshot stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from proconsul.errors import RPCError
from proconsul.server.autopilot import stats_reply
from proconsul.state.autopilot import AutopilotConfig
from proconsul.state.coordinate import coord_from_wire
from proconsul.structs import wire as W

if TYPE_CHECKING:
    from proconsul.rpc.server import RPCServer
    from proconsul.server.operator_endpoint import OperatorEndpoint
    from proconsul.server.server import Server

Args = Mapping[str, Any]
Method = Callable[[Args], Awaitable[Any]]


def _args(raw: Any) -> Args:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise RPCError(f"rpc: request body is a {type(raw).__name__}, not a map")
    return raw


def _str(args: Args, name: str) -> str:
    value = args.get(name)
    return value if isinstance(value, str) else ""


class RPCEndpoints:
    """The handlers of one server; `register` puts them on an RPCServer."""

    def __init__(self, server: Server) -> None:
        self.srv = server

    def methods(self) -> dict[str, Method]:
        return {
            "KVS.Apply": self.kvs_apply,
            "KVS.Get": self.kvs_get,
            "KVS.List": self.kvs_list,
            "KVS.ListKeys": self.kvs_list_keys,
            "Catalog.Register": self.catalog_register,
            "Catalog.Deregister": self.catalog_deregister,
            "Catalog.ListDatacenters": self.catalog_list_datacenters,
            "Catalog.ListNodes": self.catalog_list_nodes,
            "Catalog.ListServices": self.catalog_list_services,
            "Catalog.ServiceNodes": self.catalog_service_nodes,
            "Catalog.NodeServices": self.catalog_node_services,
            "Health.NodeChecks": self.health_node_checks,
            "Health.ServiceChecks": self.health_service_checks,
            "Health.ChecksInState": self.health_checks_in_state,
            "Health.ServiceNodes": self.health_service_nodes,
            "Session.Apply": self.session_apply,
            "Session.Get": self.session_get,
            "Session.List": self.session_list,
            "Session.NodeSessions": self.session_node_sessions,
            "Session.Renew": self.session_renew,
            "Txn.Apply": self.txn_apply,
            "Txn.Read": self.txn_read,
            "Status.Leader": self.status_leader,
            "Status.Peers": self.status_peers,
            "Status.RaftStats": self.status_raft_stats,
            "Operator.RaftGetConfiguration": self.raft_configuration,
            "Operator.RaftRemovePeerByID": self.raft_remove_peer,
            "Operator.RaftRemovePeerByAddress": self.raft_remove_peer,
            "Operator.RaftTransferLeader": self.raft_transfer_leader,
            "Operator.AutopilotGetConfiguration": self.autopilot_get_configuration,
            "Operator.AutopilotSetConfiguration": self.autopilot_set_configuration,
            "Operator.ServerHealth": self.server_health,
            "Operator.AutopilotState": self.autopilot_state,
            "Coordinate.Update": self.coordinate_update,
            "Coordinate.ListDatacenters": self.coordinate_list_datacenters,
            "Coordinate.ListNodes": self.coordinate_list_nodes,
            "Coordinate.Node": self.coordinate_node,
            "Snapshot.Save": self.snapshot_save,
            "Snapshot.Restore": self.snapshot_restore,
        }

    def register(self, rpc: RPCServer) -> None:
        for name, method in self.methods().items():
            rpc.register(name, _wrap(method))

    # -- helpers ------------------------------------------------------------------------------

    def _write_dc(self, args: Args) -> None:
        """Writes name their datacenter too; another one needs a WAN path this server lacks."""
        dc = _str(args, "Datacenter")
        if dc and dc != self.srv.datacenter:
            raise RPCError("No path to datacenter")

    @staticmethod
    def _reply(meta: Any, **fields: Any) -> dict[str, Any]:
        return {**fields, **W.meta_to_wire(meta)}

    # -- KVS ----------------------------------------------------------------------------------

    async def kvs_apply(self, args: Args) -> bool:
        self._write_dc(args)
        entry = W.kv_from_wire(args.get("DirEnt") or {"Key": ""})
        return await self.srv.kvs.apply(_str(args, "Op"), entry)

    async def kvs_get(self, args: Args) -> dict[str, Any]:
        meta, entry = await self.srv.kvs.get(_str(args, "Key"), W.query_from_wire(args))
        entries = [W.kv_to_wire(entry)] if entry is not None else None
        return self._reply(meta, Entries=entries)

    async def kvs_list(self, args: Args) -> dict[str, Any]:
        meta, entries = await self.srv.kvs.list_prefix(_str(args, "Key"),
                                                       W.query_from_wire(args))
        return self._reply(meta, Entries=[W.kv_to_wire(e) for e in entries] or None)

    async def kvs_list_keys(self, args: Args) -> dict[str, Any]:
        meta, keys = await self.srv.kvs.list_keys(
            _str(args, "Prefix"), _str(args, "Seperator"), W.query_from_wire(args))
        return self._reply(meta, Keys=list(keys))

    # -- Catalog ------------------------------------------------------------------------------

    async def catalog_register(self, args: Args) -> dict[str, Any]:
        self._write_dc(args)
        await self.srv.catalog.register(dict(args))
        return {}

    async def catalog_deregister(self, args: Args) -> dict[str, Any]:
        self._write_dc(args)
        await self.srv.catalog.deregister(dict(args))
        return {}

    async def catalog_list_datacenters(self, args: Args) -> list[str]:
        return self.srv.catalog.datacenters()

    async def catalog_list_nodes(self, args: Args) -> dict[str, Any]:
        near, source_ip = W.source_from_wire(args.get("Source"))
        meta, nodes = await self.srv.catalog.nodes(
            W.meta_filter_from_wire(args.get("NodeMetaFilters")), W.query_from_wire(args),
            near=near, source_ip=source_ip)
        return self._reply(meta, Nodes=[W.node_to_wire(n) for n in nodes])

    async def catalog_list_services(self, args: Args) -> dict[str, Any]:
        meta, services = await self.srv.catalog.services(
            W.meta_filter_from_wire(args.get("NodeMetaFilters")), W.query_from_wire(args))
        return self._reply(meta, Services={k: list(v) for k, v in services.items()})

    async def catalog_service_nodes(self, args: Args) -> dict[str, Any]:
        near, source_ip = W.source_from_wire(args.get("Source"))
        meta, pairs = await self.srv.catalog.service_nodes(
            _str(args, "ServiceName"), _tags(args),
            W.meta_filter_from_wire(args.get("NodeMetaFilters")), W.query_from_wire(args),
            near=near, source_ip=source_ip)
        return self._reply(meta, ServiceNodes=[W.service_node_to_wire(n, s) for n, s in pairs])

    async def catalog_node_services(self, args: Args) -> dict[str, Any]:
        meta, node, services = await self.srv.catalog.node_services(
            _str(args, "Node"), W.query_from_wire(args))
        return self._reply(meta, NodeServices=W.node_services_to_wire(node, services))

    # -- Health -------------------------------------------------------------------------------

    async def health_node_checks(self, args: Args) -> dict[str, Any]:
        meta, checks = await self.srv.health.node_checks(_str(args, "Node"),
                                                         W.query_from_wire(args))
        return self._reply(meta, HealthChecks=[W.check_to_wire(c) for c in checks])

    async def health_service_checks(self, args: Args) -> dict[str, Any]:
        near, source_ip = W.source_from_wire(args.get("Source"))
        meta, checks = await self.srv.health.service_checks(
            _str(args, "ServiceName"), W.meta_filter_from_wire(args.get("NodeMetaFilters")),
            W.query_from_wire(args), near=near, source_ip=source_ip)
        return self._reply(meta, HealthChecks=[W.check_to_wire(c) for c in checks])

    async def health_checks_in_state(self, args: Args) -> dict[str, Any]:
        near, source_ip = W.source_from_wire(args.get("Source"))
        meta, checks = await self.srv.health.checks_in_state(
            _str(args, "State"), W.meta_filter_from_wire(args.get("NodeMetaFilters")),
            W.query_from_wire(args), near=near, source_ip=source_ip)
        return self._reply(meta, HealthChecks=[W.check_to_wire(c) for c in checks])

    async def health_service_nodes(self, args: Args) -> dict[str, Any]:
        near, source_ip = W.source_from_wire(args.get("Source"))
        meta, entries = await self.srv.health.service_nodes(
            _str(args, "ServiceName"), _tags(args),
            W.meta_filter_from_wire(args.get("NodeMetaFilters")), bool(args.get("Passing")),
            W.query_from_wire(args), connect=bool(args.get("Connect")), near=near,
            source_ip=source_ip)
        return self._reply(meta, Nodes=[W.health_entry_to_wire(e) for e in entries])

    # -- Session ------------------------------------------------------------------------------

    async def session_apply(self, args: Args) -> str:
        self._write_dc(args)
        op = _str(args, "Op")
        body = args.get("Session") or {}
        if op == "create":
            return await self.srv.session.create(W.session_from_wire({"ID": "", **body}))
        if op == "destroy":
            sid = body.get("ID") or ""
            await self.srv.session.destroy(sid)
            return str(sid)
        raise RPCError(f"Invalid session operation '{op}'")

    async def session_get(self, args: Args) -> dict[str, Any]:
        meta, found = await self.srv.session.get(_str(args, "SessionID"),
                                                 W.query_from_wire(args))
        return self._reply(meta, Sessions=[W.session_to_wire(s) for s in found])

    async def session_list(self, args: Args) -> dict[str, Any]:
        meta, found = await self.srv.session.list_all(W.query_from_wire(args))
        return self._reply(meta, Sessions=[W.session_to_wire(s) for s in found])

    async def session_node_sessions(self, args: Args) -> dict[str, Any]:
        meta, found = await self.srv.session.node_sessions(_str(args, "Node"),
                                                           W.query_from_wire(args))
        return self._reply(meta, Sessions=[W.session_to_wire(s) for s in found])

    async def session_renew(self, args: Args) -> dict[str, Any]:
        self._write_dc(args)
        found = await self.srv.session.renew(_str(args, "SessionID"))
        return {"Sessions": [W.session_to_wire(s) for s in found]}

    # -- Txn ----------------------------------------------------------------------------------

    async def txn_apply(self, args: Args) -> dict[str, Any]:
        self._write_dc(args)
        results, errors = await self.srv.txn.apply(W.txn_ops_from_wire(args.get("Ops")))
        return {"Results": W.txn_results_to_wire(results), "Errors": errors}

    async def txn_read(self, args: Args) -> dict[str, Any]:
        meta, (results, errors) = await self.srv.txn.read(
            W.txn_ops_from_wire(args.get("Ops")), W.query_from_wire(args))
        return self._reply(meta, Results=W.txn_results_to_wire(results), Errors=errors)

    # -- Status and operator ------------------------------------------------------------------

    async def status_leader(self, args: Args) -> str:
        return self.srv.leader()

    async def status_peers(self, args: Args) -> list[str]:
        return self.srv.peers()

    async def status_raft_stats(self, args: Args) -> dict[str, Any]:
        """structs.RaftStats of this server, for the leader's autopilot."""
        return stats_reply(self.srv.raft_stats())

    # -- Operator -----------------------------------------------------------------------------

    def _operator(self) -> OperatorEndpoint:
        op = self.srv.operator
        if op is None:
            raise RPCError("rpc: can't find method Operator (no Raft on this server)")
        return op

    async def raft_configuration(self, args: Args) -> dict[str, Any]:
        if self.srv.operator is None:
            return self.srv.raft_configuration()
        return await self.srv.operator.raft_configuration(W.query_from_wire(args))

    async def raft_remove_peer(self, args: Args) -> dict[str, Any]:
        self._write_dc(args)
        await self._operator().remove_peer(_str(args, "ID"), _str(args, "Address"))
        return {}

    async def raft_transfer_leader(self, args: Args) -> dict[str, Any]:
        return {"Success": await self._operator().transfer_leader(_str(args, "ID"))}

    async def autopilot_get_configuration(self, args: Args) -> dict[str, Any]:
        _, config = await self._operator().get_config(W.query_from_wire(args))
        return config.to_wire()

    async def autopilot_set_configuration(self, args: Args) -> bool:
        self._write_dc(args)
        config = AutopilotConfig.from_wire(args.get("Config") or {})
        cas = config.modify_index if args.get("CAS") else None
        return await self._operator().set_config(config, cas)

    async def server_health(self, args: Args) -> dict[str, Any]:
        return await self._operator().server_health()

    async def autopilot_state(self, args: Args) -> dict[str, Any]:
        return await self._operator().autopilot_state()

    # -- Coordinate ---------------------------------------------------------------------------

    async def coordinate_update(self, args: Args) -> dict[str, Any]:
        self._write_dc(args)
        raw = args.get("Coord")
        coord = coord_from_wire(raw) if isinstance(raw, Mapping) else None
        await self.srv.coordinate.update(_str(args, "Node"), _str(args, "Segment"), coord)
        return {}

    async def coordinate_list_datacenters(self, args: Args) -> list[dict[str, Any]]:
        return [W.datacenter_map_to_wire(m) for m in self.srv.coordinate.list_datacenters()]

    async def coordinate_list_nodes(self, args: Args) -> dict[str, Any]:
        meta, entries = await self.srv.coordinate.list_nodes(W.query_from_wire(args))
        return self._reply(meta, Coordinates=[W.coordinate_to_wire(e) for e in entries])

    async def coordinate_node(self, args: Args) -> dict[str, Any]:
        meta, entries = await self.srv.coordinate.node(_str(args, "Node"),
                                                       W.query_from_wire(args))
        return self._reply(meta, Coordinates=[W.coordinate_to_wire(e) for e in entries])

    # -- Snapshot -----------------------------------------------------------------------------

    async def snapshot_save(self, args: Args) -> dict[str, Any]:
        index, archive = await self.srv.snapshot.save()
        return {"Index": index, "Archive": archive}

    async def snapshot_restore(self, args: Args) -> dict[str, Any]:
        archive = args.get("Archive")
        if not isinstance(archive, bytes):
            raise RPCError("Error restoring snapshot: missing archive")
        return {"Index": await self.srv.snapshot.restore(archive)}


def _tags(args: Args) -> list[str]:
    """ServiceTags, or the single ServiceTag older clients send."""
    tags = args.get("ServiceTags")
    if tags:
        return [str(t) for t in tags]
    tag = args.get("ServiceTag")
    return [tag] if isinstance(tag, str) and tag and args.get("TagFilter") else []


def _wrap(method: Method) -> Callable[[Any], Awaitable[Any]]:
    async def handler(raw: Any) -> Any:
        return await method(_args(raw))

    return handler


def register_endpoints(rpc: RPCServer, server: Server) -> RPCEndpoints:
    """Serve `server`'s endpoints on `rpc` under Consul's method names."""
    endpoints = RPCEndpoints(server)
    endpoints.register(rpc)
    return endpoints
