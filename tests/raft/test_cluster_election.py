"""Elections: one leader per term, re-election after the leader is cut off, pre-vote keeping a
returning server from deposing a healthy leader, a lone voter leading at once."""

from __future__ import annotations

import asyncio
import time

from proconsul.raft.cluster import Raft
from proconsul.raft.config import Config
from proconsul.raft.configuration import Configuration, Server
from proconsul.raft.inmem import InmemLogStore, InmemSnapshotStore, InmemStableStore
from proconsul.raft.inmem_transport import InmemNetwork
from proconsul.raft.observer import RaftState
from tests.raft.cluster_support import Cluster, ListFSM, wait_for
from tests.raft.support import run


def test_three_servers_elect_one_leader_that_all_follow() -> None:
    async def body() -> None:
        cluster = Cluster(3)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            followers = [n for n in cluster.running() if n is not leader]
            await wait_for(lambda: all(n.raft.leader_address() == leader.address
                                       for n in followers), "followers to know the leader")
            assert all(n.raft.state is RaftState.FOLLOWER for n in followers)
            assert {n.raft.term for n in cluster.running()} == {leader.raft.term}
            assert sorted(leader.raft.peers()) == sorted(n.address for n in cluster.running())
            cluster.assert_no_split_brain()
        finally:
            await cluster.stop()

    run(body())


def test_isolated_leader_steps_down_and_the_majority_elects_another() -> None:
    async def body() -> None:
        cluster = Cluster(5)
        await cluster.start()
        try:
            old = await cluster.wait_leader()
            old_term = old.raft.term
            cluster.network.isolate(old.address)
            others = [n.id for n in cluster.running() if n is not old]
            new = await cluster.wait_leader(others)
            assert new is not old and new.raft.term > old_term
            # the lease runs out: the cut-off leader stops claiming leadership by itself
            await wait_for(lambda: not old.raft.is_leader(), "the old leader to step down")
            assert old.raft.leader_address() == ""
            cluster.network.heal()
            await wait_for(lambda: old.raft.leader_address() == new.address
                           or old.raft.leader_address() != "",
                           "the old leader to follow again")
            await cluster.apply(b"after-heal")
            await cluster.wait_converged()
            cluster.assert_no_split_brain()
        finally:
            await cluster.stop()

    run(body())


def test_repeated_partitions_never_give_a_term_two_leaders() -> None:
    async def body() -> None:
        cluster = Cluster(5)
        await cluster.start()
        try:
            ids = list(cluster.nodes)
            addr = {i: cluster.nodes[i].address for i in ids}
            for round_ in range(4):
                leader = await cluster.wait_leader()
                rest = [i for i in ids if i != leader.id]
                # the leader with one follower on one side, three servers on the other
                minority = [leader.id, rest[round_ % 4]]
                majority = [i for i in ids if i not in minority]
                cluster.network.partition([addr[i] for i in minority],
                                          [addr[i] for i in majority])
                await cluster.wait_leader(majority)
                await cluster.apply(f"round-{round_}".encode(), among=majority)
                cluster.network.heal()
            commands = await cluster.wait_converged()
            assert commands == [f"round-{r}".encode() for r in range(4)]
            cluster.assert_no_split_brain()
        finally:
            await cluster.stop()

    run(body(), timeout=120)


def test_pre_vote_keeps_a_returning_server_from_deposing_the_leader() -> None:
    async def body() -> None:
        cluster = Cluster(3)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            term = leader.raft.term
            follower = next(n for n in cluster.running() if n is not leader)
            cluster.network.isolate(follower.address)
            # several election timeouts alone: it campaigns, but only for pre-votes
            await wait_for(lambda: follower.raft.state is RaftState.CANDIDATE,
                           "the cut-off follower to campaign")
            await asyncio.sleep(5 * follower.config.election_timeout)
            assert follower.raft.term == term
            cluster.network.heal()
            await wait_for(lambda: follower.raft.leader_address() == leader.address,
                           "the returning follower to follow the same leader")
            assert leader.raft.is_leader() and leader.raft.term == term
        finally:
            await cluster.stop()

    run(body())


def test_lone_voter_leads_as_soon_as_it_starts_with_dev_timings() -> None:
    async def body() -> None:
        network = InmemNetwork()
        config = Config.dev("dev-1", "127.0.0.1:8300")
        fsm = ListFSM()
        raft = Raft(config, fsm, InmemLogStore(), InmemStableStore(), InmemSnapshotStore(),
                    network.transport(config.address))
        await raft.bootstrap_cluster(Configuration.of([Server("dev-1", "127.0.0.1:8300")]))
        await raft.start()
        try:
            assert raft.is_leader()
            assert raft.leader_address() == "127.0.0.1:8300"
            results = await asyncio.gather(*(raft.apply(f"c{i}".encode()) for i in range(50)))
            assert results == list(range(1, 51))
            await raft.verify_leader()
            stats = raft.stats()
            assert stats["state"] == "Leader" and stats["num_peers"] == "0"
            assert stats["last_contact"] == "0"
            assert stats["latest_configuration"] == (
                "[{Suffrage:Voter ID:dev-1 Address:127.0.0.1:8300}]")
            # a dev server stays leader: nothing can take its lease
            await asyncio.sleep(0.3)
            assert raft.is_leader()
        finally:
            await raft.shutdown()

    run(body())


def test_a_paused_process_does_not_cost_the_leader_its_lease() -> None:
    """Every server of the process stops for most of a lease (as a long garbage collection
    stops them): when the leader's lease check comes due behind the pause, the followers'
    answers are still queued, so it asks again a heartbeat later instead of stepping down."""
    async def body() -> None:
        cluster = Cluster(3, overrides={"leader_lease_timeout": 0.15})
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            term = leader.raft.term
            for step in range(20):
                await asyncio.sleep(0.008 * step)  # the pause falls at every point of a lease
                time.sleep(0.12)  # the whole event loop stops, as in a collection
            await cluster.apply(b"after-pauses")
            assert leader.raft.is_leader() and leader.raft.term == term
            cluster.assert_no_split_brain()
        finally:
            await cluster.stop()

    run(body())
