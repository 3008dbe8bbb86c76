"""Memberlist nodes on the in-memory network: join and convergence, failure detection through
suspicion, refutation, graceful leave, meta updates, push/pull repair and encryption.

Timings are a shrunken local profile (probe every 100 ms) so a test takes seconds; every wait
is bounded and asserts on state, never on how long something took.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest

from proconsul.errors import GossipError
from proconsul.gossip.config import GossipConfig, default_local
from proconsul.gossip.keyring import Keyring
from proconsul.gossip.memberlist import Delegates, Memberlist, parse_join_address
from proconsul.gossip.messages import STATE_ALIVE, STATE_DEAD, STATE_LEFT, Suspect
from proconsul.gossip.mock_transport import MockNetwork
from proconsul.gossip.state import NodeState

FAST = replace(default_local(), probe_interval=0.1, probe_timeout=0.04, gossip_interval=0.02,
               push_pull_interval=0.5, tcp_timeout=0.5, gossip_to_the_dead_time=1.0)


class Events:
    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    def notify_join(self, node: NodeState) -> None:
        self.log.append(("join", node.name))

    def notify_leave(self, node: NodeState) -> None:
        self.log.append(("left" if node.state == STATE_LEFT else "leave", node.name))

    def notify_update(self, node: NodeState) -> None:
        self.log.append(("update", node.name))


class Meta:
    """A delegate that only supplies node meta."""

    def __init__(self, meta: bytes = b"") -> None:
        self.meta = meta

    def node_meta(self, limit: int) -> bytes:
        return self.meta

    def notify_msg(self, payload: bytes) -> None:
        pass

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        return []

    def local_state(self, join: bool) -> bytes:
        return b""

    def merge_remote_state(self, buf: bytes, join: bool) -> None:
        pass


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def cluster(net: MockNetwork, n: int, config: GossipConfig = FAST,
                  keyring: Callable[[int], Keyring | None] = lambda i: None,
                  ) -> tuple[list[Memberlist], list[Events]]:
    nodes: list[Memberlist] = []
    events: list[Events] = []
    for i in range(n):
        ev = Events()
        ml = Memberlist(f"node-{i}", config, net.new_transport(),
                        Delegates(delegate=Meta(), events=ev), keyring=keyring(i),
                        rng=random.Random(i))
        await ml.start()
        nodes.append(ml)
        events.append(ev)
    return nodes, events


def seed_of(ml: Memberlist) -> str:
    host, port = ml.transport.advertise()
    return f"{host}:{port}"


def states(ml: Memberlist) -> dict[str, int]:
    return {n.name: n.state for n in ml.nodes}


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 60))


def test_join_converges_and_notifies() -> None:
    async def main() -> None:
        net = MockNetwork(seed=1)
        nodes, events = await cluster(net, 5)
        for ml in nodes[1:]:
            assert await ml.join([seed_of(nodes[0])]) == 1
        await wait_for(lambda: all(ml.num_members() == 5 for ml in nodes))
        for ml, ev in zip(nodes, events, strict=True):
            joined = {name for kind, name in ev.log if kind == "join"}
            assert joined == {f"node-{i}" for i in range(5)}, (ml.name, ev.log)
        for ml in nodes:
            await ml.shutdown()

    run(main)


def test_failed_node_is_suspected_then_dead_everywhere() -> None:
    async def main() -> None:
        net = MockNetwork(seed=2)
        nodes, events = await cluster(net, 5)
        for ml in nodes[1:]:
            await ml.join([seed_of(nodes[0])])
        await wait_for(lambda: all(ml.num_members() == 5 for ml in nodes))
        victim = nodes[4]
        net.partition(victim.transport.advertise())
        survivors = nodes[:4]
        # dead nodes are forgotten GossipToTheDeadTime later, so look for the notification
        await wait_for(lambda: all(("leave", "node-4") in ev.log for ev in events[:4]),
                       timeout=20)
        for ml in survivors:
            assert states(ml).get("node-4") in (STATE_DEAD, None)
        # the cut-off node thinks the others failed, and nobody believes it is dead itself
        assert victim.local_node().state == STATE_ALIVE
        for ml in nodes:
            await ml.shutdown()

    run(main)


def test_suspicion_about_a_live_node_is_refuted() -> None:
    async def main() -> None:
        net = MockNetwork(seed=3)
        nodes, _ = await cluster(net, 3)
        for ml in nodes[1:]:
            await ml.join([seed_of(nodes[0])])
        await wait_for(lambda: all(ml.num_members() == 3 for ml in nodes))
        target = nodes[2]
        before = target.local_node().incarnation
        nodes[0].suspect_node(Suspect(before, "node-2", "node-0"))
        await wait_for(lambda: target.local_node().incarnation > before)
        await wait_for(lambda: all(ml.node_map["node-2"].state == STATE_ALIVE
                                   and ml.node_map["node-2"].incarnation > before
                                   for ml in nodes))
        assert target.health_score() >= 1 or target.local_node().incarnation > before
        for ml in nodes:
            await ml.shutdown()

    run(main)


def test_graceful_leave_is_left_not_failed() -> None:
    async def main() -> None:
        net = MockNetwork(seed=4)
        nodes, events = await cluster(net, 4)
        for ml in nodes[1:]:
            await ml.join([seed_of(nodes[0])])
        await wait_for(lambda: all(ml.num_members() == 4 for ml in nodes))
        await nodes[3].leave(2.0)
        await nodes[3].shutdown()
        await wait_for(lambda: all(("left", "node-3") in ev.log for ev in events[:3]))
        for ml in nodes[:3]:
            await ml.shutdown()

    run(main)


def test_meta_update_reaches_everyone() -> None:
    async def main() -> None:
        net = MockNetwork(seed=5)
        nodes, events = await cluster(net, 3)
        for ml in nodes[1:]:
            await ml.join([seed_of(nodes[0])])
        await wait_for(lambda: all(ml.num_members() == 3 for ml in nodes))
        delegate = nodes[1].delegate
        assert isinstance(delegate, Meta)
        delegate.meta = b"rack=r1"
        await nodes[1].update_node(2.0)
        await wait_for(lambda: all(ml.node_map["node-1"].meta == b"rack=r1" for ml in nodes))
        assert ("update", "node-1") in events[0].log
        for ml in nodes:
            await ml.shutdown()

    run(main)


def test_push_pull_repairs_what_gossip_lost() -> None:
    async def main() -> None:
        # every UDP packet is lost: only the TCP push/pulls can spread membership
        net = MockNetwork(seed=6, drop_rate=1.0)
        nodes, _ = await cluster(net, 4, replace(FAST, probe_interval=5.0))
        for ml in nodes[1:]:
            await ml.join([seed_of(nodes[0])])
        await wait_for(lambda: all(ml.num_members() == 4 for ml in nodes), timeout=15)
        for ml in nodes:
            await ml.shutdown()

    run(main)


def test_encrypted_pool_and_a_node_with_the_wrong_key() -> None:
    async def main() -> None:
        net = MockNetwork(seed=7)
        good = bytes(range(16))
        bad = bytes(range(16, 32))

        def ring(i: int) -> Keyring:
            return Keyring([bad if i == 3 else good])

        nodes, _ = await cluster(net, 4, keyring=ring)
        for ml in nodes[1:3]:
            assert await ml.join([seed_of(nodes[0])]) == 1
        await wait_for(lambda: all(ml.num_members() == 3 for ml in nodes[:3]))
        with pytest.raises(GossipError):
            await nodes[3].join([seed_of(nodes[0])])
        assert "node-3" not in nodes[0].node_map
        for ml in nodes:
            await ml.shutdown()

    run(main)


def test_join_reports_every_failure() -> None:
    async def main() -> None:
        net = MockNetwork(seed=8)
        nodes, _ = await cluster(net, 1)
        with pytest.raises(GossipError, match=r"2 error\(s\) occurred"):
            await nodes[0].join(["127.0.0.1:1", "127.0.0.1:2"])
        await nodes[0].shutdown()

    run(main)


def test_parse_join_address() -> None:
    assert parse_join_address("a/10.0.0.1:8301", 7946) == ("a", ("10.0.0.1", 8301))
    assert parse_join_address("10.0.0.1", 7946) == ("", ("10.0.0.1", 7946))
    assert parse_join_address("[::1]:99", 7946) == ("", ("::1", 99))
    assert parse_join_address("::1", 7946) == ("", ("::1", 7946))


def test_labelled_pool_refuses_other_labels() -> None:
    async def main() -> None:
        net = MockNetwork(seed=9)
        nodes = []
        for i, label in enumerate((b"pool-a", b"pool-a", b"pool-b")):
            ml = Memberlist(f"node-{i}", FAST, net.new_transport(), Delegates(delegate=Meta()),
                            label=label, keyring=Keyring([bytes(range(16))]) if i else None,
                            rng=random.Random(i))
            await ml.start()
            nodes.append(ml)
        nodes[0].keyring = Keyring([bytes(range(16))])
        assert await nodes[1].join([seed_of(nodes[0])]) == 1
        await wait_for(lambda: nodes[0].num_members() == 2 and nodes[1].num_members() == 2)
        with pytest.raises(GossipError):
            await nodes[2].join([seed_of(nodes[0])])
        assert "node-2" not in nodes[0].node_map
        for ml in nodes:
            await ml.shutdown()

    run(main)
