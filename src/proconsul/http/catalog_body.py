"""Decoding of catalog request bodies (RegisterRequest, DeregisterRequest) as Go's
encoding/json does it for Consul.

Struct fields match case-insensitively and unknown fields are dropped, but the keys of user maps
(node meta, service meta, tagged addresses, check headers) keep their spelling: folding the whole
document would turn `Meta.Env` into `env`. Values of the wrong JSON type are refused with Go's
error text, so a string `Port` or a string `Tags` never reaches the store as something else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proconsul.errors import BadRequest
from proconsul.http import encode

#: A field decoder: (value, dotted Go path of the field) -> decoded value.
Decoder = Callable[[Any, str], Any]


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return f"number {value}" if isinstance(value, float) else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _mismatch(value: Any, path: str, go_type: str) -> BadRequest:
    root, _, field = path.partition(".")
    where = f"Go struct field {root}.{field}" if field else f"Go value of type {go_type}"
    suffix = f" of type {go_type}" if field else ""
    return BadRequest(
        f"Request decode failed: json: cannot unmarshal {_json_kind(value)} into {where}{suffix}"
    )


def _string(value: Any, path: str) -> Any:
    if not isinstance(value, str):
        raise _mismatch(value, path, "string")
    return value


def _int(value: Any, path: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _mismatch(value, path, "int")
    return value


def _bool(value: Any, path: str) -> Any:
    if not isinstance(value, bool):
        raise _mismatch(value, path, "bool")
    return value


def _strings(value: Any, path: str) -> Any:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _mismatch(value, path, "[]string")
    return value


def _string_map(value: Any, path: str) -> Any:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _mismatch(value, path, "map[string]string")
    return value


def _opaque(value: Any, path: str) -> Any:
    """Mesh configuration and check headers: stored and returned as sent."""
    return value


def _struct(go_type: str, **fields: Decoder) -> Decoder:
    by_key = {name.lower(): (name, dec) for name, dec in fields.items()}

    def decode(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise _mismatch(value, path, go_type)
        out: dict[str, Any] = {}
        for key, item in value.items():
            spec = by_key.get(key.replace("_", "").lower())
            if spec is None or item is None:
                continue
            name, dec = spec
            out[name] = dec(item, f"{path}.{name}")
        return out

    return decode


def _list_of(go_type: str, item: Decoder) -> Decoder:
    def decode(value: Any, path: str) -> Any:
        if not isinstance(value, list):
            raise _mismatch(value, path, go_type)
        return [item(v, path) for v in value if v is not None]

    return decode


def _map_of(go_type: str, item: Decoder) -> Decoder:
    def decode(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise _mismatch(value, path, go_type)
        return {k: item(v, path) for k, v in value.items() if v is not None}

    return decode


_S, _I, _B = _string, _int, _bool

_definition = _struct(
    "structs.HealthCheckDefinition",
    HTTP=_S, TLSServerName=_S, TLSSkipVerify=_B, Header=_opaque, Method=_S, Body=_S,
    DisableRedirects=_B, TCP=_S, TCPUseTLS=_B, UDP=_S, H2PING=_S, H2PingUseTLS=_B, GRPC=_S,
    GRPCUseTLS=_B, OSService=_S, Interval=_opaque, Timeout=_opaque,
    DeregisterCriticalServiceAfter=_opaque, ScriptArgs=_strings, DockerContainerID=_S,
    Shell=_S, AliasNode=_S, AliasService=_S, TTL=_opaque,
)
_check = _struct(
    "structs.HealthCheck",
    Node=_S, CheckID=_S, Name=_S, Status=_S, Notes=_S, Output=_S, ServiceID=_S,
    ServiceName=_S, ServiceTags=_strings, Type=_S, Interval=_opaque, Timeout=_opaque,
    ExposedPort=_I, Definition=_definition,
)
_service = _struct(
    "structs.NodeService",
    Kind=_S, ID=_S, Service=_S, Tags=_strings, Address=_S,
    TaggedAddresses=_map_of(
        "map[string]structs.ServiceAddress",
        _struct("structs.ServiceAddress", Address=_S, Port=_I),
    ),
    Meta=_string_map, Port=_I, SocketPath=_S,
    Weights=_struct("structs.Weights", Passing=_I, Warning=_I),
    EnableTagOverride=_B, Proxy=_opaque, Connect=_opaque,
)
_register = _struct(
    "structs.RegisterRequest",
    ID=_S, Node=_S, Address=_S, Datacenter=_S, TaggedAddresses=_string_map,
    NodeMeta=_string_map, SkipNodeUpdate=_B, Service=_service, Check=_check,
    Checks=_list_of("structs.HealthChecks", _check),
)
_deregister = _struct(
    "structs.DeregisterRequest", Node=_S, Datacenter=_S, ServiceID=_S, CheckID=_S,
)


def _decode(raw: bytes, decoder: Decoder, root: str) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        doc = encode.loads(raw)
    except encode.JSONDecodeError as err:
        raise BadRequest(f"Request decode failed: {err}") from None
    if doc is None:
        return {}
    result: dict[str, Any] = decoder(doc, root)
    return result


def register_request(raw: bytes) -> dict[str, Any]:
    """A RegisterRequest body with Go field names; an empty body is an empty request."""
    return _decode(raw, _register, "RegisterRequest")


def deregister_request(raw: bytes) -> dict[str, Any]:
    return _decode(raw, _deregister, "DeregisterRequest")
