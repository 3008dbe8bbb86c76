"""The coordinates table: batch upserts that skip unknown nodes and invalid coordinates,
narrow watches, removal with the node, rollback, and the snapshot round trip."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import msgpack

from proconsul.gossip.serf.coordinate import Coordinate
from proconsul.snapshot.archive import inspect_state
from proconsul.state import Store, WatchSet
from proconsul.state.coordinate import (
    CoordinateEntry,
    compute_distance,
    coord_from_wire,
    coord_to_api,
    intersect,
)
from proconsul.state.txn import WriteTxn
from proconsul.structs.catalog import Node


def do(s: Store, idx: int, fn: Callable[[WriteTxn], object]) -> None:
    txn = s.write(idx)
    fn(txn)
    txn.commit()


def node(s: Store, idx: int, name: str, address: str = "10.0.0.1") -> None:
    do(s, idx, lambda t: s.ensure_node(t, Node(node=name, address=address)))


def at(x: float, height: float = 1.0e-5) -> Coordinate:
    """A coordinate `x` seconds along the first axis."""
    return Coordinate([x] + [0.0] * 7, 0.5, 0.0, height)


def update(s: Store, idx: int, *entries: tuple[str, str, Coordinate]) -> None:
    do(s, idx, lambda t: s.coordinate_batch_update(
        t, [CoordinateEntry(n, seg, c) for n, seg, c in entries]))


def test_batch_update_keeps_known_nodes_and_valid_coordinates() -> None:
    s = Store()
    node(s, 1, "b")
    node(s, 2, "A")
    bad = at(0.1)
    bad.vec[3] = math.nan
    update(s, 3, ("b", "", at(0.2)), ("A", "", at(0.1)), ("ghost", "", at(0.3)),
           ("b", "seg1", bad))
    idx, entries = s.coordinates(None)
    assert idx == 3
    # Consul's id index orders by node name without regard to case
    assert [(e.node, e.segment) for e in entries] == [("A", ""), ("b", "")]
    assert entries[1].coord.vec[0] == 0.2
    # the index moves even when every update of a batch is dropped
    update(s, 4, ("ghost", "", at(0.3)))
    assert s.coordinates(None)[0] == 4
    idx, segments = s.coordinate(None, "b")
    assert idx == 4 and list(segments) == [""]
    assert s.coordinate(None, "ghost")[1] == {}


def test_stored_coordinates_are_copies() -> None:
    s = Store()
    node(s, 1, "n1")
    coord = at(0.1)
    update(s, 2, ("n1", "", coord))
    coord.vec[0] = 9.0
    assert s.coordinate(None, "n1")[1][""].vec[0] == 0.1


def test_node_watch_wakes_only_for_its_node() -> None:
    async def body() -> None:
        s = Store()
        node(s, 1, "n1")
        node(s, 2, "n2")
        ws_n1, ws_n2, ws_all = WatchSet(), WatchSet(), WatchSet()
        s.coordinate(ws_n1, "n1")
        s.coordinate(ws_n2, "n2")
        s.coordinates(ws_all)
        update(s, 3, ("n1", "", at(0.1)))
        assert await ws_n1.wait(1.0)
        assert await ws_all.wait(1.0)
        assert not await ws_n2.wait(0.05)

    asyncio.run(body())


def test_deleting_a_node_deletes_its_coordinates() -> None:
    async def body() -> None:
        s = Store()
        node(s, 1, "n1")
        node(s, 2, "n2")
        update(s, 3, ("n1", "", at(0.1)), ("n1", "s1", at(0.2)), ("n2", "", at(0.3)))
        ws = WatchSet()
        s.coordinate(ws, "n1")
        do(s, 4, lambda t: s.delete_node(t, "n1"))
        assert await ws.wait(1.0)
        idx, entries = s.coordinates(None)
        assert idx == 4 and [e.node for e in entries] == ["n2"]
        # a node without coordinates leaves the table's index alone
        node(s, 5, "n3")
        do(s, 6, lambda t: s.delete_node(t, "n3"))
        assert s.coordinates(None)[0] == 4

    asyncio.run(body())


def test_abort_restores_previous_coordinates() -> None:
    s = Store()
    node(s, 1, "n1")
    node(s, 2, "n2")
    update(s, 3, ("n1", "", at(0.1)))
    txn = s.write(4)
    s.coordinate_batch_update(txn, [CoordinateEntry("n1", "", at(0.5)),
                                    CoordinateEntry("n2", "", at(0.6))])
    s.delete_node(txn, "n1")
    txn.abort()
    assert s.coordinate(None, "n1")[1][""].vec[0] == 0.1
    assert s.coordinate(None, "n2")[1] == {}
    assert "n1" in s.nodes


def test_dump_and_load_round_trip_coordinates() -> None:
    s = Store()
    node(s, 1, "n1")
    node(s, 2, "n2")
    update(s, 3, ("n1", "", at(0.1)), ("n2", "s1", Coordinate([0.25] * 8, 1.5, -0.001, 2e-5)))
    dump = s.dump()
    packed = msgpack.packb(dump, use_bin_type=True)
    restored = Store.load(msgpack.unpackb(packed, raw=False, strict_map_key=False))
    assert restored.coordinates(None) == s.coordinates(None)
    assert restored.max_index("coordinates") == 3
    # bad data a past client stored is skipped on restore
    dump["Coordinates"].append({"Node": "n1", "Segment": "x",
                                "Coord": {"Vec": [math.inf] * 8, "Error": 1.5}})
    again = Store.load(dump)
    assert sorted(again.coordinate(None, "n1")[1]) == [""]
    # snapshot inspect names the records as Consul's does
    stats = inspect_state({}, packed)["Stats"]
    row = next(r for r in stats if r["Name"] == "CoordinateBatchUpdate")
    assert row["Count"] == 2 and row["Sum"] > 0


def test_api_shape_and_wire_round_trip() -> None:
    c = Coordinate([0.5] + [0.0] * 7, 1.25, 0.003, 0.0001)
    api = coord_to_api(c)
    assert list(api) == ["Vec", "Error", "Adjustment", "Height"]
    assert coord_from_wire(api) == c
    entry = CoordinateEntry("n1", "", c)
    assert entry.to_api() == {"Node": "n1", "Segment": "", "Coord": api}
    assert CoordinateEntry.from_wire(entry.to_wire()) == entry
    assert coord_from_wire({"Vec": [1, 2]}) == Coordinate([1.0, 2.0], 0.0, 0.0, 0.0)


def test_intersect_and_distance() -> None:
    a, b = at(0.0), at(0.010)
    # both in the default segment
    assert intersect({"": a}, {"": b}) == (a, b)
    # a client only in segment s1 meets a server present in every segment
    assert intersect({"": a, "s1": b}, {"s1": a}) == (b, a)
    assert intersect({"s1": a}, {"s2": b}) == (None, b)
    assert compute_distance(None, b) == math.inf
    assert compute_distance(a, Coordinate([0.0] * 3)) == math.inf
    assert compute_distance(a, b) == a.distance_to(b)
    assert abs(compute_distance(a, b) - (0.010 + 2e-5)) < 1e-9
