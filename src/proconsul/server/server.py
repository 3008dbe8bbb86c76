"""The server: one FSM behind an Applier, the endpoints that read and write it, and the
leader's duties (its own catalog registration, session TTLs, tombstone reaping).

HTTP and DNS reach it only through these endpoint objects, so a client agent can later put an
RPC forwarder with the same methods in its place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from proconsul import CONSUL_COMPAT_VERSION
from proconsul.errors import NoLeader, RPCError, StateError
from proconsul.server.applier import Applier
from proconsul.server.blocking import QueryFn, blocking_query
from proconsul.server.catalog_endpoint import CatalogEndpoint
from proconsul.server.commands import MessageType, encode
from proconsul.server.coordinate_endpoint import CoordinateEndpoint
from proconsul.server.forward import LeaderLink, is_local_leader
from proconsul.server.health_endpoint import HealthEndpoint
from proconsul.server.kvs_endpoint import KVSEndpoint
from proconsul.server.operator_endpoint import OperatorEndpoint
from proconsul.server.session_endpoint import SessionEndpoint
from proconsul.server.snapshot_endpoint import SnapshotEndpoint
from proconsul.server.tombstone_gc import TombstoneGC
from proconsul.server.txn_endpoint import TxnEndpoint
from proconsul.state.store import Store
from proconsul.structs.catalog import HEALTH_PASSING
from proconsul.structs.query import (
    CONSISTENCY_CONSISTENT,
    CONSISTENCY_LEADER,
    CONSISTENCY_STALE,
    QueryMeta,
    QueryOptions,
)
from proconsul.structs.session import SERF_CHECK_ID, SERF_CHECK_NAME

log = logging.getLogger("proconsul.server")

#: The service every server registers for itself (Consul's structs.ConsulServiceName).
CONSUL_SERVICE = "consul"


class Server:
    def __init__(
        self,
        applier: Applier,
        node_name: str,
        node_id: str,
        datacenter: str,
        advertise_addr: str,
        session_ttl_min: float = 10.0,
        default_query_time: float = 300.0,
        max_query_time: float = 600.0,
        node_meta: dict[str, str] | None = None,
        server_port: int = 8300,
        coordinate_update_period: float = 5.0,
        coordinate_update_batch_size: int = 128,
        coordinate_update_max_batches: int = 5,
        disable_coordinates: bool = False,
    ) -> None:
        self.applier = applier
        self.node_name = node_name
        self.node_id = node_id
        self.datacenter = datacenter
        self.advertise_addr = advertise_addr
        self.node_meta = dict(node_meta or {})
        self.server_port = server_port
        self.session_ttl_min = session_ttl_min
        self.default_query_time = default_query_time
        self.max_query_time = max_query_time
        self.kvs = KVSEndpoint(self)
        self.catalog = CatalogEndpoint(self)
        self.health = HealthEndpoint(self)
        self.session = SessionEndpoint(self)
        self.txn = TxnEndpoint(self)
        self.snapshot = SnapshotEndpoint(self)
        self.coordinate = CoordinateEndpoint(
            self, coordinate_update_period, coordinate_update_batch_size,
            coordinate_update_max_batches, disabled=disable_coordinates,
        )
        self.tombstone_gc = TombstoneGC(self._reap_tombstones)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: how a follower reaches the leader (None: a lone server that is its own leader)
        self.leader_link: LeaderLink | None = None
        #: Raft membership and autopilot by hand (set by the runtime that owns the Raft)
        self.operator: OperatorEndpoint | None = None

    @property
    def store(self) -> Store:
        return self.applier.fsm.store

    def get_store(self) -> Store:
        return self.applier.fsm.store

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, lead: bool = True) -> None:
        """Start the coordinate batcher and, with `lead`, take up the leader's duties (a
        single-voter node is its own leader; a cluster member follows Raft's leadership
        changes instead)."""
        self.spawn(self.coordinate.run())
        if lead:
            await self.establish_leadership()

    async def establish_leadership(self) -> None:
        self.spawn(self._prune_watches())
        self.tombstone_gc.set_enabled(True)
        self.session.initialize_timers()
        await self.reconcile_self()

    def revoke_leadership(self) -> None:
        self.tombstone_gc.set_enabled(False)
        self.session.clear_all_timers()

    async def stop(self) -> None:
        self.revoke_leadership()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def reconcile_self(self) -> None:
        """Register this server's node with a passing serfHealth check and its `consul`
        service, as the leader's member reconciliation does for every alive server."""
        body = {
            "ID": self.node_id,
            "Node": self.node_name,
            "Address": self.advertise_addr,
            "Datacenter": self.datacenter,
            "TaggedAddresses": {
                "lan": self.advertise_addr, "lan_ipv4": self.advertise_addr,
                "wan": self.advertise_addr, "wan_ipv4": self.advertise_addr,
            },
            "NodeMeta": {"consul-network-segment": "", **self.node_meta},
            "Service": {
                "ID": CONSUL_SERVICE, "Service": CONSUL_SERVICE, "Port": self.server_port,
                "Weights": {"Passing": 1, "Warning": 1},
                "Meta": {
                    "non_voter": "false", "read_replica": "false", "raft_version": "3",
                    "serf_protocol_current": "2", "serf_protocol_min": "1",
                    "serf_protocol_max": "5", "version": CONSUL_COMPAT_VERSION,
                },
            },
            "Check": {
                "CheckID": SERF_CHECK_ID, "Name": SERF_CHECK_NAME, "Status": HEALTH_PASSING,
                "Output": "Agent alive and reachable",
            },
        }
        await self.apply(encode(MessageType.REGISTER, body))

    async def _prune_watches(self, every: float = 30.0) -> None:
        """Forget watch futures whose readers gave up, so idle keys cost no memory."""
        while True:
            await asyncio.sleep(every)
            self.store.watches.prune()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a background job whose reference the server keeps (and cancels on stop)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- apply and read -----------------------------------------------------------------------

    async def apply(self, command: bytes, error_prefix: str = "") -> Any:
        """Commit a command; a refusal by the state store becomes an RPC error whose text
        carries the endpoint's prefix (`raft apply failed: `, `apply failed: `)."""
        if not self.applier.is_leader():
            if self.leader_link is None:
                raise NoLeader()
            try:
                return await self.leader_link.apply(command, error_prefix)
            except Exception as exc:
                if not is_local_leader(exc):
                    raise
        result = await self.applier.apply(command)
        if isinstance(result, StateError):
            raise RPCError(error_prefix + str(result))
        if isinstance(result, BaseException):
            raise result
        return result

    @staticmethod
    def consistency_of(opts: QueryOptions) -> str:
        """The mode a read was served in, for endpoints that report it."""
        if opts.allow_stale:
            return CONSISTENCY_STALE
        if opts.require_consistent:
            return CONSISTENCY_CONSISTENT
        return CONSISTENCY_LEADER

    async def read(self, opts: QueryOptions, fn: QueryFn) -> QueryMeta:
        """Serve a read in the requested consistency mode, blocking if asked to."""
        meta = QueryMeta()
        applier = self.applier
        if opts.datacenter and opts.datacenter != self.datacenter:
            raise RPCError("No path to datacenter")
        if not opts.allow_stale or (
                opts.max_stale and not applier.is_leader()
                and applier.last_contact_ms() > opts.max_stale * 1000):
            if applier.is_leader():
                if opts.require_consistent:
                    await applier.verify_leader()
            elif self.leader_link is None:
                raise NoLeader()
            else:
                try:
                    await self.leader_link.catch_up(opts.require_consistent)
                except Exception as exc:
                    if not is_local_leader(exc):
                        raise
        leader = applier.leader_address()
        meta.known_leader = bool(leader)
        meta.last_contact_ms = 0 if applier.is_leader() else applier.last_contact_ms()
        await blocking_query(
            opts, meta, self.get_store, fn, self.default_query_time, self.max_query_time
        )
        return meta

    # -- status -------------------------------------------------------------------------------

    def leader(self) -> str:
        return self.applier.leader_address()

    def peers(self) -> list[str]:
        return self.applier.peers()

    def raft_stats(self) -> dict[str, str]:
        stats = getattr(self.applier, "stats", None)
        return dict(stats()) if stats is not None else {}

    def raft_configuration(self) -> dict[str, Any]:
        leader = self.applier.leader_address()
        get_configuration = getattr(self.applier, "get_configuration", None)
        if get_configuration is None:
            servers = [
                {
                    "ID": self.node_id, "Node": self.node_name, "Address": addr,
                    "Leader": addr == leader, "Voter": True, "ProtocolVersion": "3",
                    "LastIndex": self.applier.last_index(),
                }
                for addr in self.applier.peers()
            ]
            return {"Servers": servers, "Index": self.applier.last_index()}
        conf, index = get_configuration()
        names = {n.id: n.node for n in self.store.nodes.values() if n.id}
        servers = [
            {
                "ID": s.id, "Node": names.get(s.id, ""), "Address": s.address,
                "Leader": s.address == leader, "Voter": s.voter, "ProtocolVersion": "3",
                "LastIndex": self.applier.last_index() if s.address == leader else 0,
            }
            for s in conf.servers
        ]
        return {"Servers": servers, "Index": index}

    async def _reap_tombstones(self, index: int) -> None:
        await self.apply(encode(MessageType.TOMBSTONE, {"Op": "reap", "ReapIndex": index}))


ServerFactory = Callable[[], Server]
