"""`?near=` sorting (Consul's agent/consul/rtt.go): order an answer by the estimated round trip
time from a source node, using the coordinates in the state store.

The sort is stable and nodes without a coordinate compare as infinitely far, so they keep
their name order behind every node that has one. When the source node has no coordinate (or
is unknown) the answer is left as it is: there is nothing to measure from. `_agent` is
resolved by the HTTP layer (it knows which agent received the request); `_ip` is resolved
here to the first catalog node, by name, whose address is the request's source address.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from proconsul.state.coordinate import compute_distance, intersect

if TYPE_CHECKING:
    from proconsul.state.store import Store

#: `near` value meaning "the node whose address the request came from".
NEAR_IP = "_ip"
#: `near` value meaning "the agent that received the request" (resolved before the server).
NEAR_AGENT = "_agent"

_T = TypeVar("_T")


def resolve_source(store: Store, near: str, source_ip: str) -> str:
    """The node name to measure from: `near` itself, or for `_ip` the node with that address
    ("" when none has it, which leaves the answer unsorted)."""
    if near != NEAR_IP:
        return near
    if not source_ip:
        return ""
    for name in sorted(store.nodes):
        if store.nodes[name].address == source_ip:
            return name
    return ""


def sort_by_distance(store: Store, near: str, items: list[_T], node_of: Callable[[_T], str],
                     source_ip: str = "") -> None:
    """Sort `items` in place, nearest to the source node first."""
    if not near or len(items) < 2:
        return
    source = resolve_source(store, near, source_ip)
    if not source:
        return
    sets = store.coordinate_sets
    origin = sets.get(source)
    if not origin:
        return
    cache: dict[str, float] = {}

    def distance(item: _T) -> float:
        name = node_of(item)
        dist = cache.get(name)
        if dist is None:
            dist = compute_distance(*intersect(origin, sets.get(name, {})))
            cache[name] = dist
        return dist

    items.sort(key=distance)
