"""A file-backed SnapshotStore after hashicorp/raft's file_snapshot.go.

A snapshot is what a restarting server loads instead of replaying its whole history, so a
half-written or bit-rotted one must never be loaded. Each snapshot is a directory named
``<term>-<index>-<unix ms>`` (its ID) holding ``state.bin`` (the FSM's bytes) and
``meta.json`` (ID, Index, Term, Version, Size, Configuration, ConfigurationIndex and the
SHA-256 of state.bin, so an archive can reuse the digest). It is written under ``<name>.tmp``
and renamed into place only after both files and the directory are synced, so a crash leaves
either a complete snapshot or a ``.tmp`` directory that the next start removes. `open` reads
the whole state once to verify it before handing it out; `list` skips snapshots whose metadata
is unreadable or whose state has the wrong size. The newest `retain` snapshots are kept.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import time
from typing import Any, BinaryIO

from proconsul.errors import DiskFull, SnapshotError
from proconsul.raft.file_stable import fsync_dir
from proconsul.raft.snapshot import SnapshotMeta

__all__ = ["FileSnapshotSink", "FileSnapshotStore"]

log = logging.getLogger("proconsul.raft.snapshot")

_TMP = ".tmp"
_META = "meta.json"
_STATE = "state.bin"
_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)$")
_CHUNK = 1 << 20


def _snapshot_error(err: OSError, doing: str) -> SnapshotError | DiskFull:
    # a full disk is its own error, so an operator knows what to fix
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"no space left on device {doing}: {err.strerror}")
    return SnapshotError(f"{doing} failed: {err}")


def _read_meta(path: str) -> tuple[SnapshotMeta, str]:
    """The metadata in `path` and the state's SHA-256; SnapshotError when it is damaged."""
    try:
        with open(os.path.join(path, _META), "rb") as f:
            raw = json.load(f)
        meta = SnapshotMeta(
            id=raw["ID"], index=raw["Index"], term=raw["Term"], size=raw["Size"],
            version=raw["Version"], configuration=raw.get("Configuration"),
            configuration_index=raw.get("ConfigurationIndex", 0),
        )
        digest = raw["SHA256"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SnapshotError(f"snapshot {path}: unreadable {_META}: {err}") from err
    ints = (meta.index, meta.term, meta.size, meta.version, meta.configuration_index)
    if not all(type(v) is int and v >= 0 for v in ints) or not isinstance(digest, str):
        raise SnapshotError(f"snapshot {path}: {_META} has fields of the wrong type")
    if meta.id != os.path.basename(path):
        raise SnapshotError(f"snapshot {path}: {_META} names another snapshot, {meta.id}")
    return meta, digest


class FileSnapshotSink:
    """Writes one snapshot into its ``.tmp`` directory; `close` publishes it."""

    def __init__(self, store: FileSnapshotStore, meta: SnapshotMeta, path: str) -> None:
        self._store = store
        self._meta = meta
        self._final = path
        self._tmp = path + _TMP
        self._hash = hashlib.sha256()
        self._size = 0
        self._done = False
        os.mkdir(self._tmp)
        self._file: BinaryIO = open(os.path.join(self._tmp, _STATE), "wb")  # noqa: SIM115

    @property
    def id(self) -> str:
        return self._meta.id

    def write(self, data: bytes) -> int:
        if self._done:
            raise SnapshotError(f"snapshot {self._meta.id} is already closed")
        try:
            written = self._file.write(data)
        except OSError as err:
            raise _snapshot_error(err, f"writing snapshot {self._meta.id}") from err
        self._hash.update(data)
        self._size += written
        return written

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            meta = {
                "Version": self._meta.version, "ID": self._meta.id, "Index": self._meta.index,
                "Term": self._meta.term, "Configuration": self._meta.configuration,
                "ConfigurationIndex": self._meta.configuration_index, "Size": self._size,
                "SHA256": self._hash.hexdigest(),
            }
            with open(os.path.join(self._tmp, _META), "w") as f:
                json.dump(meta, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(self._tmp)
            os.rename(self._tmp, self._final)
            fsync_dir(self._store.directory)
        except OSError as err:
            self._discard()
            raise _snapshot_error(err, f"finishing snapshot {self._meta.id}") from err
        except BaseException:
            self._discard()
            raise
        self._store.reap()

    def cancel(self) -> None:
        if self._done and not os.path.exists(self._tmp):
            return
        self._done = True
        self._discard()

    def _discard(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass
        shutil.rmtree(self._tmp, ignore_errors=True)


class FileSnapshotStore:
    """Snapshots as directories under `directory`, keeping the newest `retain`."""

    def __init__(self, directory: str | os.PathLike[str], retain: int = 2) -> None:
        if retain < 1:
            raise ValueError("retain must be at least 1")
        self.directory = os.fspath(directory)
        self.retain = retain
        os.makedirs(self.directory, exist_ok=True)
        for name in os.listdir(self.directory):
            if name.endswith(_TMP):
                log.warning("removing unfinished snapshot %s", name)
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

    def create(
        self, version: int, index: int, term: int, configuration: Any, configuration_index: int
    ) -> FileSnapshotSink:
        now = int(time.time() * 1000)
        while True:
            name = f"{term}-{index}-{now}"
            path = os.path.join(self.directory, name)
            if not os.path.exists(path) and not os.path.exists(path + _TMP):
                break
            now += 1
        meta = SnapshotMeta(name, index, term, 0, version, configuration, configuration_index)
        try:
            return FileSnapshotSink(self, meta, path)
        except OSError as err:
            shutil.rmtree(path + _TMP, ignore_errors=True)
            raise _snapshot_error(err, f"creating snapshot {name}") from err

    def list(self) -> list[SnapshotMeta]:
        found: list[SnapshotMeta] = []
        for name in os.listdir(self.directory):
            if not _NAME.match(name):
                continue
            path = os.path.join(self.directory, name)
            try:
                meta, _ = _read_meta(path)
                size = os.path.getsize(os.path.join(path, _STATE))
            except (SnapshotError, OSError) as err:
                log.warning("skipping damaged snapshot %s: %s", name, err)
                continue
            if size != meta.size:
                log.warning("skipping damaged snapshot %s: state is %d bytes, meta says %d",
                            name, size, meta.size)
                continue
            found.append(meta)
        found.sort(key=lambda m: (m.term, m.index, m.id), reverse=True)
        return found

    def open(self, snapshot_id: str) -> tuple[SnapshotMeta, BinaryIO]:
        if not _NAME.match(snapshot_id):
            raise SnapshotError(f"no snapshot {snapshot_id!r}")
        path = os.path.join(self.directory, snapshot_id)
        if not os.path.isdir(path):
            raise SnapshotError(f"no snapshot {snapshot_id!r}")
        meta, digest = _read_meta(path)
        try:
            reader: BinaryIO = open(os.path.join(path, _STATE), "rb")  # noqa: SIM115
        except OSError as err:
            raise SnapshotError(f"snapshot {snapshot_id}: cannot open its state: {err}") from err
        try:
            hasher = hashlib.sha256()
            size = 0
            while chunk := reader.read(_CHUNK):
                hasher.update(chunk)
                size += len(chunk)
            if size != meta.size or hasher.hexdigest() != digest:
                raise SnapshotError(
                    f"snapshot {snapshot_id} is damaged: its state does not match the "
                    f"checksum in {_META}"
                )
            reader.seek(0)
        except OSError as err:
            reader.close()
            raise SnapshotError(f"snapshot {snapshot_id}: reading its state failed: {err}") from err
        except BaseException:
            reader.close()
            raise
        return meta, reader

    def reap(self) -> None:
        """Remove complete snapshots beyond the newest `retain`."""
        for meta in self.list()[self.retain:]:
            log.info("removing old snapshot %s", meta.id)
            path = os.path.join(self.directory, meta.id)
            try:
                # out of sight in one step; a crash during the removal leaves a .tmp directory
                # that the next start clears, not a damaged snapshot
                os.rename(path, path + _TMP)
            except OSError as err:
                log.warning("cannot remove old snapshot %s: %s", meta.id, err)
                continue
            shutil.rmtree(path + _TMP, ignore_errors=True)
