"""A client agent's Operator backend: the server's Operator.* calls over RPC (a server
forwards the leader-only ones to the leader)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proconsul.state.autopilot import AutopilotConfig
from proconsul.structs import wire as W
from proconsul.structs.query import QueryMeta, QueryOptions

if TYPE_CHECKING:
    from proconsul.agent.rpc_backend import RPCClient


class RPCOperator:
    def __init__(self, client: RPCClient) -> None:
        self.c = client

    async def raft_configuration(self, opts: QueryOptions) -> dict[str, Any]:
        reply = await self.c.read("Operator.RaftGetConfiguration", {}, opts)
        return {"Servers": reply.get("Servers") or [], "Index": int(reply.get("Index") or 0)}

    async def remove_peer(self, server_id: str = "", address: str = "") -> None:
        method = ("Operator.RaftRemovePeerByAddress" if address
                  else "Operator.RaftRemovePeerByID")
        await self.c.write(method, {"ID": server_id, "Address": address})

    async def transfer_leader(self, server_id: str = "") -> bool:
        reply = await self.c.write("Operator.RaftTransferLeader", {"ID": server_id})
        return bool(reply.get("Success")) if isinstance(reply, dict) else bool(reply)

    async def get_config(self, opts: QueryOptions) -> tuple[QueryMeta, AutopilotConfig]:
        reply = await self.c.read("Operator.AutopilotGetConfiguration", {}, opts)
        return W.meta_from_wire(reply), AutopilotConfig.from_wire(reply)

    async def set_config(self, config: AutopilotConfig, cas: int | None) -> bool:
        wire = config.to_wire()
        if cas is not None:
            wire["ModifyIndex"] = cas
        return bool(await self.c.write("Operator.AutopilotSetConfiguration",
                                       {"Config": wire, "CAS": cas is not None}))

    async def server_health(self) -> dict[str, Any]:
        return dict(await self.c.read("Operator.ServerHealth", {}))

    async def autopilot_state(self) -> dict[str, Any]:
        return dict(await self.c.read("Operator.AutopilotState", {}))
