"""The Agent: builds the server and the HTTP listeners from a RuntimeConfig and runs them
until a leave or a signal stops it (Consul's agent/agent.go).

The server commits through a single-voter Raft node: on the file stores under `data_dir/raft`
for `-server`, on their in-memory twins for `-dev`. Client agents and multi-server clusters
plug into the same seams (the Applier and the HTTP Backend).
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import signal
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from proconsul import CONSUL_COMPAT_VERSION, __version__
from proconsul import log as logsetup
from proconsul.agent.ae import EndpointCatalog, ServerCatalog, StateSyncer
from proconsul.agent.checks.alias import ServerHealth
from proconsul.agent.client_mode import ClientRuntime
from proconsul.agent.coordinate_sync import CoordinateSync
from proconsul.agent.datadir import DataDir
from proconsul.agent.gossip import GossipPools
from proconsul.agent.keyring_ops import KeyringOperator, KeyringPool
from proconsul.agent.local_state import LocalState
from proconsul.agent.metrics import Metrics
from proconsul.agent.registry import LocalAgent, Registry, load_runner_factory
from proconsul.agent.server_mode import ServerRuntime
from proconsul.agent.user_events import UserEvents
from proconsul.config.runtime import RuntimeConfig
from proconsul.dns.server import DNSServer, build_dns_server
from proconsul.errors import ConfigError, GossipError, ProconsulError
from proconsul.gossip.serf.config import UserEventRecord
from proconsul.gossip.serf.coordinate import Coordinate
from proconsul.gossip.serf.events import MemberEvent
from proconsul.gossip.serf.messages import STATUS_ALIVE
from proconsul.gossip.serf.serf import SerfEvent
from proconsul.http.api import build_app
from proconsul.http.app import APIApp
from proconsul.http.backend import CatalogBackend, HealthBackend
from proconsul.http.limits import HttpLimits
from proconsul.http.protocol import HttpServer
from proconsul.server.member_reconcile import MemberReconciler
from proconsul.server.server import Server
from proconsul.state.coordinate import coord_to_api

log = logging.getLogger("proconsul")

Reloader = Callable[[], RuntimeConfig]


class Backend:
    """The local server's endpoints, as the HTTP layer's Backend."""

    def __init__(self, server: Server, agent: Agent) -> None:
        self.kvs = server.kvs
        self.catalog = server.catalog
        self.health = server.health
        self.session = server.session
        self.txn = server.txn
        self.status = server
        self.snapshot = server.snapshot
        self.coordinate = server.coordinate
        self.agent = agent
        assert agent.local is not None, "the agent builds its local state before its API"
        self.local = agent.local
        assert agent.user_events is not None, "the agent builds its pools before its API"
        self.events = agent.user_events
        self.keyring = agent.keyring
        assert server.operator is not None, "a server agent's runtime builds its operator"
        self.operator = server.operator


class Agent:
    def __init__(self, config: RuntimeConfig, reloader: Reloader | None = None) -> None:
        self.config = config
        self.reloader = reloader
        self.node_name = config.node_name
        self.datacenter = config.datacenter
        self.data_dir: DataDir | None = None
        if not config.dev:
            self.data_dir = DataDir(config.data_dir)
            self.data_dir.lock()
            self.node_id = self.data_dir.node_id(config.node_id)
        else:
            self.node_id = config.node_id or str(uuid.uuid4())
        self.server_rt: ServerRuntime | None = None
        self.advertise = config.advertise_addr or config.bind_addr
        self.telemetry = Metrics()
        self.started = time.time()
        self.server: Server | None = None
        self.client: ClientRuntime | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.http: list[HttpServer] = []
        self.dns: DNSServer | None = None
        self.local_state = LocalState(config.node_name, config.check_update_interval,
                                      config.discard_check_output)
        self.registry = Registry(
            self.local_state, enable_script_checks=config.enable_script_checks,
            enable_local_script_checks=config.enable_local_script_checks,
            output_max_size=config.check_output_max_size, make_runner=load_runner_factory(),
        )
        self.syncer: StateSyncer | None = None
        self.local: LocalAgent | None = None
        self.gossip: GossipPools | None = None
        self.reconciler: MemberReconciler | None = None
        self.coordinate_sync: CoordinateSync | None = None
        self.user_events: UserEvents | None = None
        self.keyring = KeyringOperator(self.keyring_pools, server=config.server)
        self._stop = asyncio.Event()
        self._stop_signal = 0
        self._leaving = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        if cfg.server or cfg.dev:
            await self._start_server()
        else:
            self.client = ClientRuntime(cfg, self)
        await self._start_gossip()
        catalog, health = self._endpoints()
        # alias checks of services on other nodes read the catalog through the endpoints
        self.registry.remote_health = ServerHealth(catalog, health)
        # config-file services before any listener: a bad definition stops the agent before it
        # serves (definitions were already checked per file when the config was built)
        self.registry.load_config(cfg.services, cfg.checks)
        seam = (ServerCatalog(self.server) if self.server is not None
                else EndpointCatalog(catalog, health))
        self.syncer = StateSyncer(self.local_state, seam, self.node_info,
                                  interval=cfg.ae_interval,
                                  cluster_size=lambda: len(self.members(False)))
        self.local = LocalAgent(self.registry, cfg.datacenter, self.syncer.sync_changes_logged)
        if self.client is not None:
            self.client.backend.local = self.local
            assert self.user_events is not None
            self.client.backend.events = self.user_events
        self.syncer.start()
        self.spawn(self._reap_services())
        app, limits = self.http_api(cfg.pretty_json)
        for host, port in cfg.http_addrs:
            srv = HttpServer(app, limits)
            if host.startswith("unix://"):
                await srv.listen_unix(host[len("unix://"):])
                log.info("Started HTTP server: address=%s network=unix", host)
            else:
                await srv.listen(host, port)
                log.info("Started HTTP server: address=%s:%d network=tcp", host, port)
            self.http.append(srv)
        if cfg.dns_addrs:
            self.dns = build_dns_server(cfg, catalog, health)
            for host, port in cfg.dns_addrs:
                ports = await self.dns.listen(host, port)
                for network, bound in zip(("udp", "tcp"), ports, strict=True):
                    where = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
                    log.info("Started DNS server: address=%s network=%s", where, network)

    def _endpoints(self) -> tuple[CatalogBackend, HealthBackend]:
        """The catalog and health endpoints: the local server's, or a client's RPC forms."""
        if self.server is not None:
            return self.server.catalog, self.server.health
        assert self.client is not None
        return self.client.backend.catalog, self.client.backend.health

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a background job of the agent (cancelled at shutdown)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_server(self) -> None:
        """The replicated state: Raft, the server and its endpoints, and the RPC port that
        client agents and the other servers call."""
        self.server_rt = ServerRuntime(self.config, self.node_id, self.advertise, self.data_dir)
        self.server = await self.server_rt.start()

    def keyring_pools(self) -> list[KeyringPool]:
        """The pools `consul keyring` reaches: this agent's LAN pool and, on a server, the
        WAN pool (none before gossip starts)."""
        if self.gossip is None:
            return []
        pools = [KeyringPool(self.gossip.lan, False, self.datacenter)]
        if self.gossip.wan is not None:
            pools.append(KeyringPool(self.gossip.wan, True, self.datacenter))
        return pools

    async def _start_gossip(self) -> None:
        """The LAN pool (and the WAN pool of a server), then the leader's reconciliation of
        the LAN members into the catalog."""
        cfg = self.config
        wan_tags = None
        if cfg.server:
            wan_tags = {k: v for k, v in self.tags().items() if k != "segment"}
        self.gossip = GossipPools(
            cfg, self.node_id, self.tags(), wan_tags, self._on_lan_event, self._on_wan_event,
            self.data_dir.path if self.data_dir is not None else None)
        lan = self.gossip.lan
        self.user_events = UserEvents(
            cfg.node_name, cfg.datacenter,
            send=lambda name, payload: lan.user_event(name, payload, coalesce=False),
            local_services=lambda: [(sid, list(svc.tags)) for sid, svc
                                    in self.local_state.list_services().items()],
        )
        await self.gossip.start()
        if self.server_rt is not None:
            assert self.server is not None
            rt = self.server_rt
            rt.lan_members = self.gossip.lan.member_list
            self.reconciler = MemberReconciler(self.server, self.gossip.lan.member_list,
                                               ensure_peer=rt.ensure_peer,
                                               remove_peer=rt.remove_peer)
            rt.leader_hooks.append(self._leader_changed)
            if self.server.applier.is_leader():
                self.reconciler.start()
            await rt.maybe_bootstrap(lan.member_list())
        if self.client is not None:
            self.client.start(lan)
        self._start_coordinates()

    def _start_coordinates(self) -> None:
        """Hand the pools' coordinates to the server's Coordinate endpoint and start pushing
        this agent's LAN coordinate (Consul's sendCoordinate), unless disabled."""
        cfg = self.config
        assert self.gossip is not None
        if cfg.disable_coordinates:
            return
        lan, wan = self.gossip.lan, self.gossip.wan
        if self.server is not None:
            endpoint = self.server.coordinate
            endpoint.lan_coordinate = lan.coordinates.client.get_coordinate
            if wan is not None:
                endpoint.wan_coordinate = wan.coordinates.client.get_coordinate
                endpoint.wan_members = self._wan_servers
            update = endpoint.update
        else:
            assert self.client is not None
            update = self.client.backend.coordinate.update
        self.coordinate_sync = CoordinateSync(
            cfg.node_name, lan.coordinates.client.get_coordinate, update,
            cluster_size=lambda: len(lan.member_list()),
            rate_target=cfg.sync_coordinate_rate_target,
            interval_min=cfg.sync_coordinate_interval_min,
        )
        self.coordinate_sync.start()

    def _wan_servers(self) -> list[tuple[str, str, Coordinate | None]]:
        """The WAN pool's alive servers with the pool's coordinate for each (what
        /v1/coordinate/datacenters reports)."""
        wan = self.gossip.wan if self.gossip is not None else None
        if wan is None:
            return []
        return [(m.name, m.tags.get("dc", ""), wan.coordinates.cache.get(m.name))
                for m in wan.member_list()
                if m.status == STATUS_ALIVE and m.tags.get("role") == "consul"]

    async def _leader_changed(self, leading: bool) -> None:
        """Only the leader reconciles gossip into the catalog and Raft."""
        if self.reconciler is None:
            return
        if leading:
            self.reconciler.start()
        else:
            await self.reconciler.stop()

    def _on_lan_event(self, event: SerfEvent) -> None:
        if isinstance(event, MemberEvent):
            if self.reconciler is not None:
                self.reconciler.notify(event)
            if self.client is not None:
                self.client.on_member_event(event)
            if self.server_rt is not None and self.gossip is not None:
                self.server_rt.on_member_event(event, self.gossip.lan.member_list())
        elif isinstance(event, UserEventRecord) and self.user_events is not None:
            self.user_events.ingest(event.name, event.payload, event.ltime)

    def _on_wan_event(self, event: SerfEvent) -> None:
        """WAN membership only feeds the member list and coordinates for now."""

    def http_api(self, pretty: bool) -> tuple[APIApp, HttpLimits]:
        """The /v1 application over this agent's server, and the HTTP limits from its config
        (also used by benches that put the same application behind another HTTP stack)."""
        cfg = self.config
        app = APIApp(
            pretty=pretty,
            kv_max_value_size=cfg.limits.kv_max_value_size,
            txn_max_req_len=cfg.limits.txn_max_req_len,
            response_headers=dict(cfg.http_config.response_headers),
            block_endpoints=list(cfg.http_config.block_endpoints),
            discovery_max_stale=cfg.discovery_max_stale,
            datacenter=cfg.datacenter,
        )
        if self.server is not None:
            build_app(Backend(self.server, self), app)
        else:
            assert self.client is not None, "start() builds the server or the client first"
            build_app(self.client.backend, app)
        limits = HttpLimits(
            max_header_bytes=cfg.http_config.max_header_bytes or (1 << 20),
            max_conns_per_client=cfg.limits.http_max_conns_per_client,
        )
        return app, limits

    async def run(self) -> int:
        """Serve until leave, SIGTERM or SIGINT; SIGHUP reloads. Returns the exit code."""
        loop = asyncio.get_running_loop()
        for sig, handler in (
            (signal.SIGHUP, self._on_hup),
            (signal.SIGTERM, self._on_stop),
            (signal.SIGINT, self._on_stop),
        ):
            loop.add_signal_handler(sig, handler, sig)
        await self.start()
        print("==> Consul agent running!", flush=True)
        await self._stop.wait()
        await self.shutdown()
        return 0

    def _on_hup(self, sig: int) -> None:
        log.info("Caught: signal=hangup")
        self.spawn(self._reload_logged())

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except ProconsulError as err:
            log.error("Error reloading: %s", err)

    def _on_stop(self, sig: int) -> None:
        name = "terminated" if sig == signal.SIGTERM else "interrupt"
        log.info("Caught: signal=%s", name)
        if self._stop.is_set():
            os._exit(1)  # a second signal forces the exit, as Consul's does
        self._stop_signal = sig
        self._stop.set()

    def _leave_on_signal(self) -> bool:
        """Consul's rule: SIGTERM leaves only with leave_on_terminate (clients' default),
        SIGINT unless skip_leave_on_interrupt (servers' default)."""
        if self._stop_signal == signal.SIGTERM:
            return self.config.leave_on_terminate
        if self._stop_signal == signal.SIGINT:
            return not self.config.skip_leave_on_interrupt
        return False

    async def shutdown(self) -> None:
        if self.gossip is not None and not self._leaving and self._leave_on_signal():
            log.info("Gracefully shutting down agent...")
            await self.gossip.leave()
        log.info("Requesting shutdown")
        if self.coordinate_sync is not None:
            await self.coordinate_sync.stop()
        if self.reconciler is not None:
            await self.reconciler.stop()
        if self.gossip is not None:
            await self.gossip.shutdown()
        for srv in self.http:
            await srv.shutdown()
        if self.dns is not None:
            await self.dns.close()
        if self.syncer is not None:
            await self.syncer.stop()
        self.registry.stop_all()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.client is not None:
            await self.client.stop()
        if self.server_rt is not None:
            await self.server_rt.stop()
        if self.data_dir is not None:
            self.data_dir.unlock()
        log.info("shutdown complete")

    async def leave(self) -> None:
        """Graceful leave: the pools hear of it first, then the agent stops (after the
        HTTP answer, which is written when this returns)."""
        log.info("Gracefully shutting down agent...")
        self._leaving = True
        if self.gossip is not None:
            await self.gossip.leave()
        asyncio.get_running_loop().call_later(0.05, self._stop.set)

    async def join(self, address: str, wan: bool) -> int:
        if self.gossip is None:
            raise GossipError("agent is not running")
        return await self.gossip.join([address], wan)

    async def force_leave(self, node: str, prune: bool, wan: bool) -> None:
        if self.gossip is None:
            raise GossipError("agent is not running")
        await self.gossip.force_leave(node, prune, wan)

    async def reload(self) -> None:
        if self.reloader is None:
            return
        try:
            new = self.reloader()
        except ConfigError as err:
            raise ProconsulError(f"Failed reloading config: {err}") from None
        try:
            self.registry.load_config(new.services, new.checks)
        except ProconsulError as err:
            raise ProconsulError(f"Failed reloading config: {err}") from None
        self.local_state.discard_check_output = new.discard_check_output
        logsetup.set_level(new.log_level)
        if self.dns is not None:
            await self.dns.reconfigure(new)
        self.config = new
        if self.syncer is not None:
            # a reload is also the moment to repair whatever drifted in the catalog
            await self.syncer.sync_full_logged()
        log.info("Reloaded configuration")

    async def _reap_services(self) -> None:
        """Deregister services whose checks stayed critical past their
        DeregisterCriticalServiceAfter, on Consul's reap interval."""
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.check_reap_interval)
            if self.registry.reap(time.monotonic(), cfg.check_deregister_interval_min):
                assert self.syncer is not None
                await self.syncer.sync_changes_logged()

    def node_info(self) -> dict[str, Any]:
        """The node part of every anti-entropy registration: the server registers the node
        itself, so the agent only recreates it if it went missing."""
        addr = self.advertise
        return {
            "ID": self.node_id, "Node": self.node_name, "Address": addr,
            "TaggedAddresses": {"lan": addr, "lan_ipv4": addr, "wan": addr, "wan_ipv4": addr},
            "NodeMeta": {"consul-network-segment": "", **self.config.node_meta},
            "SkipNodeUpdate": True,
        }

    # -- views for the HTTP layer -------------------------------------------------------------

    def member(self) -> dict[str, Any]:
        assert self.gossip is not None, "start() joins the pools before the API serves"
        return self.gossip.local_member()

    def tags(self) -> dict[str, str]:
        cfg = self.config
        tags = {
            "acls": "0", "build": f"{CONSUL_COMPAT_VERSION}:proconsul-{__version__}",
            "dc": cfg.datacenter, "id": self.node_id, "segment": "", "vsn": "2",
            "vsn_max": "3", "vsn_min": "2", "ft_fs": "1", "ft_si": "1",
        }
        if cfg.server:
            tags.update({"role": "consul", "port": str(cfg.ports.server), "raft_vsn": "3",
                         "expect": str(cfg.bootstrap_expect), "wan_join_port":
                         str(cfg.ports.serf_wan)})
            if cfg.dev or cfg.bootstrap:
                tags["bootstrap"] = "1"
        else:
            tags["role"] = "node"
        return tags

    def members(self, wan: bool, segment: str = "") -> list[dict[str, Any]]:
        assert self.gossip is not None, "start() joins the pools before the API serves"
        return self.gossip.members(wan, segment)

    def stats(self) -> dict[str, dict[str, str]]:
        if self.server is not None:
            consul = {"acl": "disabled", "bootstrap": "false", "known_datacenters": "1",
                      "leader": str(self.server.applier.is_leader()).lower(),
                      "leader_addr": self.server.leader(), "server": "true"}
            raft: dict[str, dict[str, str]] = {"raft": self.server.applier.stats()}
        else:
            assert self.client is not None
            consul = {"acl": "disabled", "known_servers": str(self.client.known_servers()),
                      "server": "false"}
            raft = {}
        return {
            "agent": {"check_monitors": "0",
                      "check_ttls": str(sum(1 for c in self.local_state.checks.values()
                                            if c.definition and c.definition.ttl
                                            and not c.deleted)),
                      "checks": str(len(self.local_state.list_checks())),
                      "services": str(len(self.local_state.list_services()))},
            "build": {"prerelease": "", "revision": f"proconsul-{__version__}",
                      "version": CONSUL_COMPAT_VERSION, "version_metadata": ""},
            "consul": consul,
            **raft,
            "runtime": {"arch": platform.machine(), "cpu_count": str(os.cpu_count() or 1),
                        "goroutines": str(len(asyncio.all_tasks())),
                        "max_procs": str(os.cpu_count() or 1), "os": platform.system().lower(),
                        "version": f"python{platform.python_version()}"},
            **self._serf_stats(),
        }

    def _serf_stats(self) -> dict[str, dict[str, str]]:
        if self.gossip is None:
            return {}
        out = {"serf_lan": self.gossip.stats(self.gossip.lan)}
        if self.gossip.wan is not None:
            out["serf_wan"] = self.gossip.stats(self.gossip.wan)
        return out

    def self_info(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "Config": {
                "Datacenter": cfg.datacenter, "PrimaryDatacenter": cfg.primary_datacenter,
                "NodeName": cfg.node_name, "NodeID": self.node_id,
                "Revision": f"proconsul-{__version__}", "Server": cfg.server,
                "Version": CONSUL_COMPAT_VERSION, "BuildDate": "2026-11-25T00:00:00Z",
            },
            "DebugConfig": {
                "Datacenter": cfg.datacenter, "NodeName": cfg.node_name, "DevMode": cfg.dev,
                "ServerMode": cfg.server, "DataDir": cfg.data_dir or "",
                "ClientAddrs": list(cfg.client_addrs), "BindAddr": cfg.bind_addr,
                "HTTPPort": cfg.ports.http, "LogLevel": cfg.log_level,
            },
            "Coord": self._lan_coordinate(),
            "Member": self.member(),
            "Stats": self.stats(),
            "Meta": dict(cfg.node_meta),
            "xDS": None,
        }

    def _lan_coordinate(self) -> dict[str, Any] | None:
        """This agent's LAN coordinate for /v1/agent/self (null when coordinates are off)."""
        if self.config.disable_coordinates or self.gossip is None:
            return None
        return coord_to_api(self.gossip.lan.coordinates.client.get_coordinate())

    def metrics(self) -> dict[str, Any]:
        self._runtime_gauges()
        return self.telemetry.snapshot()

    def prometheus_metrics(self) -> str | None:
        if self.config.telemetry.prometheus_retention_time <= 0:
            return None
        self._runtime_gauges()
        return self.telemetry.prometheus()

    def _runtime_gauges(self) -> None:
        m = self.telemetry
        m.gauge("runtime.num_goroutines", float(len(asyncio.all_tasks())))
        try:
            with open("/proc/self/statm") as f:
                rss_pages = int(f.read().split()[1])
            m.gauge("runtime.alloc_bytes", float(rss_pages * os.sysconf("SC_PAGE_SIZE")))
        except (OSError, ValueError, IndexError):
            pass
        if self.server is not None:
            m.gauge("raft.applied_index", float(self.server.applier.last_index()))
            m.gauge("kvs.entries", float(len(self.server.store.kv)))
            m.gauge("state.watch_channels", float(len(self.server.store.watches)))
            m.gauge("session_ttl.active", float(self.server.session.timers()))
        autopilot = self.server_rt.autopilot if self.server_rt is not None else None
        if autopilot is not None and autopilot.state is not None:
            # the leader's view, as Consul reports it (followers have none to report)
            m.gauge("autopilot.healthy", 1.0 if autopilot.state.healthy else 0.0)
            m.gauge("autopilot.failure_tolerance", float(autopilot.state.failure_tolerance))
