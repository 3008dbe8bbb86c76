"""The replicated server stands where the single-voter node stood: it runs on the stores a
RaftNode wrote (a data_dir from before) and drives the server's own FSM."""

from __future__ import annotations

from pathlib import Path

from proconsul.raft.cluster import Raft, has_existing_state
from proconsul.raft.configuration import Configuration, Server
from proconsul.raft.file_log import FileLogStore
from proconsul.raft.file_snapshot import FileSnapshotStore
from proconsul.raft.file_stable import FileStableStore
from proconsul.raft.inmem import InmemLogStore, InmemSnapshotStore, InmemStableStore
from proconsul.raft.inmem_transport import InmemNetwork
from proconsul.raft.node import RaftConfig, RaftNode
from proconsul.server.commands import MessageType, encode
from proconsul.server.fsm import FSM
from tests.raft.cluster_support import ListFSM, raft_config
from tests.raft.support import run


def _stores(base: Path) -> tuple[FileLogStore, FileStableStore, FileSnapshotStore]:
    return (FileLogStore(base / "wal"), FileStableStore(base / "stable.bin"),
            FileSnapshotStore(base / "snapshots"))


def test_runs_on_the_stores_a_single_voter_node_wrote(tmp_path: Path) -> None:
    async def body() -> None:
        fsm = ListFSM()
        node = RaftNode(RaftConfig("n1", "127.0.0.1:8300"), fsm,  # type: ignore[arg-type]
                        *_stores(tmp_path))
        await node.start()
        for i in range(5):
            await node.apply(f"old{i}".encode())
        await node.snapshot()
        for i in range(5, 8):
            await node.apply(f"old{i}".encode())
        await node.shutdown()

        logs, stable, snapshots = _stores(tmp_path)
        assert has_existing_state(logs, stable, snapshots)
        network = InmemNetwork()
        raft = Raft(raft_config("n1", "127.0.0.1:8300"), ListFSM(), logs, stable, snapshots,
                    network.transport("127.0.0.1:8300"))
        await raft.start()
        try:
            assert raft.is_leader()
            assert raft.fsm.commands == [f"old{i}".encode() for i in range(8)]
            assert await raft.apply(b"new") == 9
            assert raft.peers() == ["127.0.0.1:8300"]
        finally:
            await raft.shutdown()

    run(body())


def test_drives_the_servers_fsm_as_its_applier() -> None:
    async def body() -> None:
        network = InmemNetwork()
        raft = Raft(raft_config("n1", "127.0.0.1:8300"), FSM(), InmemLogStore(),
                    InmemStableStore(), InmemSnapshotStore(), network.transport("127.0.0.1:8300"))
        await raft.bootstrap_cluster(Configuration.of([Server("n1", "127.0.0.1:8300")]))
        await raft.start()
        try:
            ok = await raft.apply(encode(MessageType.KVS, {
                "Op": "set", "DirEnt": {"Key": "k", "Value": b"v"}}))
            assert ok is True
            assert raft.fsm.store.kv["k"].value == b"v"
            index = await raft.restore(raft.fsm.snapshot())
            assert raft.applied >= index and raft.fsm.store.kv["k"].value == b"v"
        finally:
            await raft.shutdown()

    run(body())
