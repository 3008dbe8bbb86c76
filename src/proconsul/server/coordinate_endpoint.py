"""Network coordinates on the server (Consul's agent/consul/coordinate_endpoint.go).

Every agent pushes its LAN coordinate every 15 s or more (more in a larger cluster), so
committing each push through Raft would make coordinates the busiest writer of a large
cluster. Updates are therefore only validated and parked here, the latest per node and
segment, and every `coordinate_update_period` the parked ones go to the log in batches of
`coordinate_update_batch_size`, at most `coordinate_update_max_batches` batches per period;
whatever is beyond that is discarded with a warning (the nodes push again soon). Batches are
sent with the "safe to ignore" flag, as Consul sends them, so a server that does not know the
command skips it instead of failing.

The WAN view (`/v1/coordinate/datacenters`) is not replicated: it is the WAN gossip pool's
coordinate cache on the answering server, supplied by the agent as a callable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from proconsul.errors import NoLeader, RPCError
from proconsul.gossip.serf.coordinate import Coordinate
from proconsul.server.commands import MessageType, encode
from proconsul.state.coordinate import CoordinateEntry, DatacenterMap

if TYPE_CHECKING:
    from proconsul.server.server import Server
    from proconsul.state.store import Store
    from proconsul.state.watch import WatchSet
    from proconsul.structs.query import QueryMeta, QueryOptions

log = logging.getLogger("proconsul.server.coordinate")

#: The built-in WAN network area (Consul's types.AreaWAN).
AREA_WAN = "wan"

#: One alive server of the WAN pool: member name (`<node>.<dc>`), its datacenter (the
#: member's `dc` tag), and the coordinate the pool holds for it (None when it has none yet).
WANMember = tuple[str, str, Coordinate | None]


class CoordinateEndpoint:
    """The Coordinate RPC endpoint: Update, ListDatacenters, ListNodes and Node.

    The gossip seams are plain attributes so the agent can attach its pools after building
    the server: `lan_coordinate` is this server's own LAN coordinate (updates must have its
    dimensionality), `wan_members` lists the WAN pool's alive servers, and `wan_coordinate`
    is this server's own WAN coordinate, which stands in for whatever the pool's cache holds
    for this server.
    """

    def __init__(
        self,
        server: Server,
        update_period: float = 5.0,
        batch_size: int = 128,
        max_batches: int = 5,
        disabled: bool = False,
    ) -> None:
        self._srv = server
        self.update_period = update_period
        self.batch_size = max(1, batch_size)
        self.max_batches = max(1, max_batches)
        #: `disable_coordinates`: the HTTP API answers 401 and the agent pushes nothing.
        self.disabled = disabled
        self.lan_coordinate: Callable[[], Coordinate] = Coordinate.new
        self.wan_members: Callable[[], list[WANMember]] | None = None
        self.wan_coordinate: Callable[[], Coordinate] | None = None
        self._pending: dict[tuple[str, str], CoordinateEntry] = {}

    # -- updates ------------------------------------------------------------------------------

    async def update(self, node: str, segment: str, coord: Coordinate | None) -> None:
        """Validate one node's coordinate and park it for the next batch (Coordinate.Update).

        A later update for the same node and segment replaces a parked one, so a node that
        pushes twice within a period costs one write.
        """
        if not self._srv.applier.is_leader() and self._srv.leader_link is None:
            raise NoLeader()  # a follower parks it too: its batch is forwarded to the leader
        if coord is None or not coord.is_valid():
            raise RPCError("invalid coordinate")
        if not self.lan_coordinate().is_compatible_with(coord):
            raise RPCError("incompatible coordinate")
        self._pending[(node, segment)] = CoordinateEntry(node, segment, coord.clone())

    def pending(self) -> int:
        """How many updates wait for the next batch."""
        return len(self._pending)

    async def flush(self) -> None:
        """Commit the parked updates in batches (Consul's batchApplyUpdates). They are taken
        first, so updates arriving meanwhile wait for the next period; a failed batch loses
        its updates and the ones after it, as in Consul."""
        pending, self._pending = self._pending, {}
        updates = list(pending.values())
        limit = self.batch_size * self.max_batches
        if len(updates) > limit:
            log.warning("Discarded coordinate updates: number_discarded=%d",
                        len(updates) - limit)
            del updates[limit:]
        for start in range(0, len(updates), self.batch_size):
            batch = updates[start:start + self.batch_size]
            body = {"Coordinates": [e.to_wire() for e in batch]}
            await self._srv.apply(
                encode(MessageType.COORDINATE_BATCH_UPDATE, body, ignore_unknown=True))

    async def run(self) -> None:
        """The batch loop: one flush per update period, for as long as the server runs."""
        while True:
            await asyncio.sleep(self.update_period)
            if not self._pending:
                continue
            try:
                await self.flush()
            except Exception as err:
                log.warning("Batch update failed: error=%s", err)

    # -- reads --------------------------------------------------------------------------------

    def list_datacenters(self) -> list[DatacenterMap]:
        """The WAN coordinates of every datacenter's servers, `.<dc>` stripped from the node
        names. Servers without a coordinate are left out, and a datacenter none of whose
        servers has one is left out altogether (Consul's ListDatacenters). Datacenters come
        in name order, their servers in name order."""
        srv = self._srv
        members = list(self.wan_members()) if self.wan_members is not None else []
        if self.wan_coordinate is not None:
            own_name = f"{srv.node_name}.{srv.datacenter}"
            own = self.wan_coordinate()
            members = [(n, dc, own if n == own_name else c) for n, dc, c in members]
            if all(n != own_name for n, _, _ in members):
                members.append((own_name, srv.datacenter, own))
        by_dc: dict[str, list[CoordinateEntry]] = {}
        for name, dc, coord in members:
            if coord is None:
                continue
            suffix = "." + dc
            node = name[: -len(suffix)] if name.endswith(suffix) else name
            by_dc.setdefault(dc, []).append(CoordinateEntry(node, "", coord.clone()))
        return [
            DatacenterMap(dc, AREA_WAN, tuple(sorted(by_dc[dc], key=lambda e: e.node)))
            for dc in sorted(by_dc)
        ]

    async def list_nodes(self, opts: QueryOptions) -> tuple[QueryMeta, list[CoordinateEntry]]:
        """Every node's LAN coordinates (Coordinate.ListNodes); blocking."""
        found: list[list[CoordinateEntry]] = [[]]

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, found[0] = store.coordinates(ws)
            return index, False

        return await self._srv.read(opts, query), found[0]

    async def node(self, node: str, opts: QueryOptions) -> tuple[QueryMeta, list[CoordinateEntry]]:
        """One node's LAN coordinates, one entry per segment (Coordinate.Node); blocking."""
        found: list[list[CoordinateEntry]] = [[]]

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, segments = store.coordinate(ws, node)
            found[0] = [CoordinateEntry(node, seg, segments[seg]) for seg in sorted(segments)]
            return index, False

        return await self._srv.read(opts, query), found[0]
