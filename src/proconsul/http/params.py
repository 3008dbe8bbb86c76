"""Query parameters every route shares (Consul's agent/http.go parse helpers): datacenter,
token, blocking `index`/`wait`, consistency modes, and the CE namespace/partition checks."""

from __future__ import annotations

from typing import Any

from proconsul.config.duration import parse_duration_ns
from proconsul.errors import BadRequest, ConfigError
from proconsul.http.request import Request
from proconsul.structs.query import QueryOptions

_UINT64_MAX = (1 << 64) - 1


def parse_uint(text: str) -> int | None:
    """Go's strconv.ParseUint(text, 10, 64): None when it would fail."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= _UINT64_MAX else None


def go_uint_error(text: str) -> str:
    """The text of Go's strconv error for a bad unsigned integer."""
    if text and text.isascii() and text.isdigit():
        return f'strconv.ParseUint: parsing "{text}": value out of range'
    return f'strconv.ParseUint: parsing "{text}": invalid syntax'


def parse_token(req: Request) -> str:
    """?token, then X-Consul-Token, then `Authorization: Bearer`."""
    token = req.arg("token")
    if token:
        return token
    token = req.headers.get("x-consul-token", "")
    if token:
        return token
    auth = req.headers.get("authorization", "")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
    return ""


def check_enterprise_meta(req: Request) -> None:
    """CE refuses any non-empty namespace or partition, through parameter or header."""
    for param, header, feature in (
        ("ns", "x-consul-namespace", "Namespaces"),
        ("partition", "x-consul-partition", "Partitions"),
    ):
        if req.arg(param):
            raise BadRequest(
                f'Invalid query parameter: "{param}" - {feature} are a Consul Enterprise feature'
            )
        if req.headers.get(header):
            canon = "X-Consul-Namespace" if param == "ns" else "X-Consul-Partition"
            raise BadRequest(
                f'Invalid header: "{canon}" - {feature} are a Consul Enterprise feature'
            )


def parse_wait(req: Request, opts: QueryOptions) -> None:
    wait = req.arg("wait")
    if wait:
        try:
            opts.max_query_time = parse_duration_ns(wait) / 1e9
        except ConfigError:
            raise BadRequest("Invalid wait time") from None
    index = req.arg("index")
    if index:
        value = parse_uint(index)
        if value is None:
            raise BadRequest("Invalid index")
        opts.min_query_index = value


def parse_consistency(req: Request, opts: QueryOptions, discovery_max_stale: float = 0.0) -> None:
    stale = req.has("stale")
    consistent = req.has("consistent")
    if stale:
        opts.allow_stale = True
    if consistent:
        opts.require_consistent = True
    max_stale = req.arg("max_stale")
    if max_stale is not None:
        try:
            seconds = parse_duration_ns(max_stale) / 1e9
        except ConfigError:
            raise BadRequest(f'Invalid max_stale value "{max_stale}"') from None
        opts.max_stale = seconds
        if seconds > 0:
            opts.allow_stale = True
    elif (
        discovery_max_stale > 0
        and not stale
        and not consistent
        and not req.has("leader")
        and req.path.startswith(("/v1/catalog", "/v1/health"))
    ):
        opts.allow_stale = True
        opts.max_stale = discovery_max_stale
    if opts.allow_stale and opts.require_consistent:
        raise BadRequest("Cannot specify ?stale with ?consistent, conflicting semantics.")
    if req.has("cached") and opts.require_consistent:
        raise BadRequest("Cannot specify ?cached with ?consistent, conflicting semantics.")


def parse_query(req: Request, discovery_max_stale: float = 0.0) -> QueryOptions:
    """Everything a read needs from the URL, with Consul's 400s for bad values."""
    if not req.query:
        # the common case: no parameter can be wrong, only headers need a look
        check_enterprise_meta(req)
        opts = QueryOptions(token=parse_token(req))
        if discovery_max_stale > 0:
            parse_consistency(req, opts, discovery_max_stale)
        return opts
    opts = QueryOptions(
        datacenter=req.arg("datacenter") or req.arg("dc") or "", token=parse_token(req)
    )
    check_enterprise_meta(req)
    parse_consistency(req, opts, discovery_max_stale)
    parse_wait(req, opts)
    opts.filter = req.arg("filter") or ""
    return opts


def json_kind(value: Any) -> str:
    """The JSON kind Go's encoding/json names in an UnmarshalTypeError ("cannot unmarshal
    <kind> into ...") for a value that reached a field of another type."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
