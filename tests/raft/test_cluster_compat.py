"""The replicated server stands where the single-voter node stood: it runs on the stores that
node wrote (a data_dir from before) and drives the server's own FSM."""

from __future__ import annotations

from pathlib import Path

import msgpack

from proconsul.raft.cluster import Raft, has_existing_state
from proconsul.raft.configuration import Configuration, Server
from proconsul.raft.file_log import FileLogStore
from proconsul.raft.file_snapshot import FileSnapshotStore
from proconsul.raft.file_stable import FileStableStore
from proconsul.raft.inmem import InmemLogStore, InmemSnapshotStore, InmemStableStore
from proconsul.raft.inmem_transport import InmemNetwork
from proconsul.raft.log import Log, LogType
from proconsul.raft.stable import KEY_CURRENT_TERM, KEY_LAST_VOTE_CAND, KEY_LAST_VOTE_TERM
from proconsul.server.commands import MessageType, encode
from proconsul.server.fsm import FSM
from tests.raft.cluster_support import ListFSM, raft_config
from tests.raft.support import run


def _stores(base: Path) -> tuple[FileLogStore, FileStableStore, FileSnapshotStore]:
    return (FileLogStore(base / "wal"), FileStableStore(base / "stable.bin"),
            FileSnapshotStore(base / "snapshots"))


def _write_single_voter_data_dir(base: Path) -> None:
    """What the single-voter node of earlier releases left in a data_dir: its term and vote,
    a configuration entry (a msgpack map, Consul's JSON field names) and a no-op, commands,
    a snapshot after the fifth command and three commands after it."""
    logs, stable, snapshots = _stores(base)
    stable.set_uint64(KEY_CURRENT_TERM, 1)
    stable.set_uint64(KEY_LAST_VOTE_TERM, 1)
    stable.set(KEY_LAST_VOTE_CAND, b"n1")
    configuration = {"Servers": [{"Suffrage": "Voter", "ID": "n1",
                                  "Address": "127.0.0.1:8300"}]}
    entries = [Log(1, 1, LogType.CONFIGURATION, msgpack.packb(configuration)),
               Log(2, 1, LogType.NOOP, b"")]
    entries += [Log(3 + i, 1, LogType.COMMAND, f"old{i}".encode()) for i in range(8)]
    fsm = ListFSM()
    for entry in entries[2:7]:
        fsm.apply(entry.index, entry.data)
    sink = snapshots.create(1, 7, 1, configuration, 1)
    sink.write(fsm.snapshot())
    sink.close()

    async def append() -> None:
        await logs.store_logs(entries)
        await logs.close()

    run(append())


def test_runs_on_the_stores_a_single_voter_node_wrote(tmp_path: Path) -> None:
    _write_single_voter_data_dir(tmp_path)

    async def body() -> None:
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
