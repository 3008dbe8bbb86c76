"""The agent's periodic push of its own LAN coordinate to the servers (Consul's
Agent.sendCoordinate).

Every agent, client or server, pushes; the interval grows with the cluster so the servers see
about `sync_coordinate_rate_target` updates per second in total, never more often than every
`sync_coordinate_interval_min` from one agent, and each wait adds a random stagger of up to one
interval so agents started together do not push together. A failed push is logged and the
loop carries on: the next one is at most a couple of intervals away.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from proconsul.gossip.serf.coordinate import Coordinate

log = logging.getLogger("proconsul")

#: Rates at or below once a day cluster-wide mean "use the minimum interval" (Consul's minRate).
MIN_RATE = 1.0 / 86400

#: What a push goes through: the server's Coordinate.Update (node, segment, coordinate).
UpdateFn = Callable[[str, str, Coordinate], Awaitable[None]]


def rate_scaled_interval(rate: float, minimum: float, nodes: int) -> float:
    """Seconds between actions of one node so that `nodes` of them together do `rate`
    actions per second, but never less than `minimum` (Consul's lib.RateScaledInterval)."""
    if rate <= MIN_RATE:
        return minimum
    return max(nodes / rate, minimum)


def random_stagger(interval: float, rng: random.Random | None = None) -> float:
    """A random wait in [0, interval) (Consul's lib.RandomStagger)."""
    if interval <= 0:
        return 0.0
    return (rng or random).random() * interval


class CoordinateSync:
    """Pushes `get_coordinate()` through `update` for this node, forever, until stopped.

    :param node: this agent's node name.
    :param get_coordinate: this agent's current LAN coordinate (the LAN Serf's Vivaldi client).
    :param update: delivers one coordinate to the servers.
    :param cluster_size: how many LAN members there are now (read before every wait).
    :param segment: the network segment this agent's coordinate belongs to ("" in CE).
    """

    def __init__(
        self,
        node: str,
        get_coordinate: Callable[[], Coordinate],
        update: UpdateFn,
        cluster_size: Callable[[], int],
        rate_target: float = 64.0,
        interval_min: float = 15.0,
        segment: str = "",
        rng: random.Random | None = None,
    ) -> None:
        self.node = node
        self.get_coordinate = get_coordinate
        self.update = update
        self.cluster_size = cluster_size
        self.rate_target = rate_target
        self.interval_min = interval_min
        self.segment = segment
        self._rng = rng
        self._task: asyncio.Task[None] | None = None
        #: pushes that reached the servers, and pushes that failed (for stats and tests)
        self.sent = 0
        self.failed = 0

    def next_delay(self) -> float:
        interval = rate_scaled_interval(self.rate_target, self.interval_min,
                                        self.cluster_size())
        return interval + random_stagger(interval, self._rng)

    async def push(self) -> bool:
        """One push; True when the servers took it."""
        try:
            coord = self.get_coordinate()
        except Exception as err:
            log.error("Failed to get coordinate: error=%s", err)
            self.failed += 1
            return False
        try:
            await self.update(self.node, self.segment, coord)
        except Exception as err:
            log.error("Coordinate update error: error=%s", err)
            self.failed += 1
            return False
        self.sent += 1
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.next_delay())
            await self.push()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
