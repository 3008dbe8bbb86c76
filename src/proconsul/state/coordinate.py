"""The network coordinates table (Consul's state/coordinate.go): the latest Vivaldi coordinate
each node pushed, per network segment, replicated through Raft so every server can sort
answers by estimated round trip time (`?near=`) and `consul rtt` can compare any two nodes.

Coordinates belong to catalog nodes: an update for a node the catalog does not hold is dropped
without an error (the node will push again once it is registered), an update carrying NaN or
infinity is dropped (older agents could send them), and deleting a node deletes its
coordinates in the same transaction.

Reads watch narrowly, like the catalog: the list watches the table, one node's read watches
only that node, so a blocking `/v1/coordinate/node/:node` wakes when that node moves, not when
any of the thousands of other agents pushes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from proconsul.gossip.serf.coordinate import Coordinate

if TYPE_CHECKING:
    from proconsul.state.txn import WriteTxn
    from proconsul.state.watch import Watches, WatchSet
    from proconsul.structs.catalog import Node

#: The table name in the index map, and the Raft command family that writes it.
TABLE = "coordinates"

#: A node's coordinates by network segment ("" is the default segment; CE has only that one).
CoordinateSet = dict[str, Coordinate]

_C = TypeVar("_C")


def coord_to_api(coord: Coordinate) -> dict[str, Any]:
    """serf's coordinate.Coordinate as Go's encoding/json writes it (struct field order)."""
    return {
        "Vec": list(coord.vec),
        "Error": coord.error,
        "Adjustment": coord.adjustment,
        "Height": coord.height,
    }


def _float(value: Any) -> float:
    return 0.0 if value is None else float(value)


def coord_from_wire(obj: Mapping[str, Any]) -> Coordinate:
    """The inverse of `coord_to_api`; a missing field is zero, as Go decodes it."""
    return Coordinate(
        [_float(x) for x in obj.get("Vec") or ()],
        _float(obj.get("Error")),
        _float(obj.get("Adjustment")),
        _float(obj.get("Height")),
    )


@dataclass(frozen=True, slots=True)
class CoordinateEntry:
    """Consul's structs.Coordinate: one node's coordinate in one segment."""

    node: str
    segment: str
    coord: Coordinate

    def to_api(self) -> dict[str, Any]:
        return {"Node": self.node, "Segment": self.segment, "Coord": coord_to_api(self.coord)}

    def to_wire(self) -> dict[str, Any]:
        """What the batch-update command and snapshots carry (the same shape as the API)."""
        return self.to_api()

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> CoordinateEntry:
        coord = obj.get("Coord")
        return cls(str(obj.get("Node") or ""), str(obj.get("Segment") or ""),
                   coord_from_wire(coord) if isinstance(coord, Mapping) else Coordinate([]))


@dataclass(frozen=True, slots=True)
class DatacenterMap:
    """Consul's structs.DatacenterMap: the WAN coordinates of one datacenter's servers."""

    datacenter: str
    area_id: str
    coordinates: tuple[CoordinateEntry, ...]

    def to_api(self) -> dict[str, Any]:
        return {
            "Datacenter": self.datacenter,
            "AreaID": self.area_id,
            "Coordinates": [c.to_api() for c in self.coordinates],
        }


def intersect(a: Mapping[str, _C], b: Mapping[str, _C]) -> tuple[_C | None, _C | None]:
    """A pair of coordinates from the same segment, or None where one is missing (Consul's
    lib.CoordinateSet.Intersect). A node with exactly one segment is taken to be a client that
    lives only there, so that segment wins; a node in several segments is a server, present in
    all of them."""
    segment = ""
    if len(a) == 1:
        segment = next(iter(a))
    if len(b) == 1:
        segment = next(iter(b))
    return a.get(segment), b.get(segment)


def compute_distance(a: Coordinate | None, b: Coordinate | None) -> float:
    """Estimated RTT in seconds, or +inf when either side has no (usable) coordinate, so such
    nodes sort after every node with one (Consul's lib.ComputeDistance)."""
    if a is None or b is None or not a.is_compatible_with(b):
        return math.inf
    return a.distance_to(b)


class CoordinateTable:
    watches: Watches
    nodes: dict[str, Node]
    coordinate_sets: dict[str, CoordinateSet]

    if TYPE_CHECKING:

        def max_index(self, *tables: str) -> int: ...

        def watch_table(self, ws: WatchSet | None, table: str) -> None: ...

    # -- reads --------------------------------------------------------------------------------

    def coordinate(self, ws: WatchSet | None, node: str) -> tuple[int, CoordinateSet]:
        """The coordinates of `node` by segment (empty when it never pushed one)."""
        if ws is not None:
            ws.add(self.watches.channel(("coordinate", node)))
        return self.max_index(TABLE), dict(self.coordinate_sets.get(node, {}))

    def coordinates(self, ws: WatchSet | None) -> tuple[int, list[CoordinateEntry]]:
        """Every stored coordinate, ordered as Consul's id index orders them (node name
        without regard to case, then segment)."""
        self.watch_table(ws, TABLE)
        found = [
            CoordinateEntry(node, segment, coord)
            for node, segments in self.coordinate_sets.items()
            for segment, coord in segments.items()
        ]
        found.sort(key=lambda e: (e.node.lower(), e.segment.lower(), e.node, e.segment))
        return self.max_index(TABLE), found

    # -- writes -------------------------------------------------------------------------------

    def coordinate_batch_update(self, txn: WriteTxn, updates: Iterable[CoordinateEntry]) -> None:
        """Upsert a batch; invalid coordinates and unknown nodes are skipped. The table index
        moves to this command's index even when nothing was kept, as Consul's does."""
        for entry in updates:
            if not entry.coord.is_valid() or entry.node not in self.nodes:
                continue
            self._set_coordinate(txn, entry.node, entry.segment, entry.coord.clone())
        txn.touch(TABLE)

    def _set_coordinate(self, txn: WriteTxn, node: str, segment: str, coord: Coordinate) -> None:
        segments = self.coordinate_sets.setdefault(node, {})
        old = segments.get(segment)
        segments[segment] = coord

        def undo() -> None:
            current = self.coordinate_sets.get(node)
            if current is None:
                return
            if old is None:
                current.pop(segment, None)
                if not current:
                    del self.coordinate_sets[node]
            else:
                current[segment] = old

        txn.on_abort(undo)
        txn.touch(TABLE, ("coordinate", node))

    def delete_node_coordinates(self, txn: WriteTxn, node: str) -> None:
        """Drop every coordinate of `node` (its catalog entry is going away)."""
        segments = self.coordinate_sets.pop(node, None)
        if not segments:
            return
        txn.on_abort(lambda: self.coordinate_sets.__setitem__(node, segments))
        txn.touch(TABLE, ("coordinate", node))

    def restore_coordinate(self, entry: CoordinateEntry) -> None:
        """Load one snapshot record; bad data a past client managed to store is skipped."""
        if entry.coord.is_valid():
            self.coordinate_sets.setdefault(entry.node, {})[entry.segment] = entry.coord
