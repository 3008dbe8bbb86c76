"""Servers on the file stores survive restarts: a restarted follower comes back with its term,
vote, log and snapshot and catches up; a whole cluster restarted reaches the state it had
acknowledged."""

from __future__ import annotations

from pathlib import Path

from proconsul.raft.stable import KEY_CURRENT_TERM
from tests.raft.cluster_support import Cluster, wait_for
from tests.raft.support import run


def test_restarted_follower_catches_up_from_its_own_files(tmp_path: Path) -> None:
    async def body() -> None:
        cluster = Cluster(3, directory=str(tmp_path))
        await cluster.start()
        try:
            for i in range(30):
                await cluster.apply(f"r{i}".encode())
            leader = await cluster.wait_leader()
            follower = next(n for n in cluster.running() if n is not leader)
            await wait_for(lambda: len(follower.fsm.commands) == 30, "the follower to apply")
            await follower.raft.snapshot()
            term = follower.raft.term
            await cluster.stop_node(follower.id)
            for i in range(30, 60):
                await cluster.apply(f"r{i}".encode())
            restarted = await cluster.restart_node(follower.id)
            # back from its own snapshot and term before hearing from anyone
            assert restarted.raft.term >= term
            assert restarted.stable.get_uint64(KEY_CURRENT_TERM) >= term
            assert restarted.raft.snapshot_index >= 30
            commands = await cluster.wait_converged()
            assert commands == [f"r{i}".encode() for i in range(60)]
            assert restarted.fsm.commands == commands
        finally:
            await cluster.stop()

    run(body())


def test_whole_cluster_restart_keeps_what_was_acknowledged(tmp_path: Path) -> None:
    async def body() -> None:
        cluster = Cluster(3, directory=str(tmp_path))
        await cluster.start()
        try:
            for i in range(40):
                await cluster.apply(f"k{i}".encode())
            leader = await cluster.wait_leader()
            await leader.raft.snapshot()
            for i in range(40, 50):
                await cluster.apply(f"k{i}".encode())
            for server_id in list(cluster.nodes):
                await cluster.stop_node(server_id)
            for server_id in list(cluster.nodes):
                await cluster.restart_node(server_id)
            await cluster.apply(b"after-restart")
            commands = await cluster.wait_converged()
            assert commands == [f"k{i}".encode() for i in range(50)] + [b"after-restart"]
            cluster.assert_no_split_brain()
        finally:
            await cluster.stop()

    run(body())
