"""A server agent's replicated side: Raft over the server port, the server and its endpoints,
the RPC listener client agents and other servers call, bootstrap from gossip, and the leader's
duties switched on and off with leadership (Consul's agent/consul/server.go, leader.go).

A lone server (`-dev`, `bootstrap`, `bootstrap_expect = 1`) bootstraps itself and leads at
once. With `bootstrap_expect = N`, servers wait until the LAN pool shows N servers of their
datacenter expecting N, then bootstrap together with that configuration (the same on each, so
they agree); a server with existing Raft state never bootstraps again. The leader keeps Raft's
membership in step with gossip: an alive server of the datacenter is added as a voter, one
that left or was reaped is removed. A server joining an existing cluster enters as a non-voter;
autopilot (server/autopilot.py) promotes it once it has been healthy for the stabilization
time, and removes servers that failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from proconsul.config.runtime import RuntimeConfig
from proconsul.errors import ProconsulError
from proconsul.gossip.serf.config import STATUS_NAMES, SerfMember
from proconsul.gossip.serf.events import EventType, MemberEvent
from proconsul.gossip.serf.messages import STATUS_ALIVE
from proconsul.gossip.state import address_text
from proconsul.raft.cluster import Raft, has_existing_state
from proconsul.raft.config import Config as RaftSettings
from proconsul.raft.configuration import Configuration
from proconsul.raft.configuration import Server as RaftServer
from proconsul.raft.errors import CantBootstrap
from proconsul.raft.file_log import FileLogStore
from proconsul.raft.file_snapshot import FileSnapshotStore
from proconsul.raft.file_stable import FileStableStore
from proconsul.raft.inmem import InmemLogStore, InmemSnapshotStore, InmemStableStore
from proconsul.raft.inmem_transport import InmemNetwork, InmemTransport
from proconsul.raft.log import LogStore
from proconsul.raft.net_transport import NetworkTransport
from proconsul.raft.snapshot import SnapshotStore
from proconsul.raft.stable import StableStore
from proconsul.rpc.pool import ConnPool
from proconsul.rpc.router import ServerInfo, server_from_tags
from proconsul.rpc.server import RPCServer
from proconsul.rpc.types import RPCType
from proconsul.server.autopilot import Autopilot, KnownServer
from proconsul.server.forward import LeaderLink, register_forwarding
from proconsul.server.fsm import FSM
from proconsul.server.operator_endpoint import OperatorEndpoint
from proconsul.server.rpc_endpoints import register_endpoints
from proconsul.server.server import Server
from proconsul.state.autopilot import AutopilotConfig

if TYPE_CHECKING:
    from proconsul.agent.datadir import DataDir

log = logging.getLogger("proconsul.server")

LeaderHook = Callable[[bool], Awaitable[None]]


async def raft_stores(data_dir: DataDir | None) -> tuple[LogStore, StableStore, SnapshotStore]:
    """In-memory twins for -dev; files under data_dir/raft otherwise (opened off the loop:
    the log's recovery scan reads every segment)."""
    if data_dir is None:
        return InmemLogStore(), InmemStableStore(), InmemSnapshotStore()
    raft_dir = data_dir.raft_dir()
    loop = asyncio.get_running_loop()
    logs = await loop.run_in_executor(None, FileLogStore, raft_dir / "wal")
    stable = FileStableStore(raft_dir / "stable.bin")
    snapshots = FileSnapshotStore(raft_dir / "snapshots", retain=2)
    return logs, stable, snapshots


class ServerRuntime:
    def __init__(self, cfg: RuntimeConfig, node_id: str, advertise: str,
                 data_dir: DataDir | None) -> None:
        self.cfg = cfg
        self.node_id = node_id
        self.address = f"{advertise}:{cfg.ports.server}"
        self.advertise = advertise
        self.data_dir = data_dir
        self.raft: Raft[FSM] | None = None
        self.transport: NetworkTransport | InmemTransport | None = None
        self.server: Server | None = None
        self.rpc_server: RPCServer | None = None
        self.autopilot: Autopilot | None = None
        self.operator: OperatorEndpoint | None = None
        self.pool = ConnPool()
        #: called with True when this server takes up the leader's duties, False when it
        #: gives them up (the member reconciler hangs here)
        self.leader_hooks: list[LeaderHook] = []
        #: the LAN pool's members (set once gossip runs)
        self.lan_members: Callable[[], list[SerfMember]] = list
        self._bootstrapped = False
        self._leading = False
        self._transitions: asyncio.Queue[bool] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> Server:
        cfg = self.cfg
        logs, stable, snapshots = await raft_stores(self.data_dir)
        if cfg.dev:
            settings = RaftSettings.dev(self.node_id, self.address)
        else:
            settings = RaftSettings(
                self.node_id, self.address, heartbeat_timeout=cfg.raft_heartbeat_timeout,
                election_timeout=cfg.raft_election_timeout,
                leader_lease_timeout=cfg.raft_leader_lease_timeout)
        settings.snapshot_threshold = cfg.raft_snapshot_threshold
        settings.snapshot_interval = cfg.raft_snapshot_interval
        settings.trailing_logs = cfg.raft_trailing_logs
        transport: NetworkTransport | InmemTransport
        if cfg.dev:
            transport = InmemNetwork().transport(self.address)
        else:
            transport = NetworkTransport(self.address, connect_prefix=bytes((RPCType.RAFT,)))
        self.transport = transport
        raft: Raft[FSM] = Raft(settings, FSM(), logs, stable, snapshots, transport)
        self.raft = raft
        existing = has_existing_state(logs, stable, snapshots)
        self._bootstrapped = existing
        if not existing and (cfg.dev or cfg.bootstrap or cfg.bootstrap_expect == 1):
            await raft.bootstrap_cluster(
                Configuration.of([RaftServer(self.node_id, self.address)]))
            self._bootstrapped = True
        server = Server(
            raft, cfg.node_name, self.node_id, cfg.datacenter, self.advertise,
            session_ttl_min=cfg.session_ttl_min, default_query_time=cfg.default_query_time,
            max_query_time=cfg.max_query_time, node_meta=dict(cfg.node_meta),
            server_port=cfg.ports.server,
            coordinate_update_period=cfg.coordinate_update_period,
            coordinate_update_batch_size=cfg.coordinate_update_batch_size,
            coordinate_update_max_batches=cfg.coordinate_update_max_batches,
            disable_coordinates=cfg.disable_coordinates,
        )
        self.server = server
        await server.start(lead=False)
        server.leader_link = LeaderLink(raft, self.pool, cfg.performance.rpc_hold_timeout)
        ap = cfg.autopilot
        defaults = AutopilotConfig(
            cleanup_dead_servers=ap.cleanup_dead_servers,
            last_contact_threshold=ap.last_contact_threshold,
            max_trailing_logs=ap.max_trailing_logs, min_quorum=ap.min_quorum,
            server_stabilization_time=ap.server_stabilization_time,
            redundancy_zone_tag=ap.redundancy_zone_tag,
            disable_upgrade_migration=ap.disable_upgrade_migration,
            upgrade_version_tag=ap.upgrade_version_tag)
        self.operator = OperatorEndpoint(server, raft, None, defaults)
        self.autopilot = Autopilot(raft, self.operator.current_config, self.known_servers,
                                   self._fetch_stats)
        self.operator.autopilot = self.autopilot
        server.operator = self.operator
        self.rpc_server = RPCServer()
        register_endpoints(self.rpc_server, server)
        register_forwarding(self.rpc_server, server, raft)
        if isinstance(transport, NetworkTransport):
            self.rpc_server.set_raft_handler(transport.handle_connection)
        host, port = cfg.rpc_bind_addr
        try:
            await self.rpc_server.start(host, port)
        except OSError as exc:
            raise ProconsulError(f"Failed to start RPC layer: listen tcp {host}:{port}: "
                                 f"{exc.strerror}") from None
        raft.add_leadership_listener(self._transitions.put_nowait)
        self._spawn(self._run_transitions())
        await raft.start()
        if raft.is_leader():
            # a lone voter leads before start() returns: take up the duties before serving
            await self._settle()
        return server

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self) -> None:
        while not self._transitions.empty() or self._leading != self._want_leading():
            await asyncio.sleep(0.005)

    def _want_leading(self) -> bool:
        return self.raft is not None and self.raft.is_leader()

    async def _run_transitions(self) -> None:
        """Leader duties start and stop in the order Raft reports leadership changes."""
        while True:
            leading = await self._transitions.get()
            if leading == self._leading:
                continue
            assert self.server is not None
            if leading:
                log.info("cluster leadership acquired")
                log.info("New leader elected: payload=%s", self.cfg.node_name)
                try:
                    await self.server.establish_leadership()
                    if self.operator is not None:
                        await self.operator.ensure_config()
                except ProconsulError as exc:
                    log.error("failed to establish leadership: error=%s", exc)
                if self.autopilot is not None:
                    self.autopilot.start()
            else:
                log.info("cluster leadership lost")
                self.server.revoke_leadership()
                if self.autopilot is not None:
                    await self.autopilot.stop()
            self._leading = leading
            for hook in self.leader_hooks:
                try:
                    await hook(leading)
                except ProconsulError as exc:
                    log.error("leader hook failed: error=%s", exc)

    # -- gossip -> raft -----------------------------------------------------------------------

    def on_member_event(self, event: MemberEvent[SerfMember], members: list[SerfMember]) -> None:
        """Bootstrap when enough servers are seen (Consul's maybeBootstrap)."""
        if not self._bootstrapped and event.type == EventType.MEMBER_JOIN:
            self._spawn(self.maybe_bootstrap(members))

    def _servers(self, members: list[SerfMember]) -> list[ServerInfo]:
        found = []
        for m in members:
            info = server_from_tags(m.name, address_text(m.addr), m.tags)
            if (info is not None and m.status == STATUS_ALIVE
                    and info.datacenter == self.cfg.datacenter and not info.read_replica):
                found.append(info)
        return found

    async def maybe_bootstrap(self, members: list[SerfMember]) -> None:
        expect = self.cfg.bootstrap_expect
        if self._bootstrapped or expect <= 1 or self.raft is None:
            return
        servers = self._servers(members)
        for s in servers:
            if s.expect and s.expect != expect:
                log.error("Member has a conflicting expect value. All nodes should expect "
                          "the same number.: member=%s", s.name)
                return
            if s.bootstrap:
                log.error("Member has bootstrap mode. Expect disabled.: member=%s", s.name)
                return
        if len(servers) < expect:
            return
        # a server that already has peers means the cluster exists: join it instead
        for s in servers:
            if s.id == self.node_id:
                continue
            try:
                peers = await self.pool.rpc(s.addr, "Status.Peers", {}, 5.0)
            except ProconsulError as exc:
                log.error("Failed to confirm peer status for server: server=%s error=%s",
                          s.name, exc)
                return
            if peers:
                log.info("Existing Raft peers reported by server, disabling bootstrap mode: "
                         "server=%s", s.name)
                self._bootstrapped = True
                return
        if self._bootstrapped:
            return
        self._bootstrapped = True
        config = Configuration.of(sorted((RaftServer(s.id, s.addr) for s in servers),
                                         key=lambda r: r.id))
        log.info("Found expected number of peers, attempting bootstrap: peers=%s",
                 ",".join(r.address for r in config.servers))
        try:
            await self.raft.bootstrap_cluster(config)
        except CantBootstrap:
            log.info("Raft state exists, not bootstrapping")

    async def ensure_peer(self, member: SerfMember) -> None:
        """On the leader: an alive server of this datacenter is in the Raft configuration
        (a newcomer as a non-voter, which autopilot promotes once it is stable)."""
        raft = self.raft
        info = server_from_tags(member.name, address_text(member.addr), member.tags)
        if raft is None or info is None or info.datacenter != self.cfg.datacenter:
            return
        if not raft.is_leader() or not info.id:
            return
        if info.bootstrap:
            for other in self.lan_members():
                peer = server_from_tags(other.name, address_text(other.addr), other.tags)
                if peer is not None and other.name != member.name and peer.bootstrap:
                    log.error("Two nodes are in bootstrap mode. Only one node should be in "
                              "bootstrap mode, not adding Raft peer.: node_id=%s other=%s",
                              info.id, other.name)
                    return
        conf, _ = raft.get_configuration()
        known = conf.get(info.id)
        if known is not None and known.address == info.addr:
            return
        if known is None:
            for stale in conf.servers:
                if stale.address == info.addr:
                    # the same address under an old ID: a server that was rebuilt
                    await raft.remove_server(stale.id)
        log.info("Adding LAN server: server=%s", info)
        # a newcomer catches up as a non-voter; autopilot promotes it once it is stable
        await raft.add_nonvoter(info.id, info.addr)

    async def remove_peer(self, member: SerfMember) -> None:
        """On the leader: a server that left or was reaped leaves the Raft configuration."""
        raft = self.raft
        info = server_from_tags(member.name, address_text(member.addr), member.tags)
        if raft is None or info is None or not raft.is_leader() or not info.id:
            return
        if info.id == self.node_id:
            return
        conf, _ = raft.get_configuration()
        if conf.get(info.id) is None:
            return
        log.info("removing server by ID: id=%s", info.id)
        await raft.remove_server(info.id)

    # -- autopilot ----------------------------------------------------------------------------

    def known_servers(self) -> dict[str, KnownServer]:
        """The servers of this datacenter gossip knows, by Raft ID (with the catalog's node
        meta, which autopilot reports)."""
        out: dict[str, KnownServer] = {}
        nodes = self.server.store.nodes if self.server is not None else {}
        for m in self.lan_members():
            info = server_from_tags(m.name, address_text(m.addr), m.tags)
            if info is None or not info.id or info.datacenter != self.cfg.datacenter:
                continue
            node = nodes.get(m.name)
            out[info.id] = KnownServer(
                info.id, m.name, info.addr, STATUS_NAMES.get(m.status, "none"), info.build,
                dict(node.meta) if node is not None else {})
        return out

    async def _fetch_stats(self, address: str, timeout: float) -> dict[str, Any]:
        reply = await self.pool.rpc(address, "Status.RaftStats", {}, timeout)
        return dict(reply) if isinstance(reply, dict) else {}

    async def stop(self) -> None:
        if self.autopilot is not None:
            await self.autopilot.stop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.rpc_server is not None:
            await self.rpc_server.stop()
        if self.server is not None:
            await self.server.stop()
        if self.raft is not None:
            await self.raft.shutdown()
        if self.transport is not None:
            await self.transport.close()
        await self.pool.shutdown()
