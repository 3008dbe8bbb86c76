"""Service and check definitions, from an HTTP body or a config-file block, into what the agent
keeps: a NodeService and the CheckDefinitions that run for it (Consul's
agent/structs/service_definition.go, check_definition.go and check_type.go).

One decoder serves both sources because Consul's own decoding folds case and underscores: the
Go client sends `ScriptArgs`, the docs say `Args`, config files say `args` or `script_args`, and
all of them must mean the same thing. Only the struct keys are folded; the keys of user maps
(Meta, TaggedAddresses, Header) keep their spelling. Validation errors carry Consul's texts,
because clients and tooling match on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proconsul.agent.checks.base import DEFAULT_OUTPUT_MAX_SIZE, CheckDefinition
from proconsul.config.duration import format_duration_ns, parse_duration_ns
from proconsul.errors import BadRequest, ConfigError
from proconsul.http.params import json_kind
from proconsul.structs.catalog import DEFAULT_WEIGHTS, HEALTH_STATUSES, HealthCheck, NodeService

#: Addresses meaning "any interface", which no client can dial (Consul's ipaddr.IsAny).
ANY_ADDRESSES = frozenset({"0.0.0.0", "::", "[::]"})

#: Folded key -> CheckDefinition attribute, for every spelling Consul accepts.
_CHECK_KEYS = {
    "notes": "notes", "status": "status", "http": "http", "method": "method",
    "body": "body", "tlsservername": "tls_server_name", "tlsskipverify": "tls_skip_verify",
    "disableredirects": "disable_redirects", "tcp": "tcp", "tcpusetls": "tcp_use_tls",
    "udp": "udp", "grpc": "grpc", "grpcusetls": "grpc_use_tls", "h2ping": "h2ping",
    "h2pingusetls": "h2ping_use_tls", "shell": "shell",
    "dockercontainerid": "docker_container_id", "osservice": "os_service",
    "aliasnode": "alias_node", "aliasservice": "alias_service",
    "successbeforepassing": "success_before_passing",
    "failuresbeforewarning": "failures_before_warning",
    "failuresbeforecritical": "failures_before_critical",
}
_CHECK_DURATIONS = {
    "interval": "interval", "timeout": "timeout", "ttl": "ttl",
    "deregistercriticalserviceafter": "deregister_critical_service_after",
}
_MIN_INTERVAL = 1.0


def fold(body: Mapping[str, Any]) -> dict[str, Any]:
    """Struct keys folded as Go's decoder matches them (case and underscores ignored);
    null values dropped, as Go leaves such fields at their zero value."""
    return {k.replace("_", "").lower(): v for k, v in body.items() if v is not None}


def duration(value: Any, name: str) -> float:
    """A Go duration as text (`10s`) or integer nanoseconds, in seconds."""
    if isinstance(value, bool):
        raise BadRequest(f"Request decode failed: invalid duration for {name}")
    if isinstance(value, (int, float)):
        return float(value) / 1e9
    if isinstance(value, str):
        if not value:
            return 0.0
        try:
            return parse_duration_ns(value) / 1e9
        except ConfigError as err:
            raise BadRequest(f"Request decode failed: {err}") from None
    raise BadRequest(f"Request decode failed: invalid duration for {name}")


def go_duration(seconds: float) -> str:
    return format_duration_ns(round(seconds * 1e9))


@dataclass(slots=True)
class ServiceRegistration:
    """A decoded service with its checks and the token anti-entropy would use for it."""

    service: NodeService
    checks: list[CheckDefinition] = field(default_factory=list)
    token: str = ""


def _check_fields(f: dict[str, Any], defn: CheckDefinition) -> None:
    for key, attr in _CHECK_KEYS.items():
        if key in f:
            setattr(defn, attr, f[key])
    for key, attr in _CHECK_DURATIONS.items():
        if key in f:
            setattr(defn, attr, duration(f[key], key))
    args = f.get("args", f.get("scriptargs"))
    if args:
        defn.args = [str(a) for a in args]
    header = f.get("header")
    if header:
        defn.header = {k: [str(x) for x in (v if isinstance(v, list) else [v])]
                       for k, v in header.items()}
    if "outputmaxsize" in f:
        defn.output_max_size = int(f["outputmaxsize"])


def validate_check(defn: CheckDefinition) -> None:
    """Consul's CheckType.Validate, with its texts; raises BadRequest(`Invalid check: ...`)."""
    interval_kind = bool(defn.args or defn.docker_container_id or defn.http or defn.tcp
                         or defn.udp or defn.grpc or defn.h2ping or defn.os_service)
    alias = bool(defn.alias_service or defn.alias_node)
    reason = ""
    if defn.interval > 0 and defn.ttl > 0:
        reason = "Interval and TTL cannot both be specified"
    elif interval_kind and defn.interval <= 0:
        reason = "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks"
    elif alias and defn.interval > 0:
        reason = "Interval cannot be set for Alias checks"
    elif alias and defn.ttl > 0:
        reason = "TTL must be not be set for Alias checks"
    elif not interval_kind and not alias and defn.ttl <= 0:
        reason = "TTL must be > 0 for TTL checks"
    elif defn.output_max_size < 0:
        reason = "MaxOutputMaxSize must be positive"
    if reason:
        raise BadRequest(f"Invalid check: {reason}")
    if interval_kind and defn.interval < _MIN_INTERVAL:
        defn.interval = _MIN_INTERVAL


