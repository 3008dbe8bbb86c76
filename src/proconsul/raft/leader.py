"""The leader (hashicorp/raft raft.go runLeader, commitment.go, and the leader halves of
api.go): the write path, commitment, the lease, membership changes, leadership transfer,
barriers, leadership verification and user restores.

Write path: callers queue entries; one writer task takes everything queued (up to
max_apply_batch), gives it consecutive indexes in the current term, wakes the replicators and
appends the batch to the leader's own log with one durable write. The replicators send the batch
from memory while the leader's sync is in flight (Raft dissertation §10.2.1), so a write costs
the slower of the leader's sync and a follower's round trip with its sync, not their sum.
Entries that arrive while a write is in flight go out together in the next one, so concurrent
callers share fsyncs here and AppendEntries requests on the followers. An entry is committed
once it is durable on a quorum of voters, the leader included (so the leader applies only
entries its own log holds), and belongs to the leader's term or precedes one that does; each
caller is answered when its entry is committed and applied to the FSM.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from proconsul.errors import StorageError
from proconsul.raft.configuration import Change, Configuration, next_configuration
from proconsul.raft.core import F, RaftCore, wait_event
from proconsul.raft.errors import (
    AbortedByRestore,
    ConfigurationError,
    LeadershipTransferError,
    LeadershipTransferInProgress,
    NotLeader,
    RaftShutdown,
)
from proconsul.raft.log import Log, LogType
from proconsul.raft.observer import PeerObservation, RaftState
from proconsul.raft.replication import Replicator, Verification
from proconsul.raft.transport import TimeoutNowRequest

log = logging.getLogger("proconsul.raft")


@dataclass(slots=True)
class _Pending:
    type: int
    data: bytes
    future: asyncio.Future[Any]
    configuration: Configuration | None = None


class Leadership(RaftCore[F]):
    def _init_leader_state(self) -> None:
        self._queue: deque[_Pending] = deque()
        self._queue_wake = asyncio.Event()
        self._replicators: dict[str, Replicator] = {}
        self._verifications: set[Verification] = set()
        self._leader_term = 0
        self._writer: asyncio.Task[None] | None = None
        #: the batch being appended to the leader's own log: replicators read it from here
        #: until the log store holds it durably
        self._unsynced: list[Log] = []
        self._transfer_in_progress = False
        self._config_lock = asyncio.Lock()

    # -- the leader's life --------------------------------------------------------------------

    async def _run_leader(self) -> None:
        log.info("entering leader state: leader=%s term=%d", self.address, self.current_term)
        term = self._leader_term = self.current_term
        self._start_index = self.last_log()[0] + 1
        self._ready = asyncio.get_running_loop().create_future()
        self._transfer_in_progress = False
        self._start_stop_replication()
        # a new leader commits an entry of its own term first; that commits everything
        # before it, and applying it makes the leader ready for consistent reads
        noop = _Pending(LogType.NOOP, b"", asyncio.get_running_loop().create_future())
        noop.future.add_done_callback(_ignore)
        self._queue.appendleft(noop)
        self._writer = self._spawn(self._write_loop(term))
        self._queue_wake.set()
        lease = self.config.leader_lease_timeout
        # one heartbeat period (heartbeats go out every heartbeat_timeout/10 to /5)
        grace = self.config.heartbeat_timeout / 5
        next_check = time.monotonic() + lease
        suspect = False
        try:
            while True:
                self._wake_main.clear()
                if self.state is not RaftState.LEADER:
                    return
                await wait_event(self._wake_main, next_check - time.monotonic())
                if self.state is not RaftState.LEADER:
                    return
                now = time.monotonic()
                if now >= next_check:
                    # woken far past the check (the loop was busy): answers may be queued
                    # behind us, so judge the lease on the next round, not on stale times
                    if now - next_check < lease and not self._lease_held(report=suspect):
                        if suspect:
                            log.warning("failed to contact quorum of nodes, stepping down")
                            self._set_state(RaftState.FOLLOWER)
                            return
                        # a pause of this process (a long collection, a slow disk call
                        # on the loop) looks the same as silent followers until the
                        # answers queued behind it are read: ask once more, one
                        # heartbeat later, before stepping down
                        suspect = True
                        next_check = now + grace
                        continue
                    suspect = False
                    next_check = now + lease
        finally:
            await self._leave_leadership()

    async def _leave_leadership(self) -> None:
        shutdown = self.state is RaftState.SHUTDOWN
        log.info("leadership lost: term=%d", self._leader_term)
        if self._leader_addr == self.address:
            self._set_leader("", "")
        replicators = list(self._replicators.values())
        self._replicators.clear()
        self._fail_inflight(shutdown)
        error: Exception = RaftShutdown() if shutdown else NotLeader()
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(error)
        for verification in self._verifications:
            if not verification.future.done():
                verification.future.set_exception(error)
        self._verifications.clear()
        self._config_event.set()
        self._queue_wake.set()
        await asyncio.gather(*(r.stop() for r in replicators))
        if self._writer is not None:
            # never cancelled: a log append must not be cut off halfway
            await asyncio.wait({self._writer})
            self._writer = None

    def _lease_held(self, report: bool) -> bool:
        """Whether a quorum of voters was heard from within the lease. The voters that were
        not are logged when the quorum holds anyway, or when `report` says so."""
        now = time.monotonic()
        lease = self.config.leader_lease_timeout
        contacted = 0
        silent: list[tuple[str, float]] = []
        for server in self.latest.voters():
            if server.id == self.server_id:
                contacted += 1
                continue
            rep = self._replicators.get(server.id)
            if rep is not None and now - rep.last_contact <= lease:
                contacted += 1
            elif rep is not None:
                silent.append((server.id, now - rep.last_contact))
        held = contacted >= self.latest.quorum()
        if held or report:
            for server_id, age in silent:
                log.warning("failed to contact: server-id=%s time=%.3fs", server_id, age)
        return held

    def _leading(self, term: int) -> bool:
        return self.state is RaftState.LEADER and self.current_term == term

    # -- replication --------------------------------------------------------------------------

    def _start_stop_replication(self) -> None:
        """One replicator per server in the latest configuration other than this one."""
        wanted = {s.id: s for s in self.latest.servers if s.id != self.server_id}
        next_index = self.last_log()[0] + 1
        for server_id, server in wanted.items():
            rep = self._replicators.get(server_id)
            if rep is None:
                log.info("added peer, starting replication: peer=%s", server.id)
                rep = Replicator(self, server, self._leader_term, next_index)
                self._replicators[server_id] = rep
                rep.trigger()
                self.observers.observe(PeerObservation(server, removed=False))
            else:
                rep.server = server
        for server_id in [i for i in self._replicators if i not in wanted]:
            rep = self._replicators.pop(server_id)
            log.info("removed peer, stopping replication: peer=%s last-index=%d",
                     server_id, rep.match_index)
            self._spawn(rep.stop())
            self.observers.observe(PeerObservation(rep.server, removed=True))

    def replication_progress(self, replicator: Replicator) -> None:
        if self._leading(replicator.term):
            self._update_commit()

    def replication_saw_term(self, term: int) -> None:
        self._observe_term(term)

    def _update_commit(self) -> None:
        """The highest index durable on a quorum of voters (this server's log included),
        committed once it reaches the first entry of this leader's term."""
        matches = []
        own = self.last_log()[0]
        for server in self.latest.voters():
            if server.id == self.server_id:
                matches.append(own)
            else:
                rep = self._replicators.get(server.id)
                matches.append(rep.match_index if rep is not None else 0)
        if not matches:
            return
        matches.sort(reverse=True)
        # followers may hold entries the leader's own sync has not finished yet; commit no
        # further than the leader's durable log, which is what the FSM is applied from
        quorum_match = min(matches[len(matches) // 2], own)
        if quorum_match >= self._start_index:
            self._advance_commit(quorum_match)

    def share_commit(self) -> None:
        """Send the commit index now to the followers not yet told it, rather than with the
        next append or heartbeat (up to commit_timeout later). Called when a follower asks
        for the read index: it answers the read once it has applied that far. (Sending on
        every commit instead cost ~11% of write throughput at 1-16 writers.)"""
        for rep in self._replicators.values():
            if rep.commit_sent < self.commit_index:
                rep.trigger()

    # -- the write path -----------------------------------------------------------------------

    def _enqueue(self, type_: int, data: bytes,
                 configuration: Configuration | None = None) -> asyncio.Future[Any]:
        if self.state is RaftState.SHUTDOWN:
            raise RaftShutdown()
        if self.state is not RaftState.LEADER:
            raise NotLeader()
        if self._transfer_in_progress:
            raise LeadershipTransferInProgress()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(type_, data, future, configuration))
        self._queue_wake.set()
        return future

    async def _write_loop(self, term: int) -> None:
        queue = self._queue
        limit = self.config.max_apply_batch
        while self._leading(term):
            if not queue:
                self._queue_wake.clear()
                await self._queue_wake.wait()
                continue
            batch = [queue.popleft() for _ in range(min(len(queue), limit))]
            await self._write_batch(term, batch)

    async def _write_batch(self, term: int, batch: list[_Pending]) -> None:
        async with self._log_lock:
            if not self._leading(term):
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(NotLeader())
                return
            index = self.last_log()[0]
            entries = []
            reconfigured = False
            for pending in batch:
                index += 1
                entries.append(Log(index, term, pending.type, pending.data))
                self._inflight[index] = pending.future
                if pending.configuration is not None:
                    self._set_latest(pending.configuration, index)
                    reconfigured = True
            self._unsynced = entries
            for rep in self._replicators.values():
                rep.trigger()
            try:
                await self.logs.store_logs(entries)
            except (StorageError, ValueError) as err:
                log.error("failed to commit logs: error=%s", err)
                for entry, pending in zip(entries, batch, strict=True):
                    self._inflight.pop(entry.index, None)
                    if not pending.future.done():
                        pending.future.set_exception(StorageError(str(err)))
                if reconfigured:
                    self._set_latest(self.committed, self.committed_index)
                self._set_state(RaftState.FOLLOWER)
                return
            finally:
                self._unsynced = []
            self._last_cache = (index, term)
        if not self._leading(term):
            return
        if reconfigured:
            self._start_stop_replication()
        self._update_commit()
        if reconfigured:
            for rep in self._replicators.values():
                rep.trigger()

    # -- what the replicators read: the durable log and the batch being synced ---------------

    def appended_last(self) -> int:
        """Index of the newest entry the leader has appended, durable or still syncing."""
        unsynced = self._unsynced
        return unsynced[-1].index if unsynced else self.last_log()[0]

    def appended_entry(self, index: int) -> Log:
        """The entry at `index`, from the batch being synced or the log store."""
        unsynced = self._unsynced
        if unsynced and unsynced[0].index <= index:
            return unsynced[index - unsynced[0].index]
        return self.logs.get_log(index)

    def appended_term(self, index: int) -> int:
        """term_at, covering the batch being synced."""
        unsynced = self._unsynced
        if unsynced and unsynced[0].index <= index:
            return unsynced[index - unsynced[0].index].term
        return self.term_at(index)

    # -- leader operations --------------------------------------------------------------------

    async def _await_ready(self) -> None:
        if self.state is not RaftState.LEADER or self._ready is None:
            raise NotLeader()
        await asyncio.shield(self._ready)

    async def verify_leader(self) -> None:
        """Confirm, with a heartbeat round answered by a quorum of voters, that this server
        is still the leader and has applied everything committed before its term."""
        await self._await_ready()
        votes = 1 if self.latest.has_vote(self.server_id) else 0
        verification = Verification(self.latest.quorum(), votes)
        if not verification.future.done():
            self._verifications.add(verification)
            for rep in self._replicators.values():
                rep.verify(verification)
            try:
                await verification.future
            finally:
                self._verifications.discard(verification)

    async def barrier(self) -> int:
        """Return once every entry before it is applied; the barrier's own index."""
        index: int = await self._enqueue(LogType.BARRIER, b"")
        return index

    async def _change_configuration(self, change: Change, server_id: str, address: str,
                                    prev_index: int) -> int:
        """One membership change, made once the previous one is committed; returns the
        index of the configuration entry after it is committed."""
        if self.state is not RaftState.LEADER:
            raise NotLeader()
        async with self._config_lock:
            while self.committed_index != self.latest_index:
                if self.state is not RaftState.LEADER:
                    raise NotLeader()
                self._config_event.clear()
                await self._config_event.wait()
            if self.state is not RaftState.LEADER:
                raise NotLeader()
            configuration = next_configuration(self.latest, self.latest_index, change,
                                               server_id, address, prev_index)
            log.info("updating configuration: command=%s server-id=%s server-addr=%s "
                     "servers=%s", change.value, server_id, address,
                     configuration.go_string())
            index: int = await self._enqueue(LogType.CONFIGURATION, configuration.encode(),
                                             configuration)
            return index

    async def leadership_transfer(self, server_id: str = "") -> None:
        """Hand leadership to `server_id` (or the most up-to-date voter): stop taking new
        entries, bring it up to date, then tell it to start an election now."""
        if self.state is not RaftState.LEADER:
            raise NotLeader()
        if self._transfer_in_progress:
            raise LeadershipTransferInProgress()
        if server_id == self.server_id:
            raise LeadershipTransferError("cannot transfer leadership to itself")
        if not server_id:
            voters = [r for r in self._replicators.values() if r.server.voter]
            if not voters:
                raise LeadershipTransferError("cannot find peer")
            server_id = max(voters, key=lambda r: r.match_index).server.id
        rep = self._replicators.get(server_id)
        if rep is None or not rep.server.voter:
            raise LeadershipTransferError(f"cannot find replication state for {server_id}")
        log.info("starting leadership transfer: id=%s address=%s", server_id,
                 rep.server.address)
        term = self.current_term
        deadline = time.monotonic() + self.config.election_timeout
        self._transfer_in_progress = True
        try:
            while rep.match_index < self.last_log()[0]:
                if not self._leading(term):
                    return
                if time.monotonic() >= deadline:
                    raise LeadershipTransferError("leadership transfer timeout")
                rep.trigger()
                await asyncio.sleep(self.config.commit_timeout / 5)
            try:
                await self.transport.timeout_now(rep.server.id, rep.server.address,
                                                 TimeoutNowRequest(self.header()))
            except Exception as err:
                raise LeadershipTransferError(
                    f"failed to make TimeoutNow RPC to {server_id}: {err}") from err
            while self._leading(term):
                if time.monotonic() >= deadline:
                    raise LeadershipTransferError("leadership transfer timeout")
                await asyncio.sleep(self.config.commit_timeout / 5)
        finally:
            self._transfer_in_progress = False

    async def restore(self, state: bytes) -> int:
        """Replace the FSM with a user snapshot on every server: record it as a snapshot one
        past the log, drop the log (followers then need the snapshot), and commit an entry
        after it. Returns the snapshot's index."""
        await self._await_ready()
        async with self._config_lock:
            if self.committed_index != self.latest_index:
                raise ConfigurationError(
                    f"cannot restore snapshot now, wait until the configuration entry at "
                    f"{self.latest_index} has been applied (have applied "
                    f"{self.committed_index})")
            async with self._log_lock:
                if self.state is not RaftState.LEADER:
                    raise NotLeader()
                for index in list(self._inflight):
                    future = self._inflight.pop(index)
                    if not future.done():
                        future.set_exception(AbortedByRestore())
                term = self.current_term
                index = self.last_log()[0] + 1
                await self._write_snapshot(state, index, term, self.latest, self.latest_index)
                self.fsm.restore(state)
                self.applied = index
                self._last_cache = (0, 0)
                first = self.logs.first_index()
                if first:
                    await self.logs.delete_range(first, self.logs.last_index())
            log.info("restored user snapshot: index=%d", index)
            await self._enqueue(LogType.NOOP, b"")
            return index


def _ignore(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
