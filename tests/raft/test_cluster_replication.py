"""Replication: commands reach every FSM in order, callers are answered after commit and
apply, writes are batched, commits need a quorum, and lagging or diverged followers are
repaired from the leader's log."""

from __future__ import annotations

import asyncio

import pytest

from proconsul.errors import NoLeader
from proconsul.raft.errors import LeadershipLost, NotLeader
from tests.raft.cluster_support import Cluster, raises_within
from tests.raft.support import run


def test_commands_are_applied_in_order_everywhere_and_answered_with_the_result() -> None:
    async def body() -> None:
        cluster = Cluster(3)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            results = [await leader.raft.apply(f"c{i}".encode()) for i in range(20)]
            assert results == list(range(1, 21))
            # answered only once applied on the leader
            assert leader.fsm.commands == [f"c{i}".encode() for i in range(20)]
            commands = await cluster.wait_converged()
            assert commands == [f"c{i}".encode() for i in range(20)]
            for node in cluster.running():
                assert node.fsm.indexes == sorted(node.fsm.indexes)
            # an FSM error is its caller's answer; the log goes on
            result = await leader.raft.apply(b"boom")
            assert isinstance(result, ValueError) and str(result) == "boom"
            assert await leader.raft.apply(b"after") == 21
        finally:
            await cluster.stop()

    run(body())


def test_a_follower_refuses_applies() -> None:
    async def body() -> None:
        cluster = Cluster(3)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            follower = next(n for n in cluster.running() if n is not leader)
            with pytest.raises(NotLeader):
                await follower.raft.apply(b"x")
            with pytest.raises(NoLeader):
                await follower.raft.verify_leader()
        finally:
            await cluster.stop()

    run(body())


def test_concurrent_applies_share_log_writes_and_append_entries() -> None:
    async def body() -> None:
        # long timeouts: two thousand callers at once keep the loop busy for a while
        cluster = Cluster(3, overrides={"heartbeat_timeout": 2.0, "election_timeout": 2.0,
                                        "leader_lease_timeout": 1.0})
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            await leader.raft.barrier()
            appends_before = leader.logs.appends
            network = cluster.network
            sent_before = sum(v for (kind, src, _), v in network.delivered.items()
                              if kind == "AppendEntries" and src == leader.address)
            count = 2000
            results = await asyncio.gather(
                *(leader.raft.apply(f"w{i}".encode()) for i in range(count)))
            assert sorted(results) == list(range(1, count + 1))
            appends = leader.logs.appends - appends_before
            sent = sum(v for (kind, src, _), v in network.delivered.items()
                       if kind == "AppendEntries" and src == leader.address) - sent_before
            # one durable write per batch, many entries per request
            assert appends <= count // 100, appends
            assert sent < count // 4, sent
            await cluster.wait_converged()
        finally:
            await cluster.stop()

    run(body())


def test_minority_side_cannot_commit_and_its_entries_are_discarded() -> None:
    async def body() -> None:
        cluster = Cluster(5)
        await cluster.start()
        try:
            await cluster.apply(b"before")
            old = await cluster.wait_leader()
            ids = list(cluster.nodes)
            buddy = next(i for i in ids if i != old.id)
            minority = [old.id, buddy]
            majority = [i for i in ids if i not in minority]
            addr = {i: n.address for i, n in cluster.nodes.items()}
            cluster.network.partition([addr[i] for i in minority],
                                      [addr[i] for i in majority])
            # the cut-off leader takes the write but can never commit it: the caller hears
            # of it cleanly once the lease runs out
            pending = asyncio.ensure_future(old.raft.apply(b"lost"))
            err = await raises_within(pending, NoLeader)
            assert isinstance(err, LeadershipLost | NotLeader)
            assert b"lost" not in old.fsm.commands
            await cluster.apply(b"majority", among=majority)
            cluster.network.heal()
            commands = await cluster.wait_converged()
            assert commands == [b"before", b"majority"]
            for node in cluster.running():
                assert node.fsm.commands == [b"before", b"majority"]
            cluster.assert_no_split_brain()
        finally:
            await cluster.stop()

    run(body())


def test_lagging_follower_is_repaired_from_the_leaders_log() -> None:
    async def body() -> None:
        cluster = Cluster(3, overrides={"max_append_entries": 16})
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            lagging = next(n for n in cluster.running() if n is not leader)
            cluster.network.disconnect(leader.address, lagging.address)
            for i in range(300):
                await cluster.apply(f"x{i}".encode())
            assert len(lagging.fsm.commands) < 300
            cluster.network.heal()
            commands = await cluster.wait_converged()
            assert len(commands) == 300
            assert lagging.fsm.commands == commands
            assert lagging.logs.last_index() == cluster.leaders()[0].logs.last_index()
        finally:
            await cluster.stop()

    run(body())


def test_diverged_follower_log_is_truncated_to_the_leaders() -> None:
    async def body() -> None:
        cluster = Cluster(3)
        await cluster.start()
        try:
            await cluster.apply(b"common")
            old = await cluster.wait_leader()
            ids = list(cluster.nodes)
            others = [i for i in ids if i != old.id]
            cluster.network.isolate(old.address)
            # entries only the old leader holds, in its term
            doomed = [asyncio.ensure_future(old.raft.apply(f"doomed{i}".encode()))
                      for i in range(5)]
            await asyncio.gather(*doomed, return_exceptions=True)
            stale_last = old.logs.last_index()
            await cluster.wait_leader(others)
            for i in range(3):
                await cluster.apply(f"new{i}".encode(), among=others)
            cluster.network.heal()
            commands = await cluster.wait_converged()
            assert commands == [b"common", b"new0", b"new1", b"new2"]
            assert old.fsm.commands == commands
            term_at = [old.logs.get_log(i).term for i in range(2, old.logs.last_index() + 1)]
            assert term_at == sorted(term_at)
            assert stale_last >= 1
        finally:
            await cluster.stop()

    run(body())


def test_progress_over_a_lossy_slow_network() -> None:
    async def body() -> None:
        cluster = Cluster(3)
        await cluster.start()
        try:
            await cluster.wait_leader()
            addresses = [n.address for n in cluster.running()]
            for src in addresses:
                for dst in addresses:
                    if src != dst:
                        cluster.network.set_drop(src, dst, 0.1)
                        cluster.network.set_delay(src, dst, 0.002)
            for i in range(100):
                await cluster.apply(f"l{i}".encode())
            cluster.network.clear_faults()
            commands = await cluster.wait_converged()
            assert commands == [f"l{i}".encode() for i in range(100)]
            cluster.assert_no_split_brain()
        finally:
            await cluster.stop()

    run(body())
