"""The Coordinate endpoint over the in-memory Raft node: validation, batching with its rate
limit, the batch loop, blocking reads, the WAN view, `near` sorting of catalog and health
answers, and the FSM command with its ignore-unknown flag."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable

import pytest

from proconsul.errors import NoLeader, RPCError
from proconsul.gossip.serf.coordinate import Coordinate
from proconsul.server.commands import IGNORE_UNKNOWN_FLAG, MessageType, encode
from proconsul.server.coordinate_endpoint import AREA_WAN
from proconsul.server.fsm import FSM
from proconsul.server.server import Server
from proconsul.structs.query import QueryOptions
from tests.raft.cluster_support import single_voter


def run(fn: Callable[[Server], Awaitable[None]], **kwargs: object) -> None:
    async def main() -> None:
        raft = await single_voter(FSM(), "id-1")
        srv = Server(raft, "n1", "id-1", "dc1", "127.0.0.1", **kwargs)  # type: ignore[arg-type]
        await srv.start()
        try:
            await fn(srv)
        finally:
            await srv.stop()
            await raft.shutdown()

    asyncio.run(main())


def at(x: float, y: float = 0.0) -> Coordinate:
    return Coordinate([x, y] + [0.0] * 6, 0.5, 0.0, 1.0e-5)


async def register(srv: Server, name: str, address: str = "10.0.0.1",
                   service: str = "") -> None:
    body: dict[str, object] = {"Node": name, "Address": address}
    if service:
        body["Service"] = {"Service": service, "ID": f"{service}-{name}"}
        body["Check"] = {"CheckID": f"chk-{name}", "Name": "c", "Status": "passing",
                         "ServiceID": f"{service}-{name}"}
    await srv.catalog.register(body)


async def place(srv: Server, **where: Coordinate) -> None:
    for name, coord in where.items():
        await srv.coordinate.update(name, "", coord)
    await srv.coordinate.flush()


def test_update_validation() -> None:
    async def body(srv: Server) -> None:
        bad = at(0.1)
        bad.height = math.inf
        with pytest.raises(RPCError, match=r"^invalid coordinate$"):
            await srv.coordinate.update("n1", "", bad)
        with pytest.raises(RPCError, match=r"^invalid coordinate$"):
            await srv.coordinate.update("n1", "", None)
        with pytest.raises(RPCError, match=r"^incompatible coordinate$"):
            await srv.coordinate.update("n1", "", Coordinate([0.0] * 3))
        assert srv.coordinate.pending() == 0
        await srv.coordinate.update("n1", "", at(0.1))
        await srv.coordinate.update("n1", "", at(0.2))  # the later one replaces it
        assert srv.coordinate.pending() == 1

    run(body, coordinate_update_period=3600.0)


def test_update_needs_the_leader() -> None:
    async def body(srv: Server) -> None:
        srv.applier.is_leader = lambda: False  # type: ignore[method-assign]
        with pytest.raises(NoLeader):
            await srv.coordinate.update("n1", "", at(0.1))

    run(body, coordinate_update_period=3600.0)


def test_flush_applies_in_batches_and_discards_past_the_limit(
        caplog: pytest.LogCaptureFixture) -> None:
    async def body(srv: Server) -> None:
        names = [f"node{i}" for i in range(5)]
        for name in names:
            await register(srv, name)
        for i, name in enumerate(names):
            await srv.coordinate.update(name, "", at(0.001 * i))
        before = srv.applier.last_index()
        with caplog.at_level(logging.WARNING, logger="proconsul.server.coordinate"):
            await srv.coordinate.flush()
        # batches of 2, at most 2 batches: two commands, four coordinates, one discarded
        assert srv.applier.last_index() - before == 2
        _, entries = srv.store.coordinates(None)
        assert len(entries) == 4
        assert srv.coordinate.pending() == 0
        assert any(r.getMessage() == "Discarded coordinate updates: number_discarded=1"
                   for r in caplog.records)

    run(body, coordinate_update_period=3600.0, coordinate_update_batch_size=2,
        coordinate_update_max_batches=2)


def test_batch_loop_commits_parked_updates() -> None:
    async def body(srv: Server) -> None:
        await srv.coordinate.update("n1", "", at(0.1))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while not srv.store.coordinate(None, "n1")[1]:
            assert loop.time() < deadline, "the batch loop never committed the update"
            await asyncio.sleep(0.02)
        assert srv.store.coordinate(None, "n1")[1][""].vec[0] == 0.1

    run(body, coordinate_update_period=0.05)


def test_failed_batch_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    async def body(srv: Server) -> None:
        await srv.coordinate.update("n1", "", at(0.1))
        leader = srv.applier.is_leader
        srv.applier.is_leader = lambda: False  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        with caplog.at_level(logging.WARNING, logger="proconsul.server.coordinate"):
            while not any(r.getMessage() == "Batch update failed: error=No cluster leader"
                          for r in caplog.records):
                assert loop.time() < deadline
                await asyncio.sleep(0.02)
        srv.applier.is_leader = leader  # type: ignore[method-assign]
        await srv.coordinate.update("n1", "", at(0.2))
        deadline = loop.time() + 10.0
        while not srv.store.coordinate(None, "n1")[1]:
            assert loop.time() < deadline
            await asyncio.sleep(0.02)

    run(body, coordinate_update_period=0.05)


def test_batches_are_flagged_safe_to_ignore() -> None:
    async def body(srv: Server) -> None:
        sent: list[bytes] = []
        apply = srv.apply

        async def spy(command: bytes, error_prefix: str = "") -> object:
            sent.append(command)
            return await apply(command, error_prefix)

        srv.apply = spy  # type: ignore[method-assign]
        await place(srv, n1=at(0.1))
        assert [c[0] for c in sent] == [MessageType.COORDINATE_BATCH_UPDATE | IGNORE_UNKNOWN_FLAG]

    run(body, coordinate_update_period=3600.0)


def test_fsm_applies_flagged_and_plain_batches() -> None:
    fsm = FSM()
    fsm.apply(1, encode(MessageType.REGISTER, {"Node": "n1", "Address": "10.0.0.1"}))
    entry = {"Node": "n1", "Segment": "", "Coord": {"Vec": [0.5] + [0.0] * 7, "Error": 1.5,
                                                    "Adjustment": 0.0, "Height": 1e-5}}
    cmd = encode(MessageType.COORDINATE_BATCH_UPDATE, {"Coordinates": [entry]},
                 ignore_unknown=True)
    assert cmd[0] == 0x86
    assert fsm.apply(2, cmd) is None
    assert fsm.store.coordinate(None, "n1") == (2, {"": Coordinate([0.5] + [0.0] * 7, 1.5,
                                                                    0.0, 1e-5)})
    fsm.apply(3, encode(MessageType.COORDINATE_BATCH_UPDATE, {"Coordinates": []}))
    assert fsm.store.max_index("coordinates") == 3
    restored = FSM()
    restored.restore(fsm.snapshot())
    assert restored.store.coordinates(None) == fsm.store.coordinates(None)


def test_list_nodes_blocks_until_a_batch_lands() -> None:
    async def body(srv: Server) -> None:
        meta, entries = await srv.coordinate.list_nodes(QueryOptions())
        assert entries == []
        blocked = asyncio.ensure_future(srv.coordinate.list_nodes(
            QueryOptions(min_query_index=meta.index, max_query_time=10)))
        one = asyncio.ensure_future(srv.coordinate.node(
            "n1", QueryOptions(min_query_index=meta.index, max_query_time=10)))
        await asyncio.sleep(0.05)
        assert not blocked.done() and not one.done()
        await place(srv, n1=at(0.1))
        meta2, entries = await asyncio.wait_for(blocked, 5)
        assert meta2.index > meta.index and [e.node for e in entries] == ["n1"]
        _, mine = await asyncio.wait_for(one, 5)
        assert [(e.node, e.segment) for e in mine] == [("n1", "")]
        assert meta2.consistency_level == ""

    run(body, coordinate_update_period=3600.0)


def test_list_datacenters_from_the_wan_pool() -> None:
    async def body(srv: Server) -> None:
        ep = srv.coordinate
        assert ep.list_datacenters() == []
        own = at(0.3)
        ep.wan_coordinate = lambda: own
        ep.wan_members = lambda: [
            ("s2.dc2", "dc2", at(0.2)),
            ("n1.dc1", "dc1", None),        # this server: its own coordinate stands in
            ("s1.dc2", "dc2", at(0.1)),
            ("s3.dc3", "dc3", None),        # no coordinate yet: left out, and so is dc3
        ]
        maps = [m.to_api() for m in ep.list_datacenters()]
        assert [(m["Datacenter"], m["AreaID"]) for m in maps] == [("dc1", AREA_WAN),
                                                                  ("dc2", AREA_WAN)]
        assert [c["Node"] for c in maps[1]["Coordinates"]] == ["s1", "s2"]
        assert maps[0]["Coordinates"] == [{"Node": "n1", "Segment": "", "Coord": {
            "Vec": own.vec, "Error": 0.5, "Adjustment": 0.0, "Height": 1.0e-5}}]
        # without WAN members the server still reports itself
        ep.wan_members = None
        assert [m.datacenter for m in ep.list_datacenters()] == ["dc1"]

    run(body, coordinate_update_period=3600.0)


def test_near_sorts_catalog_and_health_answers() -> None:
    async def body(srv: Server) -> None:
        for name, addr in (("a", "10.0.0.11"), ("b", "10.0.0.12"), ("c", "10.0.0.13"),
                           ("d", "10.0.0.14")):
            await register(srv, name, addr, service="web")
        # n1 is the server itself; d never pushes a coordinate
        await place(srv, n1=at(0.0), a=at(0.035), b=at(0.010), c=at(0.020))
        opts = QueryOptions()
        _, nodes = await srv.catalog.nodes(None, opts)
        assert [n.node for n in nodes] == ["a", "b", "c", "d", "n1"]
        _, nodes = await srv.catalog.nodes(None, opts, near="n1")
        assert [n.node for n in nodes] == ["n1", "b", "c", "a", "d"]
        _, nodes = await srv.catalog.nodes(None, opts, near="c")
        assert [n.node for n in nodes] == ["c", "b", "a", "n1", "d"]
        # a source without a coordinate, or unknown, leaves the name order
        _, nodes = await srv.catalog.nodes(None, opts, near="d")
        assert [n.node for n in nodes] == ["a", "b", "c", "d", "n1"]
        _, nodes = await srv.catalog.nodes(None, opts, near="nope")
        assert [n.node for n in nodes] == ["a", "b", "c", "d", "n1"]
        # _ip: the node whose address the request came from
        _, nodes = await srv.catalog.nodes(None, opts, near="_ip", source_ip="10.0.0.11")
        assert [n.node for n in nodes] == ["a", "c", "b", "n1", "d"]
        _, nodes = await srv.catalog.nodes(None, opts, near="_ip", source_ip="192.0.2.1")
        assert [n.node for n in nodes] == ["a", "b", "c", "d", "n1"]

        _, pairs = await srv.catalog.service_nodes("web", [], None, opts, near="n1")
        assert [p[0].node for p in pairs] == ["b", "c", "a", "d"]
        _, entries = await srv.health.service_nodes("web", [], None, True, opts, near="n1")
        assert [e[0].node for e in entries] == ["b", "c", "a", "d"]
        _, checks = await srv.health.service_checks("web", None, opts, near="a")
        assert [c.node for c in checks] == ["a", "c", "b", "d"]
        _, checks = await srv.health.checks_in_state("any", None, opts, near="n1")
        assert [c.node for c in checks][:4] == ["n1", "b", "c", "a"]
        assert [c.node for c in checks][-1] == "d"

    run(body, coordinate_update_period=3600.0)


def test_disabled_flag_reaches_the_endpoint() -> None:
    async def body(srv: Server) -> None:
        assert srv.coordinate.disabled

    run(body, disable_coordinates=True)