def decode_check(body: Mapping[str, Any], output_max_size: int = DEFAULT_OUTPUT_MAX_SIZE
                 ) -> CheckDefinition:
    """A stand-alone check (`/v1/agent/check/register`, a config `check` block)."""
    f = fold(body)
    name = f.get("name") or ""
    if not name:
        raise BadRequest("Missing check name")
    check_id = f.get("checkid") or f.get("id") or name
    status = f.get("status") or ""
    if status and status not in HEALTH_STATUSES:
        raise BadRequest("Bad check status")
    defn = CheckDefinition(check_id=check_id, name=name, output_max_size=output_max_size)
    _check_fields(f, defn)
    defn.status = status or "critical"
    defn.service_id = f.get("serviceid") or ""
    defn.extra["token"] = f.get("token") or ""
    validate_check(defn)
    return defn


def _service_check(body: Mapping[str, Any], svc: NodeService, index: int, total: int,
                   output_max_size: int) -> CheckDefinition:
    f = fold(body)
    check_id = f.get("checkid") or f.get("id") or ""
    if not check_id:
        check_id = f"service:{svc.id}" + (f":{index + 1}" if total > 1 else "")
    status = f.get("status") or ""
    if status and status not in HEALTH_STATUSES:
        raise BadRequest("Status for checks must 'passing', 'warning', 'critical'")
    defn = CheckDefinition(
        check_id=check_id, name=f.get("name") or f"Service '{svc.service}' check",
        service_id=svc.id, service_name=svc.service, output_max_size=output_max_size,
    )
    _check_fields(f, defn)
    defn.status = status or "critical"
    validate_check(defn)
    return defn


