"""Which server a call goes to, and what happens when it fails (Consul's agent/router/manager.go,
agent/consul/client.go RPC and agent/consul/rpc.go ForwardRPC).

`ServerManager` keeps the known servers of the local datacenter in the order they will be tried:
calls go to the first one, a server that fails a call is rotated to the back, and a periodic
rebalance shuffles the list (keeping a server that answers a ping at the front) so long-lived
clients spread over the servers. Its list is fed from gossip: members tagged role=consul.

`ClientRPC` is a client agent's call: try the first server, on failure rotate and, while the
error says it is safe and the hold timeout (rpc_hold_timeout, 7 s) has not passed, wait a little
and try again. `LeaderForwarder` is a server's: answer locally when this server is the leader
(or may serve a stale read), otherwise send the call to the leader, holding it while there is
no leader.

Safe to retry: "No cluster leader" (nothing was applied), a call whose stream could not even be
opened (`ConnectFailed`: nothing was sent), and reads broken mid-call. A write broken mid-call
is never repeated: the server may have applied it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from proconsul.errors import NoLeader, RPCError
from proconsul.rpc.errors import (
    CallFailed,
    ConnectFailed,
    NoServers,
    RemoteError,
    RPCTimeout,
    is_no_leader,
)

log = logging.getLogger("proconsul.client")

#: rpc_hold_timeout's default
RPC_HOLD_TIMEOUT = 7.0
#: structs.JitterFraction: waits between retries are up to hold_timeout / 16
JITTER_FRACTION = 16
#: ErrChunkingResubmit's text
_CHUNKING_RESUBMIT = "please resubmit call for rechunking"
#: manager.go: clientRPCMinReuseDuration, clientRPCJitterFraction,
#: newRebalanceConnsPerSecPerServer
MIN_REUSE_DURATION = 120.0
REUSE_JITTER_FRACTION = 2
REBALANCE_CONNS_PER_SEC_PER_SERVER = 64

_VERSION = re.compile(r"\d+\.\d+\.\d+")


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A Consul server as its gossip tags describe it (metadata.Server)."""

    #: the member name: <node>.<dc> in the WAN pool, <node> in the LAN pool
    name: str
    id: str
    datacenter: str
    #: "ip:port" of its RPC port
    addr: str
    port: int
    build: str = ""
    version: int = 0
    raft_version: int = 0
    expect: int = 0
    bootstrap: bool = False
    read_replica: bool = False
    use_tls: bool = False
    segment: str = ""
    wan_join_port: int = 0

    @property
    def short_name(self) -> str:
        suffix = "." + self.datacenter
        return self.name[:-len(suffix)] if self.name.endswith(suffix) else self.name

    def __str__(self) -> str:
        return f"{self.name} (Addr: tcp/{self.addr}) (DC: {self.datacenter})"


def _join_host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def server_from_tags(name: str, ip: str, tags: Mapping[str, str]) -> ServerInfo | None:
    """The server a gossip member advertises, or None when it is not a (well-formed) Consul
    server: metadata.IsConsulServer's rules."""
    if tags.get("role") != "consul":
        return None
    try:
        expect = int(tags["expect"]) if "expect" in tags else 0
        port = int(tags.get("port", ""))
        wan_join_port = int(tags["wan_join_port"]) if "wan_join_port" in tags else 0
        vsn = int(tags.get("vsn", ""))
        raft_vsn = int(tags["raft_vsn"]) if "raft_vsn" in tags else 0
    except ValueError:
        return None
    build = _VERSION.search(tags.get("build", ""))
    if build is None:
        return None
    datacenter = tags.get("dc", "")
    return ServerInfo(
        name=name, id=tags.get("id", ""), datacenter=datacenter,
        addr=_join_host_port(ip, port), port=port, build=build.group(0), version=vsn,
        raft_version=raft_vsn, expect=expect, bootstrap="bootstrap" in tags,
        read_replica="read_replica" in tags or "nonvoter" in tags,
        use_tls="use_tls" in tags, segment=tags.get("segment", ""),
        wan_join_port=wan_join_port,
    )


