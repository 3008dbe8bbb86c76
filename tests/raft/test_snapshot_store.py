"""The snapshot stores: create, list newest first, open, keep the newest `retain`, cancel; the
file store's layout, its skipping of damaged snapshots and its checksum on open."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from proconsul.errors import DiskFull, SnapshotError
from proconsul.raft import file_snapshot
from proconsul.raft.file_snapshot import FileSnapshotStore
from proconsul.raft.inmem import InmemSnapshotStore
from proconsul.raft.snapshot import SnapshotStore

CONFIG = {"Servers": [{"Suffrage": "Voter", "ID": "s1", "Address": "127.0.0.1:8300"}]}


@pytest.fixture(params=["file", "inmem"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SnapshotStore:
    if request.param == "file":
        return FileSnapshotStore(tmp_path / "snaps", retain=2)
    return InmemSnapshotStore(retain=2)


def save(store: SnapshotStore, index: int, term: int, state: bytes) -> str:
    sink = store.create(1, index, term, CONFIG, 1)
    for at in range(0, len(state), 1000):
        sink.write(state[at:at + 1000])
    sink.close()
    return sink.id


def test_create_list_open(store: SnapshotStore) -> None:
    assert store.list() == []
    state = bytes(range(256)) * 20
    snapshot_id = save(store, 120, 3, state)
    assert re.fullmatch(r"3-120-\d{13}", snapshot_id)
    [meta] = store.list()
    assert (meta.id, meta.index, meta.term, meta.size, meta.version) == (
        snapshot_id, 120, 3, len(state), 1)
    assert (meta.configuration, meta.configuration_index) == (CONFIG, 1)
    opened, reader = store.open(snapshot_id)
    with reader:
        assert reader.read() == state
    assert opened == meta
    with pytest.raises(SnapshotError, match="no snapshot"):
        store.open("1-2-3")
    with pytest.raises(SnapshotError, match="no snapshot"):
        store.open("../etc")


def test_newest_first_and_only_the_newest_retained(store: SnapshotStore) -> None:
    save(store, 10, 1, b"a")
    save(store, 20, 1, b"b")
    save(store, 15, 2, b"c")
    assert [(m.term, m.index) for m in store.list()] == [(2, 15), (1, 20)]
    save(store, 30, 2, b"d")
    assert [(m.term, m.index) for m in store.list()] == [(2, 30), (2, 15)]


def test_cancel_and_closed_sinks(store: SnapshotStore) -> None:
    sink = store.create(1, 5, 1, CONFIG, 1)
    sink.write(b"partial")
    sink.cancel()
    sink.cancel()
    assert store.list() == []
    sink = store.create(1, 5, 1, CONFIG, 1)
    sink.write(b"x")
    sink.close()
    with pytest.raises(SnapshotError, match="already closed"):
        sink.write(b"y")
    sink.close()
    assert len(store.list()) == 1


# -- the file store ----------------------------------------------------------------------------


def test_file_layout(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    snapshot_id = save(store, 7, 2, b"state bytes")
    assert sorted(os.listdir(tmp_path / snapshot_id)) == ["meta.json", "state.bin"]
    assert (tmp_path / snapshot_id / "state.bin").read_bytes() == b"state bytes"
    meta = json.loads((tmp_path / snapshot_id / "meta.json").read_text())
    assert meta == {
        "Version": 1, "ID": snapshot_id, "Index": 7, "Term": 2, "Configuration": CONFIG,
        "ConfigurationIndex": 1, "Size": 11, "SHA256": hashlib.sha256(b"state bytes").hexdigest(),
    }


def test_unfinished_snapshots_are_invisible_and_removed_at_open(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    sink = store.create(1, 9, 1, CONFIG, 1)
    sink.write(b"half")
    assert store.list() == []
    assert (tmp_path / f"{sink.id}.tmp").is_dir()
    sink.cancel()
    assert os.listdir(tmp_path) == []
    # what a crash mid-snapshot leaves behind, cleared by the next start
    (tmp_path / "1-9-1700000000000.tmp").mkdir()
    (tmp_path / "1-9-1700000000000.tmp" / "state.bin").write_bytes(b"half")
    FileSnapshotStore(tmp_path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "damage",
    ["no meta", "bad json", "meta fields", "short state", "no state", "other id"],
)
def test_damaged_snapshots_are_skipped(tmp_path: Path, damage: str) -> None:
    store = FileSnapshotStore(tmp_path, retain=5)
    good = save(store, 1, 1, b"good")
    bad = save(store, 2, 1, b"newer but damaged")
    meta_path = tmp_path / bad / "meta.json"
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    if damage == "no meta":
        meta_path.unlink()
    elif damage == "bad json":
        meta_path.write_text("{")
    elif damage == "meta fields":
        meta_path.write_text(json.dumps(meta | {"Index": "2"}))
    elif damage == "short state":
        (tmp_path / bad / "state.bin").write_bytes(b"newer")
    elif damage == "no state":
        (tmp_path / bad / "state.bin").unlink()
    else:
        meta_path.write_text(json.dumps(meta | {"ID": good}))
    assert [m.id for m in store.list()] == [good]


def test_open_verifies_the_checksum(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    snapshot_id = save(store, 3, 1, b"abcdef")
    (tmp_path / snapshot_id / "state.bin").write_bytes(b"abcdeX")  # same size: list keeps it
    assert [m.id for m in store.list()] == [snapshot_id]
    with pytest.raises(SnapshotError, match=f"snapshot {snapshot_id} is damaged"):
        store.open(snapshot_id)


def test_a_full_disk_while_finishing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileSnapshotStore(tmp_path)
    save(store, 1, 1, b"old")
    sink = store.create(1, 2, 1, CONFIG, 1)
    sink.write(b"new")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(file_snapshot.os, "fsync", full)
    with pytest.raises(DiskFull, match="no space left on device finishing snapshot"):
        sink.close()
    monkeypatch.undo()
    sink.cancel()
    assert [m.index for m in store.list()] == [1]
    assert len(os.listdir(tmp_path)) == 1
