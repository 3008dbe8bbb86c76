"""The stable stores: values survive reopening, a crash before the rename keeps the old value,
damage is an error rather than a silent reset, and a full disk is DiskFull."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from proconsul.errors import DiskFull, StorageError
from proconsul.raft import file_stable
from proconsul.raft.file_stable import FileStableStore
from proconsul.raft.inmem import InmemStableStore
from proconsul.raft.stable import KEY_CURRENT_TERM, KEY_LAST_VOTE_CAND, StableStore


@pytest.fixture(params=["file", "inmem"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StableStore:
    if request.param == "file":
        return FileStableStore(tmp_path / "stable")
    return InmemStableStore()


def test_get_and_set(store: StableStore) -> None:
    assert store.get(b"nothing") == b""
    assert store.get_uint64(KEY_CURRENT_TERM) == 0
    store.set_uint64(KEY_CURRENT_TERM, 2**64 - 1)
    store.set(KEY_LAST_VOTE_CAND, b"server-one")
    assert store.get_uint64(KEY_CURRENT_TERM) == 2**64 - 1
    assert store.get(KEY_CURRENT_TERM) == b"\xff" * 8
    assert store.get(KEY_LAST_VOTE_CAND) == b"server-one"
    with pytest.raises(StorageError, match="does not hold a uint64"):
        store.get_uint64(KEY_LAST_VOTE_CAND)


def test_values_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "stable"
    FileStableStore(path).set_uint64(KEY_CURRENT_TERM, 7)
    store = FileStableStore(path)
    store.set(KEY_LAST_VOTE_CAND, b"a")
    again = FileStableStore(path)
    assert again.get_uint64(KEY_CURRENT_TERM) == 7
    assert again.get(KEY_LAST_VOTE_CAND) == b"a"


def test_a_crash_before_the_rename_keeps_the_old_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "stable"
    FileStableStore(path).set_uint64(KEY_CURRENT_TERM, 3)
    store = FileStableStore(path)

    class Crash(BaseException):
        pass

    def crash(src: str, dst: str) -> None:
        raise Crash  # the process dies between the synced temp file and the rename

    monkeypatch.setattr(file_stable.os, "replace", crash)
    with pytest.raises(Crash):
        store.set_uint64(KEY_CURRENT_TERM, 4)
    monkeypatch.undo()
    assert Path(str(path) + ".tmp").exists()
    reopened = FileStableStore(path)
    assert reopened.get_uint64(KEY_CURRENT_TERM) == 3
    assert not Path(str(path) + ".tmp").exists()
    reopened.set_uint64(KEY_CURRENT_TERM, 4)
    assert FileStableStore(path).get_uint64(KEY_CURRENT_TERM) == 4


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw[:10], "bad header"),
        (lambda raw: b"X" + raw[1:], "bad header"),
        (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "checksum mismatch"),
    ],
)
def test_damage_is_an_error(tmp_path: Path, damage: Callable[[bytes], bytes],
                            message: str) -> None:
    path = tmp_path / "stable"
    FileStableStore(path).set_uint64(KEY_CURRENT_TERM, 3)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(StorageError, match=f"stable store {path} is damaged: {message}"):
        FileStableStore(path)


def test_a_full_disk_keeps_the_old_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "stable"
    store = FileStableStore(path)
    store.set_uint64(KEY_CURRENT_TERM, 3)

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(file_stable.os, "write", full)
    with pytest.raises(DiskFull, match="no space left on device writing the stable store"):
        store.set_uint64(KEY_CURRENT_TERM, 4)
    monkeypatch.undo()
    assert store.get_uint64(KEY_CURRENT_TERM) == 3
    assert not Path(str(path) + ".tmp").exists()
    assert FileStableStore(path).get_uint64(KEY_CURRENT_TERM) == 3