def _tagged_addresses(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, addr in (value or {}).items():
        a = fold(addr) if isinstance(addr, Mapping) else {}
        out[key] = {"Address": a.get("address") or "", "Port": int(a.get("port") or 0)}
    return out


def _weights(value: Any) -> dict[str, int]:
    if not value:
        return dict(DEFAULT_WEIGHTS)
    w = fold(value)
    weights = {"Passing": int(w.get("passing") or 0), "Warning": int(w.get("warning") or 0)}
    if weights["Passing"] < 1:
        raise BadRequest("Invalid Weights: Passing must be greater than 0, "
                         f"got {weights['Passing']}")
    return weights


def _upper_keys(value: Any) -> dict[str, Any]:
    """Mesh blocks from config files arrive snake_case; the API returns them PascalCase."""
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = key if key[:1].isupper() else "".join(p.capitalize() for p in key.split("_"))
        out[name] = _upper_keys(item) if isinstance(item, Mapping) else item
    return out


#: Folded key -> (Go field, Go type, accepts) for the fields whose JSON type is checked.
_SERVICE_TYPES: dict[str, tuple[str, str, Any]] = {
    "name": ("Name", "string", lambda v: isinstance(v, str)),
    "id": ("ID", "string", lambda v: isinstance(v, str)),
    "address": ("Address", "string", lambda v: isinstance(v, str)),
    "port": ("Port", "int", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "tags": ("Tags", "[]string",
             lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v)),
    "meta": ("Meta", "map[string]string",
             lambda v: isinstance(v, dict) and all(isinstance(t, str) for t in v.values())),
}


def _check_types(f: dict[str, Any]) -> None:
    """Refuse wrongly typed fields with Go's decode error instead of coercing them."""
    for key, (go_name, go_type, ok) in _SERVICE_TYPES.items():
        if key in f and not ok(f[key]):
            raise BadRequest(
                f"Request decode failed: json: cannot unmarshal {json_kind(f[key])} into Go "
                f"struct field ServiceDefinition.{go_name} of type {go_type}")


def decode_service(body: Mapping[str, Any], node: str,
                   output_max_size: int = DEFAULT_OUTPUT_MAX_SIZE) -> ServiceRegistration:
    """A service definition with its embedded checks, with Consul's default IDs and names."""
    f = fold(body)
    _check_types(f)
    name = f.get("name") or f.get("service") or ""
    if not name:
        raise BadRequest("Missing service name")
    address = f.get("address") or ""
    if address in ANY_ADDRESSES:
        raise BadRequest("Invalid service address")
    meta = dict(f.get("meta") or {})
    for key in meta:
        if key.startswith("consul-"):
            raise BadRequest(f"Invalid Service Meta: Key prefix 'consul-' is reserved for "
                             f"internal use ({key})")
    svc = NodeService(
        node=node, id=f.get("id") or name, service=name, kind=f.get("kind") or "",
        tags=tuple(f.get("tags") or ()), address=address,
        tagged_addresses=_tagged_addresses(f.get("taggedaddresses")), meta=meta,
        port=int(f.get("port") or 0), socket_path=f.get("socketpath") or "",
        weights=_weights(f.get("weights")),
        enable_tag_override=bool(f.get("enabletagoverride")),
        proxy=_upper_keys(f.get("proxy")), connect=_upper_keys(f.get("connect")),
    )
    raw_checks = list(f.get("checks") or ())
    if f.get("check"):
        raw_checks.insert(0, f["check"])
    raw_checks = [c for c in raw_checks if c]
    checks = [_service_check(c, svc, i, len(raw_checks), output_max_size)
              for i, c in enumerate(raw_checks)]
    return ServiceRegistration(svc, checks, f.get("token") or "")


def health_check(defn: CheckDefinition, node: str, service: NodeService | None) -> HealthCheck:
    """The catalog record of a check as the agent first registers it."""
    definition: dict[str, Any] = {}
    if defn.http:
        definition.update(HTTP=defn.http, Header=defn.header, Method=defn.method,
                          Body=defn.body, TLSSkipVerify=defn.tls_skip_verify)
    if defn.tcp:
        definition["TCP"] = defn.tcp
    if defn.udp:
        definition["UDP"] = defn.udp
    if defn.grpc:
        definition["GRPC"] = defn.grpc
    if defn.args:
        definition["ScriptArgs"] = list(defn.args)
    if defn.interval:
        definition["Interval"] = go_duration(defn.interval)
    if defn.timeout:
        definition["Timeout"] = go_duration(defn.timeout)
    if defn.ttl:
        definition["TTL"] = go_duration(defn.ttl)
    return HealthCheck(
        node=node, check_id=defn.check_id, name=defn.name, status=defn.status,
        notes=defn.notes, service_id=service.id if service else "",
        service_name=service.service if service else "",
        service_tags=service.tags if service else (), type=defn.type,
        interval=go_duration(defn.interval) if defn.interval else "",
        timeout=go_duration(defn.timeout) if defn.timeout else "",
        definition=definition,
    )
