"""/v1/coordinate (Consul's agent/coordinate_endpoint.go): the WAN coordinates of every
datacenter's servers, the LAN coordinates of this datacenter's nodes (all, or one), and the
update agents push their own coordinate through.

With `disable_coordinates` every route answers 401 `Coordinate support disabled`, as Consul
does. A node without a coordinate is a 404 with no body: the coordinate of a node that just
joined appears only after its first push and the server's next batch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from proconsul.errors import BadRequest, RPCError
from proconsul.gossip.serf.coordinate import Coordinate
from proconsul.http import encode
from proconsul.http.app import APIApp, text_response
from proconsul.http.params import check_enterprise_meta, json_kind, parse_query, parse_token
from proconsul.http.request import Request, Response

if TYPE_CHECKING:
    from proconsul.http.backend import CoordinateBackend
    from proconsul.state.coordinate import CoordinateEntry

DISABLED_TEXT = "Coordinate support disabled"
_ROOT = "CoordinateUpdateRequest"


def _mismatch(value: Any, field: str, go_type: str) -> BadRequest:
    return BadRequest(
        f"Request decode failed: json: cannot unmarshal {json_kind(value)} into Go struct "
        f"field {_ROOT}.{field} of type {go_type}"
    )


def _number(value: Any, field: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _mismatch(value, field, "float64")
    number = float(value)
    if math.isinf(number):
        raise BadRequest(
            f"Request decode failed: json: cannot unmarshal number {value} into Go struct field "
            f"{_ROOT}.{field} of type float64")
    return number


def _coordinate(value: Any) -> Coordinate | None:
    """serf's coordinate.Coordinate from JSON; fields match without regard to case and a
    missing one is zero, as Go's decoder leaves it."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _mismatch(value, "Coord", "coordinate.Coordinate")
    fields = {k.lower(): v for k, v in value.items()}
    vec_raw = fields.get("vec")
    vec: list[float] = []
    if vec_raw is not None:
        if not isinstance(vec_raw, list):
            raise _mismatch(vec_raw, "Coord.Vec", "[]float64")
        vec = [_number(x, "Coord.Vec") for x in vec_raw]
    return Coordinate(
        vec,
        _number(fields.get("error"), "Coord.Error"),
        _number(fields.get("adjustment"), "Coord.Adjustment"),
        _number(fields.get("height"), "Coord.Height"),
    )


def _string(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name.lower())
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _mismatch(value, name, "string")
    return value


def update_request(raw: bytes) -> tuple[str, str, str, Coordinate | None]:
    """(Datacenter, Node, Segment, Coord) of a CoordinateUpdateRequest body."""
    if not raw.strip():
        raise BadRequest("Request decode failed: EOF")
    try:
        doc = encode.loads(raw)
    except encode.JSONDecodeError as err:
        raise BadRequest(f"Request decode failed: {err}") from None
    if doc is None:
        return "", "", "", None
    if not isinstance(doc, dict):
        raise BadRequest(
            f"Request decode failed: json: cannot unmarshal {json_kind(doc)} into Go value "
            f"of type structs.{_ROOT}")
    fields = {k.lower(): v for k, v in doc.items()}
    return (_string(fields, "Datacenter"), _string(fields, "Node"), _string(fields, "Segment"),
            _coordinate(fields.get("coord")))


def segment_filter(req: Request, entries: list[CoordinateEntry]) -> list[dict[str, Any]]:
    """`?segment=` (even empty) keeps only that segment; absent, every entry stays."""
    if req.has("segment"):
        wanted = req.arg("segment") or ""
        entries = [e for e in entries if e.segment == wanted]
    return [e.to_api() for e in entries]


class CoordinateHandlers:
    def __init__(self, app: APIApp, coordinate: CoordinateBackend) -> None:
        self.app = app
        self.coordinate = coordinate
        app.add("/v1/coordinate/datacenters", ("GET",), self.datacenters)
        app.add("/v1/coordinate/nodes", ("GET",), self.nodes)
        app.add("/v1/coordinate/node/", ("GET",), self.node)
        app.add("/v1/coordinate/update", ("PUT",), self.update)

    def _disabled(self) -> Response | None:
        if self.coordinate.disabled:
            return text_response(401, DISABLED_TEXT)
        return None

    async def datacenters(self, req: Request) -> Response:
        refused = self._disabled()
        if refused is not None:
            return refused
        maps = self.coordinate.list_datacenters()
        return self.app.json(req, [m.to_api() for m in maps])

    async def nodes(self, req: Request) -> Response:
        refused = self._disabled()
        if refused is not None:
            return refused
        opts = parse_query(req, self.app.discovery_max_stale)
        meta, entries = await self.coordinate.list_nodes(opts)
        return self.app.json(req, segment_filter(req, entries), meta)

    async def node(self, req: Request) -> Response:
        refused = self._disabled()
        if refused is not None:
            return refused
        name = req.path[len("/v1/coordinate/node/"):]
        opts = parse_query(req, self.app.discovery_max_stale)
        meta, entries = await self.coordinate.node(name, opts)
        body = segment_filter(req, entries)
        if not body:
            # Consul writes the status before its deferred query-meta headers, so a miss
            # carries neither a body nor X-Consul-Index.
            return Response(404, b"", [])
        return self.app.json(req, body, meta)

    async def update(self, req: Request) -> Response:
        refused = self._disabled()
        if refused is not None:
            return refused
        datacenter, node, segment, coord = update_request(req.body)
        parse_token(req)
        check_enterprise_meta(req)
        if not (req.arg("dc") or req.arg("datacenter")) and datacenter \
                and datacenter != self.app.datacenter:
            raise RPCError("No path to datacenter")
        await self.coordinate.update(node, segment, coord)
        return Response(200, b"", [])
