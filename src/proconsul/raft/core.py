"""The state every role of a Raft server shares: term and vote, the log's tail, the two
configurations, commit and apply, snapshots and compaction (hashicorp/raft raft.go, state.go,
snapshot.go).

Everything runs on one event loop. Changes of term, role and known leader are synchronous, so
no other task sees half of one; changes of the log are coroutines and happen under `_log_lock`,
which the leader's writer, the follower's AppendEntries and InstallSnapshot handlers,
compaction and user restores take, so one never sees the log in the middle of another's change.
Committed entries are applied by one task, strictly in index order.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable
from typing import Any, Generic, TypeVar

from proconsul.errors import LogNotFound, SnapshotError
from proconsul.raft.config import Config
from proconsul.raft.configuration import Configuration
from proconsul.raft.errors import LeadershipLost, NotLeader, RaftShutdown
from proconsul.raft.fsm import FSM
from proconsul.raft.log import LogStore, LogType
from proconsul.raft.observer import (
    LeaderObservation,
    Observers,
    RaftState,
    StateObservation,
)
from proconsul.raft.snapshot import SnapshotMeta, SnapshotStore
from proconsul.raft.stable import (
    KEY_CURRENT_TERM,
    KEY_LAST_VOTE_CAND,
    KEY_LAST_VOTE_TERM,
    StableStore,
)
from proconsul.raft.transport import RPCHeader, Transport

log = logging.getLogger("proconsul.raft")

T = TypeVar("T")
#: the state machine type, so a Raft over the server's FSM is an Applier of that FSM
F = TypeVar("F", bound=FSM)

#: committed entries applied before the applier lets other tasks run
APPLY_CHUNK = 512


def random_timeout(base: float) -> float:
    """A timeout between base and 2*base, so servers' timers drift apart."""
    return base + random.random() * base


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` at most `timeout` seconds; whether it was set."""
    if event.is_set():
        return True
    try:
        await asyncio.wait_for(event.wait(), max(timeout, 0.0))
    except TimeoutError:
        return False
    return True


def log_task_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("raft task failed: %r", task.exception())


class RaftCore(Generic[F]):
    """Shared state and mechanisms; the roles and the public API are built on it."""

    def __init__(
        self, config: Config, fsm: F, logs: LogStore, stable: StableStore,
        snapshots: SnapshotStore, transport: Transport,
    ) -> None:
        config.validate()
        self.config = config
        self.fsm = fsm
        self.logs = logs
        self.stable = stable
        self.snapshots = snapshots
        self.transport = transport
        self.server_id = config.server_id
        self.address = config.address
        self.observers = Observers()

        self.state = RaftState.FOLLOWER
        self.current_term = 0
        self.commit_index = 0
        self.applied = 0
        self.snapshot_index = 0
        self.snapshot_term = 0
        #: newest configuration in the log (in effect at once) and the newest committed one
        self.latest = Configuration()
        self.latest_index = 0
        self.committed = Configuration()
        self.committed_index = 0
        self._leader_addr = ""
        self._leader_id = ""
        self._last_contact = 0.0  # monotonic time of the last word from a leader
        self._started_at = time.monotonic()
        self._last_cache = (0, 0)

        self._log_lock = asyncio.Lock()
        self._snapshot_lock = asyncio.Lock()
        self._wake_main = asyncio.Event()  # role changes, bootstrap, TimeoutNow
        self._commit_event = asyncio.Event()
        self._config_event = asyncio.Event()  # a configuration was committed
        self._tasks: list[asyncio.Task[None]] = []
        self._handler_tasks: set[asyncio.Future[Any]] = set()
        self._snapshotting = False

        # leader state, kept here because applying entries answers the leader's callers
        self._inflight: dict[int, asyncio.Future[Any]] = {}
        self._start_index = 0
        self._ready: asyncio.Future[None] | None = None
        self._announced = False

    # -- role, term, vote, leader -----------------------------------------------------------

    @property
    def term(self) -> int:
        return self.current_term

    def header(self) -> RPCHeader:
        return RPCHeader(id=self.server_id, addr=self.address)

    def _set_state(self, state: RaftState) -> None:
        if self.state is state:
            return
        if self.state is RaftState.SHUTDOWN:
            return
        self.state = state
        self._wake_main.set()
        self.observers.observe(StateObservation(state, self.current_term))

    def _set_term(self, term: int) -> None:
        """Durable before anything acts on it: a restarted server must not vote twice."""
        self.stable.set_uint64(KEY_CURRENT_TERM, term)
        self.current_term = term

    def _persist_vote(self, term: int, candidate: str) -> None:
        self.stable.set_uint64(KEY_LAST_VOTE_TERM, term)
        self.stable.set(KEY_LAST_VOTE_CAND, candidate.encode())

    def _set_leader(self, address: str, server_id: str) -> None:
        if (address, server_id) == (self._leader_addr, self._leader_id):
            return
        self._leader_addr, self._leader_id = address, server_id
        self.observers.observe(LeaderObservation(address, server_id, self.current_term))

    def _observe_term(self, term: int) -> bool:
        """React to a higher term seen anywhere: adopt it and follow. True if it was higher."""
        if term <= self.current_term:
            return False
        if self.state is RaftState.SHUTDOWN:
            return True
        if self.state is RaftState.LEADER:
            log.info("lost leadership because a peer has a newer term: term=%d", term)
        self._set_term(term)
        self._set_state(RaftState.FOLLOWER)
        if self._leader_addr == self.address:
            self._set_leader("", "")
        return True

    # -- the log's tail -----------------------------------------------------------------------

    def last_log(self) -> tuple[int, int]:
        """(index, term) of the newest durable entry, or of the snapshot when the log is
        empty or older."""
        last = self.logs.last_index()
        if last == 0 or last < self.snapshot_index:
            return self.snapshot_index, self.snapshot_term
        if self._last_cache[0] != last:
            self._last_cache = (last, self.logs.get_log(last).term)
        return self._last_cache

    def term_at(self, index: int) -> int:
        """The term of the entry at `index`; raises LogNotFound when it was compacted."""
        if index == 0:
            return 0
        if index == self.snapshot_index:
            return self.snapshot_term
        return self.logs.get_log(index).term

    def _guard(self, coro: Awaitable[T]) -> Awaitable[T]:
        """Run a handler body to completion even if its caller goes away (a log change must
        never be cut off halfway); the caller may still stop waiting."""
        task = asyncio.ensure_future(coro)
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)
        task.add_done_callback(log_task_failure)
        return asyncio.shield(task)

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[assignment]
        task.add_done_callback(log_task_failure)
        return task

    # -- configurations -----------------------------------------------------------------------

    def _set_latest(self, configuration: Configuration, index: int) -> None:
        self.latest, self.latest_index = configuration, index

    def _load_configurations_from_log(self) -> None:
        """The latest configuration is the newest in the log; the one before it counts as
        committed until the log says otherwise (hashicorp/raft does the same on start)."""
        first = max(self.logs.first_index(), self.snapshot_index + 1)
        for index in range(first, self.logs.last_index() + 1):
            entry = self.logs.get_log(index)
            if entry.type == LogType.CONFIGURATION:
                self.committed, self.committed_index = self.latest, self.latest_index
                self._set_latest(Configuration.decode(entry.data), index)

    def _commit_configuration(self, index: int, data: bytes) -> None:
        if index <= self.committed_index:
            return
        configuration = (self.latest if index == self.latest_index
                         else Configuration.decode(data))
        self.committed, self.committed_index = configuration, index
        self._config_event.set()
        if self.state is RaftState.LEADER and not configuration.has_vote(self.server_id):
            log.info("removed ourself, transitioning to follower")
            self._set_state(RaftState.FOLLOWER)

    # -- commit and apply ---------------------------------------------------------------------

    def _advance_commit(self, index: int) -> None:
        if index > self.commit_index:
            self.commit_index = index
            self._commit_event.set()

    async def _apply_loop(self) -> None:
        while True:
            await self._commit_event.wait()
            self._commit_event.clear()
            while self.applied < self.commit_index:
                if not self._apply_some(APPLY_CHUNK):
                    break
                await asyncio.sleep(0)
            if self.applied - self.snapshot_index >= self.config.snapshot_threshold:
                self._start_snapshot()

    def _apply_some(self, limit: int) -> bool:
        """Apply up to `limit` committed entries; False when the log does not hold the next
        one (it is then logged: the server cannot make progress without a snapshot)."""
        upto = min(self.commit_index, self.applied + limit)
        fsm_apply = self.fsm.apply
        inflight = self._inflight
        for index in range(self.applied + 1, upto + 1):
            try:
                entry = self.logs.get_log(index)
            except LogNotFound:
                if index <= self.snapshot_index:
                    self.applied = self.snapshot_index
                    return True
                log.error("failed to get log to apply: index=%d", index)
                return False
            result: Any = index
            if entry.type == LogType.COMMAND:
                try:
                    result = fsm_apply(index, entry.data)
                except Exception as err:  # a bad command fails its caller, not the log
                    result = err
            elif entry.type == LogType.CONFIGURATION:
                self._commit_configuration(index, entry.data)
            self.applied = index
            future = inflight.pop(index, None)
            if future is not None and not future.done():
                future.set_result(result)
        self._note_ready()
        return True

    def _note_ready(self) -> None:
        """A new leader is ready once everything committed before its term is applied."""
        ready = self._ready
        if (ready is not None and not ready.done() and self.state is RaftState.LEADER
                and self.applied >= self._start_index):
            ready.set_result(None)
            self._announced = True
            log.info("leader ready: term=%d applied-index=%d", self.current_term, self.applied)
            self.observers.leadership(True)

    def _fail_inflight(self, shutdown: bool) -> None:
        """Answer callers whose entries are not committed: their fate is the next leader's."""
        for index in [i for i in self._inflight if i > self.commit_index]:
            future = self._inflight.pop(index)
            if not future.done():
                future.set_exception(RaftShutdown() if shutdown else LeadershipLost())
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(RaftShutdown() if shutdown else NotLeader())
            self._ready.exception()
        if self._announced:
            self._announced = False
            self.observers.leadership(False)

    # -- snapshots ----------------------------------------------------------------------------

    def _restore_newest_snapshot(self) -> None:
        for meta in self.snapshots.list():
            try:
                meta, reader = self.snapshots.open(meta.id)
                with reader:
                    data = reader.read()
                self.fsm.restore(data)
            except (SnapshotError, OSError) as err:
                log.error("failed to restore snapshot, trying an older one: id=%s error=%s",
                          meta.id, err)
                continue
            self._note_snapshot(meta)
            configuration = Configuration.from_data(meta.configuration)
            self.committed = configuration
            self.committed_index = meta.configuration_index
            self._set_latest(configuration, meta.configuration_index)
            self.applied = self.commit_index = meta.index
            log.info("restored from snapshot: id=%s last-index=%d last-term=%d",
                     meta.id, meta.index, meta.term)
            return

    def _note_snapshot(self, meta: SnapshotMeta) -> None:
        if meta.index >= self.snapshot_index:
            self.snapshot_index, self.snapshot_term = meta.index, meta.term

    async def _snapshot_timer(self) -> None:
        while True:
            await asyncio.sleep(random_timeout(self.config.snapshot_interval))
            if self.applied - self.snapshot_index >= self.config.snapshot_threshold:
                self._start_snapshot()

    def _start_snapshot(self) -> None:
        if self._snapshotting or self.state is RaftState.SHUTDOWN:
            return
        self._snapshotting = True
        task = self._spawn(self._snapshot_quietly())
        task.add_done_callback(lambda _: setattr(self, "_snapshotting", False))

    async def _snapshot_quietly(self) -> None:
        try:
            await self.snapshot()
        except Exception as err:
            log.error("failed to take snapshot: error=%s", err)

    async def snapshot(self) -> SnapshotMeta | None:
        """Snapshot the FSM at the applied index, then compact the log behind it, keeping
        `trailing_logs` entries for followers that are a little behind. None when nothing
        was applied since the last snapshot."""
        async with self._snapshot_lock:
            index = self.applied
            if index <= self.snapshot_index:
                return None
            term = self.term_at(index)
            log.info("starting snapshot up to: index=%d", index)
            data = self.fsm.snapshot()  # taken between two applies: consistent at `index`
            meta = await self._write_snapshot(data, index, term, self.committed,
                                              self.committed_index)
            await self._compact(index)
            return meta

    async def _write_snapshot(self, data: bytes, index: int, term: int,
                              configuration: Configuration, configuration_index: int,
                              ) -> SnapshotMeta:
        sink = self.snapshots.create(1, index, term, configuration.to_data(),
                                     configuration_index)
        started = time.perf_counter()

        def write() -> None:
            try:
                sink.write(data)
                sink.close()
            except BaseException:
                sink.cancel()
                raise

        await asyncio.get_running_loop().run_in_executor(None, write)
        meta = SnapshotMeta(sink.id, index, term, len(data), 1, configuration.to_data(),
                            configuration_index)
        self._note_snapshot(meta)
        log.info("snapshot complete up to: index=%d size=%d took=%.3fs",
                 index, len(data), time.perf_counter() - started)
        return meta

    async def _compact(self, snapshot_index: int) -> None:
        async with self._log_lock:
            first = self.logs.first_index()
            upto = min(snapshot_index - self.config.trailing_logs, self.logs.last_index())
            if first and upto >= first:
                await self.logs.delete_range(first, upto)
                log.info("compacting logs: from=%d to=%d", first, upto)

    # -- stopping -----------------------------------------------------------------------------

    async def _drain_handlers(self) -> None:
        if self._handler_tasks:
            await asyncio.wait(list(self._handler_tasks), timeout=30.0)
