"""/v1/coordinate and `?near=` on /v1/catalog and /v1/health, through the API application over
a real server on the in-memory Raft node: status codes, bodies and headers as Consul's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from proconsul.gossip.serf.coordinate import Coordinate
from proconsul.http.app import APIApp
from proconsul.http.catalog import CatalogHandlers, near_source, source_addr
from proconsul.http.coordinate import CoordinateHandlers
from proconsul.http.health import HealthHandlers
from proconsul.http.request import Request, Response
from proconsul.server.fsm import FSM
from proconsul.server.server import Server
from tests.raft.cluster_support import single_voter

Call = Callable[..., Awaitable[Response]]


def run(fn: Callable[[Server, Call], Awaitable[None]], disabled: bool = False) -> None:
    async def main() -> None:
        raft = await single_voter(FSM(), "id-1")
        srv = Server(raft, "agent1", "id-1", "dc1", "127.0.0.1",
                     coordinate_update_period=3600.0, disable_coordinates=disabled)
        await srv.start()
        app = APIApp(datacenter="dc1")
        CatalogHandlers(app, srv.catalog, "agent1")
        HealthHandlers(app, srv.health, "agent1")
        CoordinateHandlers(app, srv.coordinate)

        async def call(method: str, target: str, body: Any = None,
                       headers: dict[str, str] | None = None,
                       remote: tuple[str, int] = ("127.0.0.1", 50000)) -> Response:
            path, _, qs = target.partition("?")
            raw = body if isinstance(body, bytes) else (
                b"" if body is None else json.dumps(body).encode())
            return await app.handle(Request(method, path, target,
                                            parse_qs(qs, keep_blank_values=True),
                                            headers or {}, raw, remote))

        try:
            await fn(srv, call)
        finally:
            await srv.stop()
            await raft.shutdown()

    asyncio.run(main())


def at(x: float) -> dict[str, Any]:
    return {"Vec": [x] + [0.0] * 7, "Error": 0.5, "Adjustment": 0.0, "Height": 1.0e-5}


def header(resp: Response, name: str) -> str | None:
    return next((v for k, v in resp.headers if k.lower() == name.lower()), None)


def body_of(resp: Response) -> Any:
    return json.loads(resp.body)


async def push(srv: Server, call: Call, **where: dict[str, Any]) -> None:
    for node, coord in where.items():
        resp = await call("PUT", "/v1/coordinate/update",
                          {"Node": node, "Segment": "", "Coord": coord})
        assert (resp.status, resp.body) == (200, b"")
    await srv.coordinate.flush()


def test_update_then_read_nodes_and_node() -> None:
    async def body(srv: Server, call: Call) -> None:
        await srv.catalog.register({"Node": "web1", "Address": "10.0.0.2"})
        resp = await call("GET", "/v1/coordinate/nodes")
        assert resp.status == 200 and body_of(resp) == []
        await push(srv, call, web1=at(0.002), agent1=at(0.0))
        resp = await call("GET", "/v1/coordinate/nodes")
        assert resp.status == 200
        assert body_of(resp) == [{"Node": "agent1", "Segment": "", "Coord": at(0.0)},
                                 {"Node": "web1", "Segment": "", "Coord": at(0.002)}]
        index = int(header(resp, "X-Consul-Index") or 0)
        assert index > 1 and header(resp, "X-Consul-Effective-Consistency") is None
        resp = await call("GET", "/v1/coordinate/node/web1")
        assert resp.status == 200 and body_of(resp) == [
            {"Node": "web1", "Segment": "", "Coord": at(0.002)}]
        resp = await call("GET", "/v1/coordinate/nodes?segment=other")
        assert body_of(resp) == []
        resp = await call("GET", "/v1/coordinate/node/web1?segment=")
        assert len(body_of(resp)) == 1
        # unknown node: 404, no body, and (as in Consul) no index header
        resp = await call("GET", "/v1/coordinate/node/nope")
        assert (resp.status, resp.body) == (404, b"")
        assert header(resp, "X-Consul-Index") is None
        resp = await call("GET", "/v1/coordinate/node/web1?segment=other")
        assert resp.status == 404

    run(body)


def test_blocking_nodes_query_wakes_on_a_batch() -> None:
    async def body(srv: Server, call: Call) -> None:
        resp = await call("GET", "/v1/coordinate/nodes")
        index = header(resp, "X-Consul-Index")
        blocked = asyncio.ensure_future(call("GET", f"/v1/coordinate/nodes?index={index}&wait=10s"))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        await push(srv, call, agent1=at(0.001))
        resp = await asyncio.wait_for(blocked, 5)
        assert int(header(resp, "X-Consul-Index") or 0) > int(index or 0)
        assert [c["Node"] for c in body_of(resp)] == ["agent1"]

    run(body)


def test_update_errors() -> None:
    async def body(srv: Server, call: Call) -> None:
        cases = [
            (b"", 400, "Request decode failed: EOF"),
            (b"{", 400, None),
            ({"Node": 5}, 400, "Request decode failed: json: cannot unmarshal number into Go "
                               "struct field CoordinateUpdateRequest.Node of type string"),
            ({"Node": "agent1", "Coord": {"Vec": ["x"]}}, 400,
             "Request decode failed: json: cannot unmarshal string into Go struct field "
             "CoordinateUpdateRequest.Coord.Vec of type float64"),
            ({"Node": "agent1"}, 500, "invalid coordinate"),
            ({"Node": "agent1", "Coord": {"Vec": [0.0] * 3}}, 500, "incompatible coordinate"),
            ({"Node": "agent1", "Datacenter": "dc9", "Coord": at(0.0)}, 500,
             "No path to datacenter"),
        ]
        for sent, status, text in cases:
            resp = await call("PUT", "/v1/coordinate/update", sent)
            assert resp.status == status, (sent, resp.body)
            if text is not None:
                assert resp.body.decode() == text
        resp = await call("PUT", "/v1/coordinate/update?ns=x",
                          {"Node": "agent1", "Coord": at(0.0)})
        assert resp.status == 400
        resp = await call("GET", "/v1/coordinate/update")
        assert resp.status == 405
        # field names match without regard to case, as Go's decoder matches them
        resp = await call("PUT", "/v1/coordinate/update",
                          {"node": "agent1", "coord": {"vec": [0.0] * 8, "error": 1.5}})
        assert resp.status == 200
        assert srv.coordinate.pending() == 1

    run(body)


def test_datacenters() -> None:
    async def body(srv: Server, call: Call) -> None:
        resp = await call("GET", "/v1/coordinate/datacenters")
        assert (resp.status, body_of(resp)) == (200, [])
        srv.coordinate.wan_coordinate = lambda: Coordinate([0.0] * 8, 1.5, 0.0, 1.0e-5)
        srv.coordinate.wan_members = lambda: [("s9.dc2", "dc2", Coordinate([0.1] * 8))]
        resp = await call("GET", "/v1/coordinate/datacenters")
        out = body_of(resp)
        assert [(d["Datacenter"], d["AreaID"]) for d in out] == [("dc1", "wan"), ("dc2", "wan")]
        assert out[0]["Coordinates"][0]["Node"] == "agent1"
        assert out[1]["Coordinates"][0]["Node"] == "s9"
        assert header(resp, "X-Consul-Index") is None

    run(body)


def test_disabled_answers_401_everywhere() -> None:
    async def body(srv: Server, call: Call) -> None:
        for method, path in (("GET", "/v1/coordinate/datacenters"),
                             ("GET", "/v1/coordinate/nodes"),
                             ("GET", "/v1/coordinate/node/agent1"),
                             ("PUT", "/v1/coordinate/update")):
            resp = await call(method, path)
            assert (resp.status, resp.body) == (401, b"Coordinate support disabled"), path
            assert header(resp, "Content-Type") == "text/plain; charset=utf-8"

    run(body, disabled=True)


def test_near_on_catalog_and_health() -> None:
    async def body(srv: Server, call: Call) -> None:
        for name, addr in (("far", "10.0.0.3"), ("near", "10.0.0.2"), ("nocoord", "10.0.0.4")):
            await srv.catalog.register({
                "Node": name, "Address": addr,
                "Service": {"Service": "web", "ID": "web"},
                "Check": {"CheckID": "web-check", "Name": "c", "Status": "passing",
                          "ServiceID": "web"},
            })
        await push(srv, call, agent1=at(0.0), near=at(0.001), far=at(0.050))

        async def names(target: str, **kw: Any) -> list[str]:
            resp = await call("GET", target, **kw)
            assert resp.status == 200, resp.body
            out = body_of(resp)
            return [e["Node"]["Node"] if isinstance(e.get("Node"), dict) else e["Node"]
                    for e in out]

        assert await names("/v1/catalog/nodes") == ["agent1", "far", "near", "nocoord"]
        assert await names("/v1/catalog/nodes?near=_agent") == ["agent1", "near", "far",
                                                                "nocoord"]
        assert await names("/v1/catalog/nodes?near=far") == ["far", "near", "agent1", "nocoord"]
        assert await names("/v1/catalog/service/web?near=_agent") == ["near", "far", "nocoord"]
        assert await names("/v1/health/service/web?near=_agent&passing") == [
            "near", "far", "nocoord"]
        assert await names("/v1/health/checks/web?near=far") == ["far", "near", "nocoord"]
        assert (await names("/v1/health/state/any?near=_agent"))[:3] == ["agent1", "near",
                                                                         "far"]
        # _ip: the first X-Forwarded-For address, else the peer's
        assert await names("/v1/catalog/nodes?near=_ip",
                           headers={"x-forwarded-for": "10.0.0.3, 10.9.9.9"}) == [
            "far", "near", "agent1", "nocoord"]
        assert await names("/v1/catalog/nodes?near=_ip", remote=("10.0.0.2", 4000)) == [
            "near", "agent1", "far", "nocoord"]
        # a filter keeps the order of what it keeps
        assert await names('/v1/catalog/nodes?near=_agent&filter=Node != "near"') == [
            "agent1", "far", "nocoord"]

    run(body)


def test_near_source_helpers() -> None:
    def req(query: str, headers: dict[str, str] | None = None,
            remote: tuple[str, int] | None = ("192.0.2.7", 1)) -> Request:
        return Request("GET", "/v1/catalog/nodes", "/v1/catalog/nodes?" + query,
                       parse_qs(query, keep_blank_values=True), headers or {}, b"", remote)

    assert near_source(req(""), "me") == ("", "")
    assert near_source(req("near=_agent"), "me") == ("me", "")
    assert near_source(req("near=other"), "me") == ("other", "")
    assert near_source(req("near=_ip"), "me") == ("_ip", "192.0.2.7")
    assert source_addr(req("", {"x-forwarded-for": " 10.1.1.1 ,1.2.3.4"})) == "10.1.1.1"
    assert source_addr(req("", {"x-forwarded-for": "junk"})) == "192.0.2.7"
    assert source_addr(req("", remote=("::ffff:10.0.0.9", 1))) == "10.0.0.9"
    assert source_addr(req("", remote=None)) == ""
