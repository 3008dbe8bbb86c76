"""`consul rtt`: the estimated round trip time between two nodes from their network
coordinates, without sending a packet between them.

The line it prints (`Estimated a <-> b rtt: 0.610 ms (using LAN coordinates)`) and its error
texts follow `command/rtt/rtt.go`: node names match without regard to case, LAN coordinates
are paired by network segment, and with `-wan` both names must be `<node>.<datacenter>` and
both coordinates must come from the same network area.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proconsul.cli import err, out
from proconsul.cli.api import APIError, Client, HTTPFlags
from proconsul.cli.flags import Flag, FlagSet, parse_args
from proconsul.config.duration import go_quote
from proconsul.errors import ProconsulError
from proconsul.gossip.serf.coordinate import Coordinate
from proconsul.state.coordinate import intersect

HELP = """
Usage: consul rtt [options] node1 [node2]

  Estimates the round trip time between two nodes using Consul's network
  coordinate model of the cluster.

  At least one node name is required. If the second node name isn't given, it
  is set to the agent's node name. Note that these are node names as known to
  Consul as "consul members" would show, not IP addresses.

  By default, the two nodes are assumed to be nodes in the local datacenter
  and the LAN coordinates are used. If the -wan option is given, then the WAN
  coordinates are used, and the node names must be suffixed by a period and
  the datacenter (eg. "myserver.dc1").

  It is not possible to measure between LAN coordinates and WAN coordinates
  because they are maintained by independent Serf gossip areas, so they are
  not compatible.
"""


class _Flags:
    def __init__(self) -> None:
        self.fs = FlagSet()
        self.wan: Flag[bool] = self.fs.bool_flag(
            "wan", False, "Use WAN coordinates instead of LAN coordinates.")
        self.http = HTTPFlags(self.fs, server=False)


def help_text() -> str:
    return _Flags().fs.usage(HELP)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else 0.0


def parse_coordinate(obj: Any) -> Coordinate | None:
    """A coordinate as the API returns it; None for a null one."""
    if not isinstance(obj, Mapping):
        return None
    vec = obj.get("Vec")
    return Coordinate([_number(x) for x in vec] if isinstance(vec, list) else [],
                      _number(obj.get("Error")), _number(obj.get("Adjustment")),
                      _number(obj.get("Height")))


def _same(a: str, b: str) -> bool:
    """Go's strings.EqualFold (simple case folding)."""
    return a.casefold() == b.casefold()


def lan_pair(entries: list[Any], node1: str, node2: str
             ) -> tuple[Coordinate | None, Coordinate | None]:
    """The coordinates of two nodes from `/v1/coordinate/nodes`, paired by segment."""
    cs1: dict[str, Coordinate | None] = {}
    cs2: dict[str, Coordinate | None] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        name = str(entry.get("Node") or "")
        segment = str(entry.get("Segment") or "")
        if _same(name, node1):
            cs1[segment] = parse_coordinate(entry.get("Coord"))
        if _same(name, node2):
            cs2[segment] = parse_coordinate(entry.get("Coord"))
    return intersect(cs1, cs2)


def wan_pair(dcs: list[Any], node1: str, dc1: str, node2: str, dc2: str
             ) -> tuple[Coordinate | None, Coordinate | None]:
    """The coordinates of two servers from `/v1/coordinate/datacenters`, only when both were
    found in the same network area (nothing is comparable across areas)."""
    area1: str | None = None
    area2: str | None = None
    coord1: Coordinate | None = None
    coord2: Coordinate | None = None
    for dc in dcs:
        if not isinstance(dc, Mapping):
            continue
        name = str(dc.get("Datacenter") or "")
        area = str(dc.get("AreaID") or "")
        for entry in dc.get("Coordinates") or ():
            if not isinstance(entry, Mapping):
                continue
            node = str(entry.get("Node") or "")
            if name == dc1 and _same(node, node1):
                area1, coord1 = area, parse_coordinate(entry.get("Coord"))
            if name == dc2 and _same(node, node2):
                area2, coord2 = area, parse_coordinate(entry.get("Coord"))
            if area1 == area2 and coord1 is not None and coord2 is not None:
                return coord1, coord2
    return None, None


def _show(node1: str, node2: str, coord1: Coordinate, coord2: Coordinate, source: str) -> int:
    try:
        seconds = coord1.distance_to(coord2)
    except ProconsulError as exc:
        err(f"Error getting coordinates: {exc}")
        return 1
    out(f"Estimated {node1} <-> {node2} rtt: {seconds * 1000.0:.3f} ms "
        f"(using {source} coordinates)")
    return 0


def _wan(client: Client, nodes: list[str]) -> tuple[Coordinate | None, Coordinate | None] | int:
    if len(nodes) < 2:
        try:
            config = client.agent_self().get("Config") or {}
        except APIError as exc:
            err(f"Unable to look up agent info: {exc}")
            return 1
        nodes.append(f"{config.get('NodeName', '')}.{config.get('Datacenter', '')}")
    parts1, parts2 = nodes[0].split("."), nodes[1].split(".")
    if len(parts1) != 2 or len(parts2) != 2:
        err("Node names must be specified as <node name>.<datacenter> with -wan")
        return 1
    try:
        dcs, _ = client.query("/v1/coordinate/datacenters", timeout=60.0)
    except APIError as exc:
        err(f"Error getting coordinates: {exc}")
        return 1
    return wan_pair(list(dcs or []), parts1[0], parts1[1], parts2[0], parts2[1])


def _lan(client: Client, nodes: list[str]) -> tuple[Coordinate | None, Coordinate | None] | int:
    if len(nodes) < 2:
        try:
            nodes.append(client.agent_node_name())
        except APIError as exc:
            err(f"Unable to look up agent info: {exc}")
            return 1
    try:
        entries, _ = client.query("/v1/coordinate/nodes", timeout=60.0)
    except APIError as exc:
        err(f"Error getting coordinates: {exc}")
        return 1
    return lan_pair(list(entries or []), nodes[0], nodes[1])


def run(argv: list[str]) -> int:
    f = _Flags()
    nodes = parse_args(f.fs, argv)
    if nodes is None:
        return 1
    if not 1 <= len(nodes) <= 2:
        err("One or two node names must be specified")
        err("")
        err(help_text())
        return 1
    client = f.http.connect()
    if client is None:
        return 1
    source = "WAN" if f.wan.value else "LAN"
    found = _wan(client, nodes) if f.wan.value else _lan(client, nodes)
    if isinstance(found, int):
        return found
    coord1, coord2 = found
    if coord1 is None:
        err(f"Could not find a coordinate for node {go_quote(nodes[0])}")
        return 1
    if coord2 is None:
        err(f"Could not find a coordinate for node {go_quote(nodes[1])}")
        return 1
    return _show(nodes[0], nodes[1], coord1, coord2, source)
