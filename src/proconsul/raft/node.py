"""A single-voter Raft node: apply -> durable append -> FSM apply -> answer (hashicorp/raft's
leader path with a quorum of one), with snapshots, log compaction and user restore.

Commands that arrive while an append is being made durable are appended together by the next
one, so the fsync cost is shared by everyone waiting (group commit at the Raft level; the file
log store also coalesces concurrent appends underneath). The FSM applies entries strictly in
index order, and a caller is answered only after its entry is durable and applied.

Start-up restores the newest snapshot that verifies, then replays the log after it, so a
restart reaches exactly the state that was acknowledged before the crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import msgpack

from proconsul.errors import NoLeader, SnapshotError, StorageError
from proconsul.raft.log import Log, LogStore, LogType
from proconsul.raft.snapshot import SnapshotMeta, SnapshotStore
from proconsul.raft.stable import (
    KEY_CURRENT_TERM,
    KEY_LAST_VOTE_CAND,
    KEY_LAST_VOTE_TERM,
    StableStore,
)
from proconsul.server.fsm import FSM

log = logging.getLogger("proconsul.raft")

#: Most commands appended by one write; bounds the latency of the first in a burst.
MAX_BATCH = 1024


@dataclass(slots=True)
class RaftConfig:
    server_id: str
    address: str
    #: entries applied since the last snapshot that trigger a new one (raft_snapshot_threshold)
    snapshot_threshold: int = 16384
    #: how often the threshold is checked, seconds (raft_snapshot_interval)
    snapshot_interval: float = 30.0
    #: entries kept in the log behind a snapshot (raft_trailing_logs)
    trailing_logs: int = 10240


class RaftNode:
    """Implements the server's Applier seam over durable stores."""

    def __init__(
        self, config: RaftConfig, fsm: FSM, logs: LogStore, stable: StableStore,
        snapshots: SnapshotStore,
    ) -> None:
        self.config = config
        self.fsm = fsm
        self.logs = logs
        self.stable = stable
        self.snapshots = snapshots
        self.term = 0
        self.applied = 0
        self.commit = 0
        self.snapshot_index = 0
        self.snapshot_term = 0
        self.configuration: dict[str, Any] = {}
        self.configuration_index = 0
        self._queue: deque[tuple[bytes, asyncio.Future[Any]]] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._snapshotting = False
        self._running = False
        self._io = asyncio.Lock()

    # -- start-up -----------------------------------------------------------------------------

    async def start(self) -> None:
        started = time.perf_counter()
        self._restore_newest_snapshot()
        replayed = self._replay()
        term = self.stable.get_uint64(KEY_CURRENT_TERM) + 1
        self.stable.set_uint64(KEY_CURRENT_TERM, term)
        self.stable.set_uint64(KEY_LAST_VOTE_TERM, term)
        self.stable.set(KEY_LAST_VOTE_CAND, self.config.server_id.encode())
        self.term = term
        entries: list[Log] = []
        index = self.last_index()
        if index == 0:
            self.configuration = {"Servers": [{
                "Suffrage": "Voter", "ID": self.config.server_id, "Address": self.config.address,
            }]}
            index += 1
            entries.append(Log(index, term, LogType.CONFIGURATION,
                               msgpack.packb(self.configuration, use_bin_type=True)))
            self.configuration_index = index
        # a new leader commits an entry of its own term before it serves reads
        entries.append(Log(index + 1, term, LogType.NOOP, b""))
        await self.logs.store_logs(entries)
        self.applied = self.commit = entries[-1].index
        self._running = True
        self._tasks = [
            asyncio.ensure_future(self._run_batches()),
            asyncio.ensure_future(self._snapshot_timer()),
        ]
        log.info(
            "raft started: term=%d last-index=%d snapshot-index=%d replayed=%d took=%.3fs",
            term, self.applied, self.snapshot_index, replayed, time.perf_counter() - started,
        )

    def _restore_newest_snapshot(self) -> None:
        for meta in self.snapshots.list():
            try:
                meta, reader = self.snapshots.open(meta.id)
                with reader:
                    data = reader.read()
                self.fsm.restore(data)
            except (SnapshotError, OSError) as err:
                log.error("failed to restore snapshot %s, trying an older one: %s", meta.id, err)
                continue
            self._note_snapshot(meta)
            log.info("restored from snapshot: id=%s last-index=%d", meta.id, meta.index)
            return

    def _note_snapshot(self, meta: SnapshotMeta) -> None:
        self.snapshot_index = meta.index
        self.snapshot_term = meta.term
        if meta.configuration:
            self.configuration = meta.configuration
            self.configuration_index = meta.configuration_index

    def _replay(self) -> int:
        """Apply every kept entry after the snapshot; returns how many commands ran."""
        first = max(self.logs.first_index(), self.snapshot_index + 1)
        last = self.logs.last_index()
        count = 0
        fsm_apply = self.fsm.apply
        for index in range(first, last + 1):
            entry = self.logs.get_log(index)
            if entry.type == LogType.COMMAND:
                fsm_apply(index, entry.data)
                count += 1
            elif entry.type == LogType.CONFIGURATION:
                self.configuration = msgpack.unpackb(entry.data, raw=False)
                self.configuration_index = index
        self.applied = self.commit = max(last, self.snapshot_index)
        return count

    # -- the Applier seam ---------------------------------------------------------------------

    async def apply(self, command: bytes) -> Any:
        if not self._running:
            raise NoLeader()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((command, fut))
        self._wake.set()
        return await fut

    def is_leader(self) -> bool:
        return self._running

    def leader_address(self) -> str:
        return self.config.address if self._running else ""

    def last_contact_ms(self) -> int:
        return 0

    def last_index(self) -> int:
        return max(self.logs.last_index(), self.snapshot_index)

    def peers(self) -> list[str]:
        return [s["Address"] for s in self.configuration.get("Servers", [])]

    async def verify_leader(self) -> None:
        if not self._running:
            raise NoLeader()

    def stats(self) -> dict[str, str]:
        servers = " ".join(
            f"{{Suffrage:{s['Suffrage']} ID:{s['ID']} Address:{s['Address']}}}"
            for s in self.configuration.get("Servers", [])
        )
        return {
            "applied_index": str(self.applied), "commit_index": str(self.commit),
            "fsm_pending": str(len(self._queue)), "last_contact": "0",
            "last_log_index": str(self.logs.last_index()), "last_log_term": str(self.term),
            "last_snapshot_index": str(self.snapshot_index),
            "last_snapshot_term": str(self.snapshot_term),
            "latest_configuration": f"[{servers}]",
            "latest_configuration_index": str(self.configuration_index),
            "num_peers": str(max(len(self.configuration.get("Servers", [])) - 1, 0)),
            "protocol_version": "3", "protocol_version_max": "3", "protocol_version_min": "0",
            "snapshot_version_max": "1", "snapshot_version_min": "0",
            "state": "Leader" if self._running else "Shutdown", "term": str(self.term),
        }

    # -- the write path -----------------------------------------------------------------------

    async def _run_batches(self) -> None:
        queue = self._queue
        while True:
            await self._wake.wait()
            self._wake.clear()
            while queue:
                async with self._io:
                    await self._append_batch()

    async def _append_batch(self) -> None:
        queue = self._queue
        n = min(len(queue), MAX_BATCH)
        batch = [queue.popleft() for _ in range(n)]
        first = self.last_index() + 1
        term = self.term
        entries = [Log(first + i, term, LogType.COMMAND, cmd) for i, (cmd, _) in enumerate(batch)]
        try:
            await self.logs.store_logs(entries)
        except StorageError as err:
            log.error("failed to append %d entries at index %d: %s", n, first, err)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(StorageError(str(err)))
            return
        self.commit = entries[-1].index
        fsm_apply = self.fsm.apply
        for entry, (_, fut) in zip(entries, batch, strict=True):
            try:
                result = fsm_apply(entry.index, entry.data)
            except Exception as err:  # a bad command fails its caller, not the log
                result = err
            self.applied = entry.index
            if not fut.done():
                fut.set_result(result)
        if self.applied - self.snapshot_index >= self.config.snapshot_threshold:
            self._start_snapshot()

    # -- snapshots ----------------------------------------------------------------------------

    async def _snapshot_timer(self) -> None:
        while True:
            await asyncio.sleep(self.config.snapshot_interval)
            if self.applied - self.snapshot_index >= self.config.snapshot_threshold:
                self._start_snapshot()

    def _start_snapshot(self) -> None:
        if self._snapshotting:
            return
        self._snapshotting = True
        task = asyncio.ensure_future(self.snapshot())
        task.add_done_callback(lambda _: setattr(self, "_snapshotting", False))

    async def snapshot(self) -> SnapshotMeta | None:
        """Snapshot the FSM at the applied index, then compact the log behind it."""
        index, term = self.applied, self.term
        if index <= self.snapshot_index:
            return None
        data = self.fsm.snapshot()  # a consistent copy, taken between two applies
        meta = await self._write_snapshot(data, index, term)
        await self._compact(index)
        return meta

    async def _write_snapshot(self, data: bytes, index: int, term: int) -> SnapshotMeta:
        sink = self.snapshots.create(1, index, term, self.configuration, self.configuration_index)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()

        def write() -> None:
            try:
                sink.write(data)
                sink.close()
            except BaseException:
                sink.cancel()
                raise

        await loop.run_in_executor(None, write)
        meta = SnapshotMeta(sink.id, index, term, len(data), 1, self.configuration,
                            self.configuration_index)
        self._note_snapshot(meta)
        log.info("snapshot complete: id=%s index=%d size=%d took=%.3fs",
                 sink.id, index, len(data), time.perf_counter() - started)
        return meta

    async def _compact(self, snapshot_index: int) -> None:
        first = self.logs.first_index()
        upto = snapshot_index - self.config.trailing_logs
        if first and upto >= first:
            async with self._io:
                await self.logs.delete_range(first, upto)
            log.info("compacted logs: from=%d to=%d", first, upto)

    async def restore(self, state: bytes) -> int:
        """Replace the FSM with a user snapshot: durable first, then swapped in; returns the
        index the restore was recorded at. A state that does not load changes nothing."""
        self.fsm.check_snapshot(state)
        async with self._io:
            index = self.last_index() + 1
            await self.logs.store_logs([Log(index, self.term, LogType.NOOP, b"")])
            self.commit = index
            await self._write_snapshot(state, index, self.term)
            self.fsm.restore(state)
            self.applied = index
            first = self.logs.first_index()
            if first and first <= index:
                await self.logs.delete_range(first, index)
        return index

    async def shutdown(self) -> None:
        self._running = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._queue:
            _, fut = self._queue.popleft()
            if not fut.done():
                fut.set_exception(NoLeader())
        await self.logs.close()