def random_stagger(interval: float) -> float:
    """lib.RandomStagger: a random wait in [0, interval)."""
    return random.random() * interval if interval > 0 else 0.0


def can_retry(err: BaseException, started: float, hold_timeout: float, *, is_read: bool,
              now: float | None = None) -> bool:
    """Whether a failed call may be tried again (rpc.go canRetry, plus: a call that never
    reached a server may always be)."""
    if (time.monotonic() if now is None else now) - started > hold_timeout:
        return False
    if is_no_leader(err):
        return True
    if _CHUNKING_RESUBMIT in str(err):
        return True
    if isinstance(err, ConnectFailed):
        return True
    return is_read and isinstance(err, CallFailed) and not isinstance(err, RPCTimeout)


class Pinger(Protocol):
    async def ping(self, addr: str, timeout: float | None = None) -> bool: ...


class Caller(Protocol):
    """What a call goes through: the ConnPool."""

    async def rpc(self, addr: str, method: str, args: Any,
                  timeout: float | None = None) -> Any: ...


class ServerManager:
    """The servers of one datacenter in the order calls try them."""

    def __init__(self, pinger: Pinger | None = None, *, ping_timeout: float = 5.0,
                 logger: logging.Logger | None = None) -> None:
        self._servers: list[ServerInfo] = []
        self._pinger = pinger
        self.ping_timeout = ping_timeout
        self.log = logger or logging.getLogger("proconsul.router.manager")
        self._offline = True
        self._rebalancer: asyncio.Task[None] | None = None

    # -- membership -------------------------------------------------------------------------

    def add_server(self, server: ServerInfo) -> None:
        """Add a server at the back, or update a known one (same name) in place."""
        for i, known in enumerate(self._servers):
            if known.name == server.name:
                self._servers[i] = server
                break
        else:
            self._servers.append(server)
        self._offline = False

    def remove_server(self, name: str) -> None:
        self._servers = [s for s in self._servers if s.name != name]

    def servers(self) -> list[ServerInfo]:
        return list(self._servers)

    def num_servers(self) -> int:
        return len(self._servers)

    @property
    def is_offline(self) -> bool:
        """No servers, or none answered a ping at the last rebalance."""
        return self._offline or not self._servers

    # -- selection --------------------------------------------------------------------------

    def find_server(self) -> ServerInfo | None:
        if not self._servers:
            self.log.warning("manager: No servers available")
            return None
        return self._servers[0]

    def notify_failed_server(self, server: ServerInfo) -> None:
        """Rotate `server` to the back if it is still the one calls go to."""
        if len(self._servers) > 1 and self._servers[0] is server:
            self._servers.append(self._servers.pop(0))

    async def rebalance(self) -> None:
        """Shuffle the servers, then keep rotating until the front one answers a ping."""
        candidates = list(self._servers)
        random.shuffle(candidates)
        healthy = self._pinger is None
        for _ in range(len(candidates)):
            if healthy:
                break
            assert self._pinger is not None
            front = candidates[0]
            if await self._pinger.ping(front.addr, self.ping_timeout):
                healthy = True
                break
            self.log.debug('manager: pinging server "%s" failed', front)
            candidates.append(candidates.pop(0))
        if not healthy:
            self._offline = True
            self.log.debug("manager: No healthy servers during rebalance, aborting")
            return
        self._offline = False
        # members may have come or gone during the pings: keep the new order for those still
        # known, append those added meanwhile
        current = {s.name: s for s in self._servers}
        if not candidates or candidates[0].name not in current:
            return
        merged = [current[s.name] for s in candidates if s.name in current]
        seen = {s.name for s in merged}
        merged.extend(s for s in self._servers if s.name not in seen)
        self._servers = merged
        self.log.debug("manager: Rebalanced %d servers, next active server is %s",
                       len(merged), merged[0])

    def rebalance_interval(self, num_lan_members: int) -> float:
        """How long until the next rebalance: at least two minutes (plus jitter), longer when
        the cluster is big enough that all clients rebalancing would exceed 64 new
        connections per second per server."""
        low = MIN_REUSE_DURATION + random_stagger(MIN_REUSE_DURATION / REUSE_JITTER_FRACTION)
        rate = len(self._servers) * REBALANCE_CONNS_PER_SEC_PER_SERVER
        if rate <= 0:
            return low
        return max(low, num_lan_members / rate)

    def start(self, num_lan_members: Callable[[], int]) -> None:
        """Rebalance periodically until stop()."""
        if self._rebalancer is None:
            self._rebalancer = asyncio.get_running_loop().create_task(
                self._rebalance_loop(num_lan_members))

    async def stop(self) -> None:
        task, self._rebalancer = self._rebalancer, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _rebalance_loop(self, num_lan_members: Callable[[], int]) -> None:
        while True:
            await asyncio.sleep(self.rebalance_interval(num_lan_members()))
            await self.rebalance()


