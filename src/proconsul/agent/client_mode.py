"""A client agent's way to the servers: the servers of its datacenter learned from the LAN
pool's tags, one pooled yamux session per server, and the HTTP backends over RPC (Consul's
agent/consul/client.go with agent/router).

A client holds no replicated state. Everything the HTTP API, DNS, anti-entropy and alias checks
read or write goes to a server, which answers or forwards to the leader; the client only picks
the server and moves on to another when one stops answering.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from proconsul.agent.rpc_backend import RPCBackend
from proconsul.config.runtime import RuntimeConfig
from proconsul.errors import ProconsulError
from proconsul.gossip.serf.config import SerfMember
from proconsul.gossip.serf.events import EventType, MemberEvent
from proconsul.gossip.serf.messages import STATUS_ALIVE
from proconsul.gossip.serf.serf import Serf
from proconsul.gossip.state import address_text
from proconsul.rpc.pool import ConnPool
from proconsul.rpc.router import ClientRPC, ServerManager, server_from_tags

if TYPE_CHECKING:
    from proconsul.agent.agent import Agent

log = logging.getLogger("proconsul.agent.client")


class ClientRuntime:
    """The RPC side of a client agent."""

    def __init__(self, cfg: RuntimeConfig, agent: Agent) -> None:
        self.cfg = cfg
        self.pool = ConnPool()
        self.servers = ServerManager(self.pool)
        self.rpc = ClientRPC(self.pool, self.servers,
                             hold_timeout=cfg.performance.rpc_hold_timeout)
        self.backend = RPCBackend(
            self.rpc, cfg.datacenter, agent=agent,
            local=agent.local,  # type: ignore[arg-type]  # set once the agent builds it
            events=agent.user_events,  # type: ignore[arg-type]
            keyring=agent.keyring, disable_coordinates=cfg.disable_coordinates,
            max_query_time=cfg.max_query_time, default_query_time=cfg.default_query_time)
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, lan: Serf) -> None:
        for member in lan.member_list():
            self.observe(member)
        self.servers.start(lan.num_nodes)

    def on_member_event(self, event: MemberEvent[SerfMember]) -> None:
        """Servers come and go with the LAN pool (Consul's client lanEventHandler)."""
        for member in event.members:
            if event.type in (EventType.MEMBER_JOIN, EventType.MEMBER_UPDATE):
                self.observe(member)
            else:
                info = server_from_tags(member.name, address_text(member.addr), member.tags)
                if info is not None:
                    log.info("client: removing server: server=%s", info)
                    self.servers.remove_server(member.name)

    def observe(self, member: SerfMember) -> None:
        info = server_from_tags(member.name, address_text(member.addr), member.tags)
        if info is None or member.status != STATUS_ALIVE:
            return
        if info.datacenter != self.cfg.datacenter:
            log.warning("client: server of another datacenter in the LAN pool: server=%s",
                        info)
            return
        log.info("client: adding server: server=%s", info)
        self.servers.add_server(info)
        # the synchronous views (leader, peers, datacenters) answer from the last reply:
        # ask now, so the first HTTP caller does not see "No known Consul servers"
        task = asyncio.get_running_loop().create_task(self._refresh_views())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh_views(self) -> None:
        try:
            await self.backend.view.refresh()
        except ProconsulError as exc:
            log.debug("client: refreshing server views failed: error=%s", exc)

    def known_servers(self) -> int:
        return self.servers.num_servers()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.backend.close()
        await self.servers.stop()
        await self.pool.shutdown()
