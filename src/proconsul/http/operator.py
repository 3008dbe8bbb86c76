"""/v1/operator/raft/* and /v1/operator/autopilot/* (Consul's agent/operator_endpoint.go).

Raft: the configuration (stale reads allowed, so it answers without a leader), removal of a
peer by `?id=` or `?address=` (exactly one), and leadership transfer (`?id=` optional).
Autopilot: the replicated configuration (GET, and PUT with optional `?cas=`; the body is
api.AutopilotConfiguration over Consul's defaults, durations as Go strings or nanoseconds),
server health (429 while any server is unhealthy, so load balancers can probe it) and the
autopilot state.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Protocol

from proconsul.config.duration import parse_duration_ns
from proconsul.errors import BadRequest, ProconsulError, RPCError
from proconsul.http.app import APIApp
from proconsul.http.params import go_uint_error, json_kind, parse_query, parse_uint
from proconsul.http.request import Request, Response
from proconsul.state.autopilot import AutopilotConfig
from proconsul.structs.query import QueryMeta, QueryOptions

_NS = 1_000_000_000


class OperatorBackend(Protocol):
    """server/operator_endpoint.py on a server; the same calls over RPC on a client."""

    async def raft_configuration(self, opts: QueryOptions) -> dict[str, Any]: ...

    async def remove_peer(self, server_id: str = "", address: str = "") -> None: ...

    async def transfer_leader(self, server_id: str = "") -> bool: ...

    async def get_config(self, opts: QueryOptions) -> tuple[QueryMeta, AutopilotConfig]: ...

    async def set_config(self, config: AutopilotConfig, cas: int | None) -> bool: ...

    async def server_health(self) -> dict[str, Any]: ...

    async def autopilot_state(self) -> dict[str, Any]: ...


# -- the autopilot body -----------------------------------------------------------------------

_FIELDS = {
    "cleanupdeadservers": ("CleanupDeadServers", "cleanup_dead_servers", "bool"),
    "lastcontactthreshold": ("LastContactThreshold", "last_contact_threshold", "duration"),
    "maxtrailinglogs": ("MaxTrailingLogs", "max_trailing_logs", "uint64"),
    "minquorum": ("MinQuorum", "min_quorum", "uint"),
    "serverstabilizationtime": ("ServerStabilizationTime", "server_stabilization_time",
                                "duration"),
    "redundancyzonetag": ("RedundancyZoneTag", "redundancy_zone_tag", "string"),
    "disableupgrademigration": ("DisableUpgradeMigration", "disable_upgrade_migration", "bool"),
    "upgradeversiontag": ("UpgradeVersionTag", "upgrade_version_tag", "string"),
    "createindex": ("CreateIndex", "create_index", "uint64"),
    "modifyindex": ("ModifyIndex", "modify_index", "uint64"),
}


def decode_autopilot(raw: bytes) -> AutopilotConfig:
    """api.AutopilotConfiguration decoded over api.NewAutopilotConfiguration()'s defaults, as
    Go's encoding/json reads it (keys case-insensitive, unknown keys ignored)."""
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Error parsing autopilot config: {exc}") from None
    config = AutopilotConfig()
    if body is None:
        return config
    if not isinstance(body, dict):
        raise BadRequest("Error parsing autopilot config: json: cannot unmarshal "
                         f"{json_kind(body)} into Go value of type api.AutopilotConfiguration")
    values: dict[str, Any] = {}
    for key, value in body.items():
        spec = _FIELDS.get(key.lower())
        if spec is None or value is None:
            continue
        go_name, attr, go_type = spec
        values[attr] = _field(go_name, go_type, value)
    return replace(config, **values)


def _field(go_name: str, go_type: str, value: Any) -> Any:
    def mismatch() -> BadRequest:
        shown = "*api.ReadableDuration" if go_type == "duration" else go_type
        return BadRequest(
            f"Error parsing autopilot config: json: cannot unmarshal {json_kind(value)} into Go "
            f"struct field AutopilotConfiguration.{go_name} of type {shown}")

    if go_type == "duration":
        if isinstance(value, str):
            try:
                return parse_duration_ns(value) / _NS
            except (ValueError, ProconsulError) as exc:
                raise BadRequest(f"Error parsing autopilot config: {exc}") from None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value) / _NS
        raise mismatch()
    if go_type == "bool":
        if not isinstance(value, bool):
            raise mismatch()
        return value
    if go_type == "string":
        if not isinstance(value, str):
            raise mismatch()
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise mismatch()
    return value


# -- handlers ---------------------------------------------------------------------------------

class OperatorHandlers:
    def __init__(self, app: APIApp, operator: OperatorBackend) -> None:
        self.app = app
        self.op = operator
        app.add("/v1/operator/raft/configuration", ("GET",), self.raft_configuration)
        app.add("/v1/operator/raft/peer", ("DELETE",), self.raft_peer)
        app.add("/v1/operator/raft/transfer-leader", ("POST",), self.transfer_leader)
        app.add("/v1/operator/autopilot/configuration", ("GET", "PUT"), self.autopilot_config)
        app.add("/v1/operator/autopilot/health", ("GET",), self.server_health)
        app.add("/v1/operator/autopilot/state", ("GET",), self.autopilot_state)

    async def raft_configuration(self, req: Request) -> Response:
        return self.app.json(req, await self.op.raft_configuration(parse_query(req)))

    async def raft_peer(self, req: Request) -> Response:
        has_id, has_address = req.has("id"), req.has("address")
        if not has_id and not has_address:
            raise BadRequest("Must specify either ?id with the server's ID or ?address with "
                             "IP:port of peer to remove")
        if has_id and has_address:
            raise BadRequest("Must specify only one of ?id or ?address")
        if has_id:
            await self.op.remove_peer(server_id=req.arg("id") or "")
        else:
            await self.op.remove_peer(address=req.arg("address") or "")
        return Response(200, b"", [])

    async def transfer_leader(self, req: Request) -> Response:
        ok = await self.op.transfer_leader(req.arg("id") or "")
        if not ok:
            raise RPCError("Failed to transfer Leader")
        return self.app.json(req, {"Success": True})

    async def autopilot_config(self, req: Request) -> Response:
        if req.method == "GET":
            _, config = await self.op.get_config(parse_query(req))
            return self.app.json(req, config.to_api())
        config = decode_autopilot(req.body)
        cas: int | None = None
        if req.has("cas"):
            text = req.arg("cas") or ""
            parsed = parse_uint(text)
            if parsed is None:
                raise BadRequest(f"Error parsing cas value: {go_uint_error(text)}")
            cas = parsed
        result = await self.op.set_config(config, cas)
        return self.app.json(req, True if cas is None else result)

    async def server_health(self, req: Request) -> Response:
        parse_query(req)
        reply = await self.op.server_health()
        return self.app.json(req, reply, status=200 if reply.get("Healthy") else 429)

    async def autopilot_state(self, req: Request) -> Response:
        parse_query(req)
        return self.app.json(req, await self.op.autopilot_state())
