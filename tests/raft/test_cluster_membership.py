"""Membership changes, one server at a time: adding voters and non-voters (who catch up from
the leader), removing servers (the leader included), demoting voters, and non-voters never
counting towards a quorum nor standing for election."""

from __future__ import annotations

import asyncio

import pytest

from proconsul.errors import NoLeader
from proconsul.raft.configuration import Suffrage
from proconsul.raft.errors import ConfigurationError
from proconsul.raft.observer import RaftState
from tests.raft.cluster_support import Cluster, raises_within, wait_for
from tests.raft.support import run


def _suffrages(cluster: Cluster, server_id: str) -> dict[str, Suffrage]:
    configuration, _ = cluster.nodes[server_id].raft.get_configuration()
    return {s.id: s.suffrage for s in configuration.servers}


def test_add_voter_catches_up_and_then_counts_for_quorum() -> None:
    async def body() -> None:
        cluster = Cluster(3)
        new = cluster.make_node("s3")
        await cluster.start(bootstrap=["s0", "s1", "s2"])
        try:
            for i in range(20):
                await cluster.apply(f"a{i}".encode())
            leader = await cluster.wait_leader()
            # a server nobody added stays a quiet follower
            assert new.raft.state is RaftState.FOLLOWER and not new.raft.peers()
            index = await leader.raft.add_voter("s3", new.address)
            assert index > 20
            commands = await cluster.wait_converged()
            assert new.fsm.commands == commands
            await wait_for(lambda: all(_suffrages(cluster, n.id).get("s3") is Suffrage.VOTER
                                       for n in cluster.running()),
                           "every server to see the new voter")
            # four voters: a quorum is three, so two cut off servers stop all commits
            leader = await cluster.wait_leader()
            others = [n for n in cluster.running() if n is not leader]
            cluster.network.isolate(others[0].address)
            cluster.network.isolate(others[1].address)
            await raises_within(leader.raft.apply(b"no-quorum"), NoLeader)
            cluster.network.heal()
            await cluster.apply(b"quorum-again")
            await cluster.wait_converged()
            cluster.assert_no_split_brain()
        finally:
            await cluster.stop()

    run(body())


def test_nonvoters_follow_but_never_make_a_quorum_or_lead() -> None:
    async def body() -> None:
        cluster = Cluster(2, nonvoters=2)
        await cluster.start()
        try:
            await cluster.apply(b"x")
            leader = await cluster.wait_leader()
            assert leader.id in ("s0", "s1")
            commands = await cluster.wait_converged()
            assert cluster.nodes["s2"].fsm.commands == commands
            assert cluster.nodes["s3"].fsm.commands == commands
            assert leader.raft.stats()["num_peers"] == "1"
            # the other voter gone: two reachable non-voters do not make a quorum
            other = "s1" if leader.id == "s0" else "s0"
            cluster.network.isolate(cluster.nodes[other].address)
            await raises_within(leader.raft.apply(b"y"), NoLeader)
            # and no non-voter ever stands for election
            await asyncio.sleep(4 * leader.config.heartbeat_timeout)
            for nonvoter in ("s2", "s3"):
                assert cluster.nodes[nonvoter].raft.state is RaftState.FOLLOWER
                assert cluster.nodes[nonvoter].raft.term == leader.raft.term
            cluster.network.heal()
            await cluster.apply(b"z")
            await cluster.wait_converged()
        finally:
            await cluster.stop()

    run(body())


def test_add_nonvoter_then_promote_and_demote() -> None:
    async def body() -> None:
        cluster = Cluster(3)
        new = cluster.make_node("s3")
        await cluster.start(bootstrap=["s0", "s1", "s2"])
        try:
            leader = await cluster.wait_leader()
            await leader.raft.add_nonvoter("s3", new.address)
            await cluster.apply(b"to-nonvoter")
            await cluster.wait_converged()
            assert _suffrages(cluster, leader.id)["s3"] is Suffrage.NONVOTER
            assert leader.raft.stats()["num_peers"] == "2"
            # adding as a non-voter never takes a vote away
            await leader.raft.add_nonvoter(leader.id, leader.address)
            assert _suffrages(cluster, leader.id)[leader.id] is Suffrage.VOTER
            await leader.raft.add_voter("s3", new.address)
            assert _suffrages(cluster, leader.id)["s3"] is Suffrage.VOTER
            await leader.raft.demote_voter("s3")
            assert _suffrages(cluster, leader.id)["s3"] is Suffrage.NONVOTER
            await wait_for(lambda: _suffrages(cluster, "s3")["s3"] is Suffrage.NONVOTER,
                           "the demoted server to learn of it")
        finally:
            await cluster.stop()

    run(body())


def test_remove_follower_and_then_the_leader_itself() -> None:
    async def body() -> None:
        cluster = Cluster(5)
        await cluster.start()
        try:
            await cluster.apply(b"five")
            leader = await cluster.wait_leader()
            victim = next(n for n in cluster.running() if n is not leader)
            await leader.raft.remove_server(victim.id)
            assert victim.id not in _suffrages(cluster, leader.id)
            await cluster.apply(b"four")
            remaining = [n.id for n in cluster.running() if n is not victim]
            await cluster.wait_converged(remaining)
            # the leader removes itself: it steps down and the rest elect a new leader
            await leader.raft.remove_server(leader.id)
            await wait_for(lambda: not leader.raft.is_leader(), "the leader to step down")
            rest = [i for i in remaining if i != leader.id]
            new = await cluster.wait_leader(rest)
            assert new is not leader
            await cluster.apply(b"three", among=rest)
            await cluster.wait_converged(rest)
            # a removed server cannot disturb the cluster: it never wins a vote
            term = new.raft.term
            await asyncio.sleep(4 * new.config.heartbeat_timeout)
            assert new.raft.is_leader() and new.raft.term == term
            assert leader.raft.state is not RaftState.LEADER
            cluster.assert_no_split_brain()
        finally:
            await cluster.stop()

    run(body())


def test_changes_are_made_one_at_a_time_and_checked() -> None:
    async def body() -> None:
        cluster = Cluster(3)
        extra = [cluster.make_node("s3"), cluster.make_node("s4")]
        await cluster.start(bootstrap=["s0", "s1", "s2"])
        try:
            leader = await cluster.wait_leader()
            _, before = leader.raft.get_configuration()
            first, second = await asyncio.gather(
                leader.raft.add_voter("s3", extra[0].address),
                leader.raft.add_nonvoter("s4", extra[1].address))
            assert first != second and min(first, second) > before
            suffrages = _suffrages(cluster, leader.id)
            assert suffrages["s3"] is Suffrage.VOTER and suffrages["s4"] is Suffrage.NONVOTER
            _, latest = leader.raft.get_configuration()
            with pytest.raises(ConfigurationError, match="configuration changed since"):
                await leader.raft.remove_server("s4", prev_index=before)
            with pytest.raises(ConfigurationError, match="duplicate address"):
                await leader.raft.add_voter("s9", extra[0].address)
            await leader.raft.remove_server("s4", prev_index=latest)
            assert "s4" not in _suffrages(cluster, leader.id)
        finally:
            await cluster.stop()

    run(body())
