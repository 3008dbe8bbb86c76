"""The Operator endpoint of a server (Consul's operator_raft_endpoint.go,
operator_autopilot_endpoint.go and the leader-transfer backend): Raft membership by hand and
the autopilot configuration, health and state.

Changes to Raft's membership and leadership, and the autopilot view, exist only on the leader,
so a follower forwards those calls to it (held while there is no leader, like every forwarded
call). The autopilot configuration is replicated state and is read like any other record, in
the caller's consistency mode.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from proconsul.errors import RPCError
from proconsul.server.autopilot import Autopilot, State
from proconsul.server.commands import MessageType, encode
from proconsul.server.forward import is_local_leader
from proconsul.state.autopilot import AutopilotConfig
from proconsul.structs.query import QueryMeta, QueryOptions

if TYPE_CHECKING:
    from proconsul.server.server import Server
    from proconsul.state.store import Store
    from proconsul.state.watch import WatchSet

log = logging.getLogger("proconsul.server.operator")

Forward = Callable[[str, dict[str, Any]], Awaitable[Any]]

RAFT_REMOVE_BY_ID = "Operator.RaftRemovePeerByID"
RAFT_REMOVE_BY_ADDRESS = "Operator.RaftRemovePeerByAddress"
RAFT_TRANSFER_LEADER = "Operator.RaftTransferLeader"
SERVER_HEALTH = "Operator.ServerHealth"
AUTOPILOT_STATE = "Operator.AutopilotState"


class OperatorEndpoint:
    def __init__(self, server: Server, raft: Any, autopilot: Autopilot | None,
                 defaults: AutopilotConfig) -> None:
        self.srv = server
        self.raft = raft
        self.autopilot = autopilot
        self.defaults = defaults

    # -- leader forwarding --------------------------------------------------------------------

    async def _on_leader(self, method: str, args: dict[str, Any]) -> tuple[bool, Any]:
        """(True, reply) when the leader answered for us; (False, None) when we lead."""
        if self.raft.is_leader():
            return False, None
        link = self.srv.leader_link
        if link is None:
            return False, None
        try:
            return True, await link.call(method, args)
        except Exception as exc:
            if is_local_leader(exc):
                return False, None
            raise

    # -- raft ---------------------------------------------------------------------------------

    async def raft_configuration(self, opts: QueryOptions) -> dict[str, Any]:
        """Operator.RaftGetConfiguration (no leader and not stale: "No cluster leader")."""
        answer: dict[str, Any] = {}

        def read(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            answer.update(self.srv.raft_configuration())
            return int(answer.get("Index") or 0), False

        opts.min_query_index = 0
        await self.srv.read(opts, read)
        return answer

    async def remove_peer(self, server_id: str = "", address: str = "") -> None:
        """Operator.RaftRemovePeerByID / ...ByAddress: a human asked, so a peer that is not
        in the configuration is an error rather than a no-op."""
        method = RAFT_REMOVE_BY_ADDRESS if address else RAFT_REMOVE_BY_ID
        forwarded, _ = await self._on_leader(method, {"ID": server_id, "Address": address})
        if forwarded:
            return
        conf, _ = self.raft.get_configuration()
        if address:
            match = next((s for s in conf.servers if s.address == address), None)
            if match is None:
                raise RPCError(f'address "{address}" was not found in the Raft configuration')
        else:
            match = conf.get(server_id)
            if match is None:
                raise RPCError(f'id "{server_id}" was not found in the Raft configuration')
        try:
            await self.raft.remove_server(match.id)
        except Exception as exc:
            log.warning("Failed to remove Raft server: address=%s error=%s", match.address, exc)
            raise RPCError(str(exc)) from None
        log.warning("Removed Raft server: address=%s id=%s", match.address, match.id)

    async def transfer_leader(self, server_id: str = "") -> bool:
        """Hand leadership to `server_id`, or to the most up-to-date voter."""
        forwarded, reply = await self._on_leader(RAFT_TRANSFER_LEADER, {"ID": server_id})
        if forwarded:
            return bool(reply.get("Success")) if isinstance(reply, dict) else bool(reply)
        if server_id:
            conf, _ = self.raft.get_configuration()
            if conf.get(server_id) is None:
                raise RPCError(f"cannot find peer {server_id}")
        try:
            await self.raft.leadership_transfer(server_id)
        except Exception as exc:
            raise RPCError(str(exc)) from None
        return True

    # -- autopilot ----------------------------------------------------------------------------

    def current_config(self) -> AutopilotConfig:
        """The replicated record, or the agent's own settings before one is written."""
        config = self.srv.store.autopilot_config
        return config if config is not None else self.defaults

    async def ensure_config(self) -> None:
        """On a new leader: write the agent's `autopilot {}` settings if no record exists
        (Consul's getOrCreateAutopilotConfig)."""
        if self.srv.store.autopilot_config is not None:
            return
        log.info("initializing autopilot configuration")
        await self.srv.apply(encode(MessageType.AUTOPILOT, {
            "Datacenter": self.srv.datacenter, "Config": self.defaults.to_wire(),
            "CAS": False}))

    async def get_config(self, opts: QueryOptions) -> tuple[QueryMeta, AutopilotConfig]:
        found: list[AutopilotConfig | None] = [None]

        def read(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, found[0] = store.autopilot_get_config(ws)
            return index, found[0] is None

        opts.min_query_index = 0
        meta = await self.srv.read(opts, read)
        if found[0] is None:
            raise RPCError("autopilot config not initialized yet")
        return meta, found[0]

    async def set_config(self, config: AutopilotConfig, cas: int | None) -> bool:
        """Write the record; with `cas`, only if it was last modified at that index."""
        if cas is not None:
            config = replace(config, modify_index=cas)
        result = await self.srv.apply(encode(MessageType.AUTOPILOT, {
            "Datacenter": self.srv.datacenter, "Config": config.to_wire(),
            "CAS": cas is not None}))
        return True if cas is None else bool(result)

    async def _leader_view(self, method: str) -> tuple[dict[str, Any] | None, State | None]:
        """The leader's answer when it is elsewhere, else (None, this leader's state)."""
        forwarded, reply = await self._on_leader(method, {})
        if forwarded:
            return dict(reply), None
        if not self.raft.is_leader():
            raise RPCError("No cluster leader")
        return None, self.autopilot.state if self.autopilot is not None else None

    async def server_health(self) -> dict[str, Any]:
        """api.OperatorHealthReply from the leader's autopilot (all-unhealthy and empty
        before its first round, as Consul answers then)."""
        reply, state = await self._leader_view(SERVER_HEALTH)
        if reply is not None:
            return reply
        if state is None:
            return {"Healthy": False, "FailureTolerance": 0, "Servers": None}
        return state.to_health()

    async def autopilot_state(self) -> dict[str, Any]:
        reply, state = await self._leader_view(AUTOPILOT_STATE)
        if reply is not None:
            return reply
        if state is None:
            raise RPCError("Autopilot is not yet initialized")
        return state.to_state()