class ClientRPC:
    """A client agent's calls to the servers of its datacenter."""

    def __init__(self, pool: Caller, manager: ServerManager, *,
                 hold_timeout: float = RPC_HOLD_TIMEOUT,
                 logger: logging.Logger | None = None) -> None:
        self.pool = pool
        self.manager = manager
        self.hold_timeout = hold_timeout
        self.log = logger or log

    async def rpc(self, method: str, args: Any, *, is_read: bool = False,
                  timeout: float | None = None) -> Any:
        """The reply of the first server that answers; retried on other servers while that is
        safe (see the module docstring) and the hold timeout lasts, else the last error."""
        started = time.monotonic()
        while True:
            server = self.manager.find_server()
            if server is None:
                raise NoServers()
            try:
                return await self.pool.rpc(server.addr, method, args, timeout)
            except (RemoteError, CallFailed, ConnectFailed) as err:
                self.log.error("RPC failed to server: method=%s server=%s error=%s",
                               method, server.addr, err)
                self.manager.notify_failed_server(server)
                if not can_retry(err, started, self.hold_timeout, is_read=is_read):
                    raise
            await asyncio.sleep(random_stagger(self.hold_timeout / JITTER_FRACTION))


#: () -> (this server is the leader, the leader's RPC "ip:port" or None when there is none)
LeaderLookup = Callable[[], tuple[bool, str | None]]


class LeaderForwarder:
    """A server's forwarding of calls it must not answer itself to the current leader."""

    def __init__(self, pool: Caller, leader: LeaderLookup, *,
                 hold_timeout: float = RPC_HOLD_TIMEOUT,
                 leaving: Callable[[], bool] | None = None,
                 logger: logging.Logger | None = None) -> None:
        self.pool = pool
        self.leader = leader
        self.hold_timeout = hold_timeout
        #: true once this server is leaving: calls fail fast with "No cluster leader"
        self.leaving = leaving or (lambda: False)
        self.log = logger or logging.getLogger("proconsul.server.rpc")

    async def forward(self, method: str, args: Any, *, is_read: bool = False,
                      allow_stale: bool = False,
                      timeout: float | None = None) -> tuple[bool, Any]:
        """(False, None) when this server should answer the call itself; (True, reply) when
        the leader answered it. Raises the last error once the hold timeout has passed.

        `allow_stale` is the read's AllowStale, and only counts when this server has heard
        from a leader at least once (the caller knows that; raft LastContact in Consul)."""
        if is_read and allow_stale:
            return False, None
        started = time.monotonic()
        while True:
            if self.leaving():
                raise NoLeader()
            is_leader, leader = self.leader()
            if is_leader:
                return False, None
            err: RPCError
            if leader is None:
                err = NoLeader()
            else:
                try:
                    return True, await self.pool.rpc(leader, method, args, timeout)
                except (RemoteError, CallFailed, ConnectFailed) as exc:
                    err = exc
            if not can_retry(err, started, self.hold_timeout, is_read=is_read):
                raise err
            await asyncio.sleep(random_stagger(self.hold_timeout / JITTER_FRACTION))
