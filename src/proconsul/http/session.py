"""/v1/session (Consul's agent/session_endpoint.go)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proconsul.config.duration import parse_duration_ns
from proconsul.errors import BadRequest, ConfigError, NotFound
from proconsul.http import encode
from proconsul.http.app import APIApp
from proconsul.http.params import check_enterprise_meta, parse_query, parse_token
from proconsul.http.request import Request, Response
from proconsul.structs.session import (
    BEHAVIOR_RELEASE,
    DEFAULT_LOCK_DELAY_NS,
    SERF_CHECK_ID,
    ServiceCheck,
    Session,
)

if TYPE_CHECKING:
    from proconsul.http.backend import SessionBackend

#: A numeric lock-delay below this many nanoseconds is taken as seconds (users send `15`).
LOCK_DELAY_MIN_THRESHOLD = 1000


def decode_failed(detail: str) -> BadRequest:
    return BadRequest(f"Request decode failed: {detail}")


def _lock_delay_ns(value: Any) -> int:
    if isinstance(value, bool):
        raise decode_failed("LockDelay: invalid duration")
    if isinstance(value, (int, float)):
        ns = int(value)
    elif isinstance(value, str):
        try:
            ns = parse_duration_ns(value)
        except ConfigError as err:
            raise decode_failed(str(err)) from None
    else:
        raise decode_failed(f"LockDelay: cannot decode {type(value).__name__} as a duration")
    if ns < LOCK_DELAY_MIN_THRESHOLD:
        ns *= 1_000_000_000
    return ns


def _string(body: dict[str, Any], name: str, field: str, default: str) -> str:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise decode_failed(
            f"json: cannot unmarshal {type(value).__name__} into Go struct field "
            f"Session.{field} of type string"
        )
    return value


def _strings(body: dict[str, Any], name: str, field: str) -> list[str] | None:
    if name not in body:
        return None
    value = body[name]
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise decode_failed(
            f"json: cannot unmarshal into Go struct field Session.{field} of type []string"
        )
    return value


def session_from_body(raw: bytes, node: str) -> Session:
    """The session a create request asks for, with Consul's defaults and legacy `Checks`."""
    body: dict[str, Any] = {}
    if raw:
        try:
            decoded = encode.loads(raw)
        except encode.JSONDecodeError as err:
            raise decode_failed(str(err)) from None
        if decoded is not None:
            if not isinstance(decoded, dict):
                raise decode_failed(
                    "json: cannot unmarshal array into Go value of type structs.Session"
                )
            body = encode.fold_keys(decoded)
    lock_delay = DEFAULT_LOCK_DELAY_NS
    if body.get("lockdelay") is not None:
        lock_delay = _lock_delay_ns(body["lockdelay"])
    node_checks = _strings(body, "nodechecks", "NodeChecks")
    legacy = _strings(body, "checks", "Checks")
    # Consul's fixupEmptySessionChecks: both fields default to [serfHealth]; an empty legacy
    # `Checks` means "no checks at all", and an empty `NodeChecks` drops the legacy list.
    legacy_checks = [SERF_CHECK_ID] if legacy is None else legacy
    node_list = [SERF_CHECK_ID] if node_checks is None else node_checks
    if not legacy_checks:
        node_list = []
    elif legacy_checks == [SERF_CHECK_ID] or not node_list:
        legacy_checks = []
    checks = list(dict.fromkeys([*legacy_checks, *node_list]))
    service_checks: list[ServiceCheck] = []
    for sc in body.get("servicechecks") or []:
        if not isinstance(sc, dict):
            raise decode_failed("json: cannot unmarshal into Go struct field ServiceChecks")
        service_checks.append(ServiceCheck(str(sc.get("id", "")), str(sc.get("namespace", ""))))
    return Session(
        id="",
        node=_string(body, "node", "Node", node) or node,
        name=_string(body, "name", "Name", ""),
        node_checks=tuple(checks),
        service_checks=tuple(service_checks),
        lock_delay_ns=lock_delay,
        behavior=_string(body, "behavior", "Behavior", BEHAVIOR_RELEASE) or BEHAVIOR_RELEASE,
        ttl=_string(body, "ttl", "TTL", ""),
    )


class SessionHandlers:
    def __init__(self, app: APIApp, sessions: SessionBackend, node_name: str) -> None:
        self.app = app
        self.sessions = sessions
        self.node_name = node_name
        app.add("/v1/session/create", ("PUT",), self.create)
        app.add("/v1/session/destroy/", ("PUT",), self.destroy)
        app.add("/v1/session/renew/", ("PUT",), self.renew)
        app.add("/v1/session/info/", ("GET",), self.info)
        app.add("/v1/session/node/", ("GET",), self.node)
        app.add("/v1/session/list", ("GET",), self.list_all)

    async def create(self, req: Request) -> Response:
        parse_token(req)
        check_enterprise_meta(req)
        sess = session_from_body(req.body, self.node_name)
        sid = await self.sessions.create(sess)
        return self.app.json(req, {"ID": sid})

    async def destroy(self, req: Request) -> Response:
        check_enterprise_meta(req)
        sid = req.path[len("/v1/session/destroy/"):]
        if not sid:
            raise BadRequest("Missing session")
        await self.sessions.destroy(sid)
        return self.app.json(req, True)

    async def renew(self, req: Request) -> Response:
        check_enterprise_meta(req)
        sid = req.path[len("/v1/session/renew/"):]
        if not sid:
            raise BadRequest("Missing session")
        found = await self.sessions.renew(sid)
        if not found:
            raise NotFound(f"Session id '{sid}' not found")
        return self.app.json(req, [s.to_api() for s in found])

    async def info(self, req: Request) -> Response:
        opts = parse_query(req)
        sid = req.path[len("/v1/session/info/"):]
        if not sid:
            raise BadRequest("Missing session")
        meta, found = await self.sessions.get(sid, opts)
        return self.app.json(req, [s.to_api() for s in found], meta)

    async def node(self, req: Request) -> Response:
        opts = parse_query(req)
        node = req.path[len("/v1/session/node/"):]
        if not node:
            raise BadRequest("Missing node name")
        meta, found = await self.sessions.node_sessions(node, opts)
        return self.app.json(req, [s.to_api() for s in found], meta)

    async def list_all(self, req: Request) -> Response:
        opts = parse_query(req)
        meta, found = await self.sessions.list_all(opts)
        return self.app.json(req, [s.to_api() for s in found], meta)
