"""What the Serf tests share: shrunken timings, a config maker, bounded waits, a pool of nodes
on the in-memory network, and nodes on real loopback sockets for restarts on the same port."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from proconsul.gossip.config import default_local
from proconsul.gossip.keyring import Keyring
from proconsul.gossip.mock_transport import MockNetwork
from proconsul.gossip.net_transport import NetTransport
from proconsul.gossip.serf.config import SerfConfig
from proconsul.gossip.serf.serf import Serf, SerfEvent

#: retransmit_mult is the LAN profile's 4 (local's 2): a query is not in push/pull, and with 2
#: transmissions per node a broadcast misses one node of four now and then, by chance alone.
FAST = replace(default_local(), probe_interval=0.1, probe_timeout=0.04, gossip_interval=0.02,
               push_pull_interval=0.5, tcp_timeout=0.5, gossip_to_the_dead_time=1.0,
               retransmit_mult=4)


def config(name: str, tags: dict[str, str] | None = None, **settings: Any) -> SerfConfig:
    base = SerfConfig(name, dict(tags or {}), protocol_version=5, memberlist=FAST,
                      broadcast_timeout=1.0, leave_propagate_delay=0.1, reap_interval=0.2,
                      reconnect_timeout=1.0, tombstone_timeout=1.0)
    return replace(base, **settings)


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def run(main: Callable[[], Awaitable[None]], timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(main(), timeout))


def status(s: Serf, name: str) -> str:
    m = s.members.get(name)
    return m.status_name if m else "none"


def address(s: Serf) -> str:
    return "{}:{}".format(*s.memberlist.transport.advertise())


async def pool(n: int, keyring: bool = False,
               **settings: Any) -> tuple[list[Serf], list[list[SerfEvent]]]:
    """`n` started nodes n0..n{n-1} on one in-memory network, all joined through n0; odd ones
    tagged role=web, even ones role=db."""
    net = MockNetwork(seed=n)
    nodes: list[Serf] = []
    logs: list[list[SerfEvent]] = []
    for i in range(n):
        log: list[SerfEvent] = []
        ring = Keyring([bytes(range(16))]) if keyring else None
        s = Serf(config(f"n{i}", {"role": "web" if i % 2 else "db"}, **settings),
                 net.new_transport(), log.append, keyring=ring, rng=random.Random(i))
        await s.start()
        nodes.append(s)
        logs.append(log)
    for s in nodes[1:]:
        assert await s.join([address(nodes[0])]) == 1
    await wait_for(lambda: all(len(s.members) == n for s in nodes))
    return nodes, logs


async def net_node(cfg: SerfConfig, port: int = 0,
                   on_event: Callable[[SerfEvent], None] | None = None,
                   start: bool = True) -> Serf:
    """A Serf on a real UDP+TCP socket pair on 127.0.0.1 (`port` 0: a free one)."""
    transport = NetTransport("127.0.0.1", port)
    await transport.listen()
    s = Serf(cfg, transport, on_event, rng=random.Random(cfg.node_name))
    if start:
        await s.start()
    return s
