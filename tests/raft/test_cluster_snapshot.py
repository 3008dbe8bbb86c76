"""Snapshots in a cluster: a follower behind the leader's compacted log gets the snapshot
installed, snapshots taken by threshold compact the log, and a user restore reaches every
server."""

from __future__ import annotations

import msgpack

from tests.raft.cluster_support import Cluster, wait_for
from tests.raft.support import run


def _installs(cluster: Cluster, target: str) -> int:
    return sum(v for (kind, _, dst), v in cluster.network.delivered.items()
               if kind == "InstallSnapshot" and dst == target)


def test_far_behind_follower_gets_the_snapshot_then_the_rest_of_the_log() -> None:
    async def body() -> None:
        cluster = Cluster(3, overrides={"trailing_logs": 10})
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            behind = next(n for n in cluster.running() if n is not leader)
            cluster.network.isolate(behind.address)
            for i in range(200):
                await cluster.apply(f"a{i}".encode())
            leader = await cluster.wait_leader()
            meta = await leader.raft.snapshot()
            assert meta is not None and meta.index >= 200
            # the log behind the snapshot is gone, bar the trailing entries
            assert leader.logs.first_index() > behind.logs.last_index() + 1
            for i in range(5):
                await cluster.apply(f"b{i}".encode())
            cluster.network.heal()
            commands = await cluster.wait_converged()
            assert len(commands) == 205
            assert behind.fsm.commands == commands
            assert _installs(cluster, behind.address) >= 1
            assert behind.raft.snapshot_index >= meta.index
            # the follower keeps the snapshot it was sent
            assert behind.snapshots.list()[0].index >= meta.index
            stats = behind.raft.stats()
            assert int(stats["last_snapshot_index"]) >= meta.index
        finally:
            await cluster.stop()

    run(body())


def test_threshold_snapshots_compact_every_servers_log() -> None:
    async def body() -> None:
        cluster = Cluster(3, overrides={"snapshot_threshold": 50, "trailing_logs": 5})
        await cluster.start()
        try:
            for i in range(120):
                await cluster.apply(f"t{i}".encode())
            await cluster.wait_converged()
            await wait_for(lambda: all(n.raft.snapshot_index >= 50 for n in cluster.running()),
                           "every server to snapshot")
            await wait_for(lambda: all(n.logs.first_index() > 40 for n in cluster.running()),
                           "every server to compact its log")
        finally:
            await cluster.stop()

    run(body())


def test_user_restore_replaces_the_state_on_every_server() -> None:
    async def body() -> None:
        cluster = Cluster(3)
        await cluster.start()
        try:
            for i in range(10):
                await cluster.apply(f"old{i}".encode())
            leader = await cluster.wait_leader()
            state = msgpack.packb([[b"restored-1", b"restored-2"], [0]])
            index = await leader.raft.restore(state)
            assert index > 10
            assert leader.fsm.commands == [b"restored-1", b"restored-2"]
            await cluster.apply(b"after")
            commands = await cluster.wait_converged()
            assert commands == [b"restored-1", b"restored-2", b"after"]
            for node in cluster.running():
                assert node.fsm.commands == commands
        finally:
            await cluster.stop()

    run(body())
