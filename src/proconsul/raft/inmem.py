"""In-memory twins of the log, stable and snapshot stores, for -dev and for tests.

They follow the file stores' rules (consecutive appends, prefix or suffix deletion only, newest
snapshots first, the retain count) so code tested against them behaves the same on disk; only
durability is missing. As in hashicorp/raft's inmem_store.go, nothing here survives the process.
"""

from __future__ import annotations

import builtins
import io
import time
from collections.abc import Sequence
from typing import Any, BinaryIO

from proconsul.errors import LogNotFound, SnapshotError, StorageError
from proconsul.raft.log import Log
from proconsul.raft.snapshot import SnapshotMeta
from proconsul.raft.stable import decode_uint64, encode_uint64

__all__ = ["InmemLogStore", "InmemSnapshotSink", "InmemSnapshotStore", "InmemStableStore"]


class InmemLogStore:
    """LogStore in a dict; `store_logs` is a coroutine like the file store's, and checks the
    same things, but never waits."""

    def __init__(self) -> None:
        self._logs: dict[int, Log] = {}
        self._first = 0
        self._last = 0
        self._closed = False

    def first_index(self) -> int:
        return self._first

    def last_index(self) -> int:
        return self._last

    def get_log(self, index: int) -> Log:
        entry = self._logs.get(index)
        if entry is None or index < self._first:
            raise LogNotFound(
                f"log entry {index} not found (the log holds {self._first}..{self._last})"
            )
        return entry

    async def store_logs(self, logs: Sequence[Log]) -> None:
        if self._closed:
            raise StorageError("the log store is closed")
        if not logs:
            return
        first = logs[0].index
        if first < 1:
            raise ValueError(f"log index {first!r} is out of range")
        if self._last and first != self._last + 1:
            raise ValueError(f"log entries must follow index {self._last}, got {first}")
        for offset, entry in enumerate(logs):
            if entry.index != first + offset:
                raise ValueError(
                    f"log indexes are not consecutive: {entry.index} after {first + offset - 1}"
                )
        for entry in logs:
            self._logs[entry.index] = entry
        if not self._last:
            self._first = first
        self._last = logs[-1].index

    async def delete_range(self, lo: int, hi: int) -> None:
        first, last = self._first, self._last
        if lo > hi or not last or hi < first or lo > last:
            return
        if lo <= first:
            if hi >= last:
                self._logs.clear()
                self._first = self._last = 0
                return
            for index in range(first, hi + 1):
                del self._logs[index]
            self._first = hi + 1
        elif hi >= last:
            for index in range(lo, last + 1):
                del self._logs[index]
            self._last = lo - 1
        else:
            raise ValueError(f"cannot delete {lo}..{hi} from the middle of the log {first}..{last}")

    async def close(self) -> None:
        self._closed = True


class InmemStableStore:
    """StableStore in a dict."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def set(self, key: bytes, value: bytes) -> None:
        self._data[bytes(key)] = bytes(value)

    def get(self, key: bytes) -> bytes:
        return self._data.get(bytes(key), b"")

    def set_uint64(self, key: bytes, value: int) -> None:
        self.set(key, encode_uint64(value))

    def get_uint64(self, key: bytes) -> int:
        return decode_uint64(self.get(key), "stable store", key)


class InmemSnapshotSink:
    """Collects one snapshot's bytes; `close` publishes it to the store."""

    def __init__(self, store: InmemSnapshotStore, meta: SnapshotMeta) -> None:
        self._store = store
        self._meta = meta
        self._buf = io.BytesIO()
        self._done = False

    @property
    def id(self) -> str:
        return self._meta.id

    def write(self, data: bytes) -> int:
        if self._done:
            raise SnapshotError(f"snapshot {self._meta.id} is already closed")
        return self._buf.write(data)

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        state = self._buf.getvalue()
        meta = SnapshotMeta(self._meta.id, self._meta.index, self._meta.term, len(state),
                            self._meta.version, self._meta.configuration,
                            self._meta.configuration_index)
        self._store._publish(meta, state)

    def cancel(self) -> None:
        self._done = True
        self._buf = io.BytesIO()


class InmemSnapshotStore:
    """Snapshots held in memory, the newest `retain` of them."""

    def __init__(self, retain: int = 2) -> None:
        if retain < 1:
            raise ValueError("retain must be at least 1")
        self.retain = retain
        self._snapshots: dict[str, tuple[SnapshotMeta, bytes]] = {}
        self._last_ms = 0

    def create(
        self, version: int, index: int, term: int, configuration: Any, configuration_index: int
    ) -> InmemSnapshotSink:
        now = max(int(time.time() * 1000), self._last_ms + 1)
        self._last_ms = now
        meta = SnapshotMeta(f"{term}-{index}-{now}", index, term, 0, version, configuration,
                            configuration_index)
        return InmemSnapshotSink(self, meta)

    def _publish(self, meta: SnapshotMeta, state: bytes) -> None:
        self._snapshots[meta.id] = (meta, state)
        for old in self.list()[self.retain:]:
            del self._snapshots[old.id]

    def list(self) -> builtins.list[SnapshotMeta]:
        metas = [meta for meta, _ in self._snapshots.values()]
        metas.sort(key=lambda m: (m.term, m.index, m.id), reverse=True)
        return metas

    def open(self, snapshot_id: str) -> tuple[SnapshotMeta, BinaryIO]:
        try:
            meta, state = self._snapshots[snapshot_id]
        except KeyError:
            raise SnapshotError(f"no snapshot {snapshot_id!r}") from None
        return meta, io.BytesIO(state)
