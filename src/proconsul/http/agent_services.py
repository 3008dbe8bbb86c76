"""/v1/agent services, checks, TTL updates, maintenance and local health (Consul's
agent/agent_endpoint.go).

These answer from the agent's memory, never from the catalog: a service is visible here the
moment it is registered, before anti-entropy has copied it. So there is no index-based
blocking; `/v1/agent/service/:id` blocks on a content hash instead, which is what Consul's
clients (Envoy bootstrap, consul-template) poll with.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from proconsul.agent.definitions import duration
from proconsul.agent.local_state import NODE_MAINT_ID, SERVICE_MAINT_PREFIX
from proconsul.errors import BadRequest, NotFound
from proconsul.filter import compile_filter
from proconsul.http import encode
from proconsul.http.app import APIApp, text_response
from proconsul.http.params import check_enterprise_meta, parse_token
from proconsul.http.request import Request, Response
from proconsul.structs.catalog import CHECK_FIELDS, HEALTH_STATUSES, SERVICE_FIELDS

if TYPE_CHECKING:
    from proconsul.http.backend import LocalAgentBackend
    from proconsul.structs.catalog import HealthCheck, NodeService

AGENT_SERVICE_FIELDS = (*SERVICE_FIELDS, "Datacenter")
#: Longest hash-blocking wait, as for index-based blocking queries.
MAX_WAIT = 600.0
DEFAULT_WAIT = 300.0
_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
          "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}
_STATUS_CODES = {"passing": 200, "warning": 429, "critical": 503, "maintenance": 503}


def agent_service(svc: NodeService, datacenter: str) -> dict[str, Any]:
    """The AgentService shape (no Raft indexes: this is agent memory)."""
    out: dict[str, Any] = {}
    if svc.kind:
        out["Kind"] = svc.kind
    out.update(ID=svc.id, Service=svc.service, Tags=list(svc.tags), Meta=dict(svc.meta),
               Port=svc.port, Address=svc.address)
    if svc.socket_path:
        out["SocketPath"] = svc.socket_path
    if svc.tagged_addresses:
        out["TaggedAddresses"] = dict(svc.tagged_addresses)
    out["Weights"] = dict(svc.weights)
    out["EnableTagOverride"] = svc.enable_tag_override
    if svc.proxy:
        out["Proxy"] = dict(svc.proxy)
    if svc.connect:
        out["Connect"] = dict(svc.connect)
    out["Datacenter"] = datacenter
    return out


def content_hash(obj: dict[str, Any]) -> str:
    """An opaque hash of a service view; clients only compare it for equality."""
    return hashlib.blake2b(encode.dumps(obj, False, False), digest_size=8).hexdigest()


def aggregated_status(checks: list[HealthCheck]) -> str:
    """Maintenance beats critical beats warning beats passing (api.HealthChecks)."""
    status = "passing"
    for c in checks:
        if c.check_id == NODE_MAINT_ID or c.check_id.startswith(SERVICE_MAINT_PREFIX):
            return "maintenance"
        if c.status == "critical":
            status = "critical"
        elif c.status == "warning" and status == "passing":
            status = "warning"
    return status


def parse_bool_arg(req: Request, name: str) -> bool:
    raw = req.arg(name)
    if raw is None or (raw == "" and not req.has(name)):
        raise BadRequest(f"Missing value for {name}")
    value = _BOOLS.get(raw)
    if value is None:
        raise BadRequest(f'Invalid value for {name}: "{raw}"')
    return value


def wants_text(req: Request) -> bool:
    if req.arg("format") == "text":
        return True
    return req.headers.get("accept", "").startswith("text/plain")


def _json_body(req: Request) -> dict[str, Any]:
    if not req.body:
        return {}
    try:
        doc = encode.loads(req.body)
    except encode.JSONDecodeError as err:
        raise BadRequest(f"Request decode failed: {err}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise BadRequest("Request decode failed: json: cannot unmarshal into object")
    return doc


def _tail(req: Request, prefix: str) -> str:
    return req.path[len(prefix):]


class AgentServiceHandlers:
    def __init__(self, app: APIApp, local: LocalAgentBackend) -> None:
        self.app = app
        self.local = local
        add = app.add
        add("/v1/agent/services", ("GET",), self.services)
        add("/v1/agent/service/register", ("PUT",), self.register_service)
        add("/v1/agent/service/deregister/", ("PUT",), self.deregister_service)
        add("/v1/agent/service/maintenance/", ("PUT",), self.service_maintenance)
        add("/v1/agent/service/", ("GET",), self.service)
        add("/v1/agent/checks", ("GET",), self.checks)
        add("/v1/agent/check/register", ("PUT",), self.register_check)
        add("/v1/agent/check/deregister/", ("PUT",), self.deregister_check)
        add("/v1/agent/check/pass/", ("PUT",), self.check_pass)
        add("/v1/agent/check/warn/", ("PUT",), self.check_warn)
        add("/v1/agent/check/fail/", ("PUT",), self.check_fail)
        add("/v1/agent/check/update/", ("PUT",), self.check_update)
        add("/v1/agent/maintenance", ("PUT",), self.node_maintenance)
        add("/v1/agent/health/service/name/", ("GET",), self.health_by_name)
        add("/v1/agent/health/service/id/", ("GET",), self.health_by_id)

    # -- services -----------------------------------------------------------------------------

    async def services(self, req: Request) -> Response:
        parse_token(req)
        check_enterprise_meta(req)
        dc = self.local.datacenter
        out = {sid: agent_service(s, dc) for sid, s in sorted(self.local.services().items())}
        expr = req.arg("filter")
        if expr:
            out = compile_filter(expr, AGENT_SERVICE_FIELDS).select_map(out)
        return self.app.json(req, out)

    def _service_view(self, service_id: str) -> dict[str, Any] | None:
        svc = self.local.service(service_id)
        if svc is None:
            return None
        view = agent_service(svc, self.local.datacenter)
        view["ContentHash"] = content_hash(view)
        return view

    async def service(self, req: Request) -> Response:
        parse_token(req)
        service_id = _tail(req, "/v1/agent/service/")
        if not service_id:
            raise BadRequest("Missing service ID")
        wanted = req.arg("hash") or ""
        wait = DEFAULT_WAIT
        if req.arg("wait"):
            wait = min(duration(req.arg("wait"), "wait"), MAX_WAIT)
        deadline = time.monotonic() + wait
        while True:
            view = self._service_view(service_id)
            if view is None:
                raise NotFound(f"unknown service ID: {service_id}")
            remaining = deadline - time.monotonic()
            if not wanted or view["ContentHash"] != wanted or remaining <= 0:
                return self.app.json(req, view,
                                     headers=[("X-Consul-Contenthash", view["ContentHash"])])
            await self.local.wait_change(remaining)

    async def register_service(self, req: Request) -> Response:
        parse_token(req)
        check_enterprise_meta(req)
        replace = req.has("replace-existing-checks") and (
            req.arg("replace-existing-checks") or "true").lower() not in ("0", "false")
        await self.local.register_service(_json_body(req), replace)
        return Response(200, b"", [])

    async def deregister_service(self, req: Request) -> Response:
        parse_token(req)
        service_id = _tail(req, "/v1/agent/service/deregister/")
        if not service_id:
            raise BadRequest("Missing service ID")
        await self.local.deregister_service(service_id)
        return Response(200, b"", [])

    async def service_maintenance(self, req: Request) -> Response:
        parse_token(req)
        service_id = _tail(req, "/v1/agent/service/maintenance/")
        if not service_id:
            raise BadRequest("Missing service ID")
        enable = parse_bool_arg(req, "enable")
        await self.local.service_maintenance(service_id, enable, req.arg("reason") or "")
        return Response(200, b"", [])

    async def node_maintenance(self, req: Request) -> Response:
        parse_token(req)
        enable = parse_bool_arg(req, "enable")
        await self.local.node_maintenance(enable, req.arg("reason") or "")
        return Response(200, b"", [])

    # -- checks -------------------------------------------------------------------------------

    async def checks(self, req: Request) -> Response:
        parse_token(req)
        check_enterprise_meta(req)
        out = {cid: c.to_api() for cid, c in sorted(self.local.checks().items())}
        expr = req.arg("filter")
        if expr:
            out = compile_filter(expr, CHECK_FIELDS).select_map(out)
        return self.app.json(req, out)

    async def register_check(self, req: Request) -> Response:
        parse_token(req)
        check_enterprise_meta(req)
        await self.local.register_check(_json_body(req))
        return Response(200, b"", [])

    async def deregister_check(self, req: Request) -> Response:
        parse_token(req)
        await self.local.deregister_check(_tail(req, "/v1/agent/check/deregister/"))
        return Response(200, b"", [])

    async def _ttl(self, req: Request, prefix: str, status: str) -> Response:
        parse_token(req)
        await self.local.update_ttl(_tail(req, prefix), status, req.arg("note") or "")
        return Response(200, b"", [])

    async def check_pass(self, req: Request) -> Response:
        return await self._ttl(req, "/v1/agent/check/pass/", "passing")

    async def check_warn(self, req: Request) -> Response:
        return await self._ttl(req, "/v1/agent/check/warn/", "warning")

    async def check_fail(self, req: Request) -> Response:
        return await self._ttl(req, "/v1/agent/check/fail/", "critical")

    async def check_update(self, req: Request) -> Response:
        parse_token(req)
        body = {k.lower(): v for k, v in _json_body(req).items()}
        status = body.get("status") or ""
        if status not in HEALTH_STATUSES:
            raise BadRequest(f"Invalid check status: '{status}'")
        output = body.get("output") or ""
        await self.local.update_ttl(_tail(req, "/v1/agent/check/update/"), status,
                                    str(output))
        return Response(200, b"", [])

    # -- local health -------------------------------------------------------------------------

    def _info(self, svc: NodeService) -> tuple[str, dict[str, Any]]:
        checks = self.local.node_checks() + self.local.service_checks(svc.id)
        status = aggregated_status(checks)
        return status, {
            "AggregatedStatus": status,
            "Service": agent_service(svc, self.local.datacenter),
            "Checks": [c.to_api() for c in checks],
        }

    def _health_answer(self, req: Request, status: str, code: int, body: Any,
                       reason: str | None = None) -> Response:
        reason = reason or status
        headers = [("X-Consul-Reason", reason)]
        if wants_text(req):
            return text_response(code, reason, headers)
        return self.app.json(req, body, status=code, headers=headers)

    async def health_by_id(self, req: Request) -> Response:
        parse_token(req)
        service_id = _tail(req, "/v1/agent/health/service/id/")
        if not service_id:
            raise BadRequest("Missing serviceID")
        svc = self.local.service(service_id)
        if svc is None:
            return self._health_answer(
                req, "critical", 404,
                {"AggregatedStatus": "critical", "Service": None, "Checks": None},
                f"ServiceId {service_id} not found")
        status, info = self._info(svc)
        return self._health_answer(req, status, _STATUS_CODES[status], info)

    async def health_by_name(self, req: Request) -> Response:
        parse_token(req)
        name = _tail(req, "/v1/agent/health/service/name/")
        if not name:
            raise BadRequest("Missing service Name")
        infos = [self._info(s) for _, s in sorted(self.local.services().items())
                 if s.service == name]
        if not infos:
            return self._health_answer(req, "critical", 404, [],
                                       f"ServiceName {name} Not Found")
        code = max(_STATUS_CODES[status] for status, _ in infos)
        worst = next(s for s, _ in infos if _STATUS_CODES[s] == code)
        if code == 503 and any(s == "critical" for s, _ in infos):
            worst = "critical"
        return self._health_answer(req, worst, code, [info for _, info in infos])
