"""Leader operations: leadership transfer, barriers, verify_leader, the leadership listeners
the server's leader duties hang on, and the stats Consul reports."""

from __future__ import annotations

import asyncio

import pytest

from proconsul.errors import NoLeader
from proconsul.raft.errors import (
    LeadershipTransferError,
    LeadershipTransferInProgress,
    NotLeader,
)
from proconsul.raft.observer import LeaderObservation, Observation
from tests.raft.cluster_support import Cluster, raises_within, wait_for
from tests.raft.support import run


def test_leadership_transfer_to_a_chosen_server_and_to_any() -> None:
    async def body() -> None:
        cluster = Cluster(3)
        await cluster.start()
        try:
            await cluster.apply(b"one")
            leader = await cluster.wait_leader()
            target = next(n for n in cluster.running() if n is not leader)
            await leader.raft.leadership_transfer(target.id)
            new = await cluster.wait_leader()
            assert new is target
            assert not leader.raft.is_leader()
            await wait_for(lambda: leader.raft.leader_address() == target.address,
                           "the old leader to follow the new one")
            await cluster.apply(b"two")
            await new.raft.leadership_transfer()
            third = await cluster.wait_leader()
            assert third is not new
            await cluster.apply(b"three")
            assert await cluster.wait_converged() == [b"one", b"two", b"three"]
            with pytest.raises(LeadershipTransferError, match="to itself"):
                await third.raft.leadership_transfer(third.id)
            with pytest.raises(NotLeader):
                await new.raft.leadership_transfer()
            cluster.assert_no_split_brain()
        finally:
            await cluster.stop()

    run(body())


def test_transfer_refuses_new_writes_and_times_out_when_the_target_cannot_win() -> None:
    async def body() -> None:
        cluster = Cluster(3)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            target = next(n for n in cluster.running() if n is not leader)
            # the target hears TimeoutNow but nobody hears its votes
            for node in cluster.running():
                if node is not target:
                    cluster.network.cut(target.address, node.address)
            transfer = asyncio.ensure_future(leader.raft.leadership_transfer(target.id))
            await asyncio.sleep(0)
            with pytest.raises(LeadershipTransferInProgress):
                await leader.raft.apply(b"during")
            with pytest.raises(LeadershipTransferError, match=r"timeout|TimeoutNow"):
                await transfer
            assert leader.raft.is_leader()
            cluster.network.heal()
            await cluster.apply(b"after")
            assert await cluster.wait_converged() == [b"after"]
        finally:
            await cluster.stop()

    run(body())


def test_barrier_and_verify_leader() -> None:
    async def body() -> None:
        cluster = Cluster(3)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            writes = [asyncio.ensure_future(leader.raft.apply(f"b{i}".encode()))
                      for i in range(10)]
            await asyncio.sleep(0)  # the writes are queued before the barrier
            index = await leader.raft.barrier()
            assert all(w.done() for w in writes)
            assert leader.raft.applied >= index > 10
            await leader.raft.verify_leader()
            follower = next(n for n in cluster.running() if n is not leader)
            with pytest.raises(NoLeader):
                await follower.raft.verify_leader()
            with pytest.raises(NoLeader):
                await follower.raft.barrier()
            # a leader cut off from everyone cannot verify: it fails once the lease runs out
            cluster.network.isolate(leader.address)
            await raises_within(leader.raft.verify_leader(), NoLeader)
        finally:
            await cluster.stop()

    run(body())


def test_leadership_listeners_and_observers_follow_the_leader() -> None:
    async def body() -> None:
        cluster = Cluster(3)
        events: dict[str, list[bool]] = {i: [] for i in cluster.nodes}
        seen: list[Observation] = []
        for server_id, node in cluster.nodes.items():
            node.raft.add_leadership_listener(events[server_id].append)
        cluster.nodes["s0"].raft.register_observer(seen.append)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            await wait_for(lambda: events[leader.id] == [True], "the leader to be told")
            # told only once it applied everything before its term
            assert leader.raft.applied >= leader.raft.commit_index
            target = next(n for n in cluster.running() if n is not leader)
            await leader.raft.leadership_transfer(target.id)
            await wait_for(lambda: events[leader.id] == [True, False], "the old leader")
            await wait_for(lambda: events[target.id][-1:] == [True], "the new leader")
            assert any(isinstance(o, LeaderObservation) and o.leader_id == target.id
                       for o in seen)
        finally:
            await cluster.stop()

    run(body())


def test_stats_speak_hashicorp_raft() -> None:
    async def body() -> None:
        cluster = Cluster(3)
        await cluster.start()
        try:
            await cluster.apply(b"s")
            leader = await cluster.wait_leader()
            await cluster.wait_converged()
            stats = leader.raft.stats()
            assert set(stats) == {
                "state", "term", "last_log_index", "last_log_term", "commit_index",
                "applied_index", "fsm_pending", "last_snapshot_index", "last_snapshot_term",
                "protocol_version", "protocol_version_min", "protocol_version_max",
                "snapshot_version_min", "snapshot_version_max", "latest_configuration_index",
                "latest_configuration", "num_peers", "last_contact",
            }
            assert stats["state"] == "Leader" and stats["num_peers"] == "2"
            assert stats["protocol_version"] == "3" and stats["last_contact"] == "0"
            assert stats["latest_configuration"].count("Suffrage:Voter") == 3
            follower = next(n for n in cluster.running() if n is not leader)
            fstats = follower.raft.stats()
            assert fstats["state"] == "Follower"
            assert fstats["last_contact"].endswith(("ms", "µs", "s"))
            assert 0 <= follower.raft.last_contact_ms() < 5000
            assert follower.raft.leader_address() == leader.address
            assert fstats["applied_index"] == stats["applied_index"]
        finally:
            await cluster.stop()

    run(body())
