"""The receiving side of the Raft RPCs (hashicorp/raft raft.go: appendEntries, requestVote,
requestPreVote, installSnapshot, timeoutNow).

Vote and pre-vote decisions are synchronous. AppendEntries with entries and InstallSnapshot
change the log, so they run under the log lock and to completion even if the sender gives up
(see RaftCore._guard). A bare heartbeat touches no log and is answered at once, so a follower
busy writing a large batch still hears its leader in time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from proconsul.errors import LogNotFound, SnapshotError, StorageError
from proconsul.raft.configuration import Configuration
from proconsul.raft.core import F, RaftCore
from proconsul.raft.errors import TransportError
from proconsul.raft.log import Log, LogType
from proconsul.raft.observer import RaftState
from proconsul.raft.snapshot import SnapshotMeta
from proconsul.raft.stable import KEY_LAST_VOTE_CAND, KEY_LAST_VOTE_TERM
from proconsul.raft.transport import (
    AppendEntriesRequest,
    AppendEntriesResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    RequestPreVoteRequest,
    RequestPreVoteResponse,
    RequestVoteRequest,
    RequestVoteResponse,
    TimeoutNowRequest,
    TimeoutNowResponse,
)

log = logging.getLogger("proconsul.raft")


class RPCHandlers(RaftCore[F]):
    """Implements transport.RPCHandler."""

    _transfer_candidate: bool

    def _accept_leader(self, term: int, leader: str, leader_id: str) -> None:
        """A valid leader for `term` spoke: follow it."""
        if term > self.current_term:
            self._set_term(term)
        if self.state is not RaftState.FOLLOWER:
            self._set_state(RaftState.FOLLOWER)
        self._set_leader(leader, leader_id)
        self._last_contact = time.monotonic()

    # -- AppendEntries ------------------------------------------------------------------------

    async def handle_append_entries(self, req: AppendEntriesRequest) -> AppendEntriesResponse:
        if req.is_heartbeat():
            return self._heartbeat(req)
        return await self._guard(self._append_entries(req))

    def _heartbeat(self, req: AppendEntriesRequest) -> AppendEntriesResponse:
        resp = AppendEntriesResponse(self.header(), self.current_term, self.last_log()[0],
                                     False)
        if self.state is RaftState.SHUTDOWN or req.term < self.current_term:
            return resp
        self._accept_leader(req.term, req.leader, req.header.id)
        resp.term = self.current_term
        resp.success = True
        return resp

    async def _append_entries(self, req: AppendEntriesRequest) -> AppendEntriesResponse:
        async with self._log_lock:
            last_index, last_term = self.last_log()
            resp = AppendEntriesResponse(self.header(), self.current_term, last_index, False)
            if self.state is RaftState.SHUTDOWN or req.term < self.current_term:
                return resp
            self._accept_leader(req.term, req.leader, req.header.id)
            resp.term = self.current_term
            prev = req.prev_log_entry
            if prev > 0:
                if prev == last_index:
                    prev_term = last_term
                elif prev > last_index:
                    log.warning("failed to get previous log: previous-index=%d last-index=%d",
                                prev, last_index)
                    resp.no_retry_backoff = True
                    return resp
                else:
                    try:
                        prev_term = self.term_at(prev)
                    except LogNotFound:
                        # compacted behind a snapshot: committed, hence the leader's too
                        prev_term = req.prev_log_term
                if prev_term != req.prev_log_term:
                    log.warning("previous log term mis-match: ours=%d remote=%d",
                                prev_term, req.prev_log_term)
                    resp.no_retry_backoff = True
                    return resp
            if req.entries:
                try:
                    last_index = await self._store_entries(req.entries, last_index)
                except (StorageError, ValueError) as err:
                    log.error("failed to append to logs: error=%s", err)
                    resp.last_log = self.last_log()[0]
                    return resp
            # only what this request showed to match the leader's log may be committed
            newest = req.entries[-1].index if req.entries else prev
            if req.leader_commit_index > self.commit_index:
                self._advance_commit(min(req.leader_commit_index, newest))
            self._last_contact = time.monotonic()
            resp.success = True
            resp.last_log = last_index
            return resp

    async def _store_entries(self, entries: list[Log], last_index: int) -> int:
        """Drop our entries that conflict with the leader's, append the new ones; returns the
        new last index."""
        new: list[Log] = []
        for i, entry in enumerate(entries):
            if entry.index > last_index:
                new = entries[i:]
                break
            try:
                ours = self.term_at(entry.index)
            except LogNotFound:
                continue  # compacted behind a snapshot, so committed and equal
            if ours != entry.term:
                log.warning("clearing log suffix: from=%d to=%d", entry.index, last_index)
                await self.logs.delete_range(entry.index, last_index)
                if entry.index <= self.latest_index:
                    self._set_latest(self.committed, self.committed_index)
                new = entries[i:]
                break
        if not new:
            return last_index
        await self.logs.store_logs(new)
        for entry in new:
            if entry.type == LogType.CONFIGURATION:
                self._set_latest(Configuration.decode(entry.data), entry.index)
        self._last_cache = (new[-1].index, new[-1].term)
        return new[-1].index

    # -- votes --------------------------------------------------------------------------------

    def _vote_refusal(self, candidate_id: str, candidate: str, transfer: bool) -> str:
        """Why a vote must be refused before looking at terms and logs ("" if it need not)."""
        latest = self.latest
        if latest.servers and latest.get(candidate_id) is None:
            return "node is not in configuration"
        if self._leader_addr and self._leader_addr != candidate and not transfer:
            return "we have a leader"
        return ""

    def _log_behind(self, last_log_index: int, last_log_term: int) -> str:
        index, term = self.last_log()
        if term > last_log_term:
            return f"our last term is greater: last-term={term}"
        if term == last_log_term and index > last_log_index:
            return f"our last index is greater: last-index={index}"
        return ""

    async def handle_request_vote(self, req: RequestVoteRequest) -> RequestVoteResponse:
        resp = RequestVoteResponse(self.header(), self.current_term, False)
        if self.state is RaftState.SHUTDOWN:
            return resp
        candidate = req.header.addr or req.candidate
        why = self._vote_refusal(req.header.id, candidate, req.leadership_transfer)
        if why:
            log.warning("rejecting vote request since %s: from=%s", why, candidate)
            return resp
        if req.term < self.current_term:
            return resp
        if req.term > self.current_term:
            log.debug("lost leadership because received a requestVote with a newer term")
            self._observe_term(req.term)
            resp.term = req.term
        if self.latest.servers and not self.latest.has_vote(req.header.id):
            log.warning("rejecting vote request since node is not a voter: from=%s", candidate)
            return resp
        voted_term = self.stable.get_uint64(KEY_LAST_VOTE_TERM)
        voted_for = self.stable.get(KEY_LAST_VOTE_CAND)
        if voted_term == req.term and voted_for:
            log.info("duplicate requestVote for same term: term=%d", req.term)
            resp.granted = voted_for == candidate.encode()
            return resp
        why = self._log_behind(req.last_log_index, req.last_log_term)
        if why:
            log.warning("rejecting vote request since %s: candidate=%s", why, candidate)
            return resp
        self._persist_vote(req.term, candidate)
        resp.granted = True
        self._last_contact = time.monotonic()
        return resp

    async def handle_request_pre_vote(
        self, req: RequestPreVoteRequest
    ) -> RequestPreVoteResponse:
        resp = RequestPreVoteResponse(self.header(), self.current_term, False)
        if self.state is RaftState.SHUTDOWN:
            return resp
        candidate = req.header.addr
        why = self._vote_refusal(req.header.id, candidate, False)
        if why:
            log.warning("rejecting pre-vote request since %s: from=%s", why, candidate)
            return resp
        if req.term < self.current_term:
            return resp
        if req.term > self.current_term:
            resp.term = req.term
        if self.latest.servers and not self.latest.has_vote(req.header.id):
            log.warning("rejecting pre-vote request since node is not a voter: from=%s",
                        candidate)
            return resp
        why = self._log_behind(req.last_log_index, req.last_log_term)
        if why:
            log.warning("rejecting pre-vote request since %s: candidate=%s", why, candidate)
            return resp
        resp.granted = True
        return resp

    # -- InstallSnapshot ----------------------------------------------------------------------

    async def handle_install_snapshot(
        self, req: InstallSnapshotRequest, data: AsyncIterator[bytes]
    ) -> InstallSnapshotResponse:
        return await self._guard(self._install_snapshot(req, data))

    async def _install_snapshot(
        self, req: InstallSnapshotRequest, data: AsyncIterator[bytes]
    ) -> InstallSnapshotResponse:
        resp = InstallSnapshotResponse(self.header(), self.current_term, False)
        if self.state is RaftState.SHUTDOWN:
            return resp
        if req.snapshot_version != 1:
            log.error("unsupported snapshot version %d", req.snapshot_version)
            return resp
        if req.term < self.current_term:
            log.info("ignoring installSnapshot request with older term than current term: "
                     "request-term=%d current-term=%d", req.term, self.current_term)
            return resp
        self._accept_leader(req.term, req.leader, req.header.id)
        resp.term = self.current_term
        configuration = Configuration.decode(req.configuration)
        sink = self.snapshots.create(1, req.last_log_index, req.last_log_term,
                                     configuration.to_data(), req.configuration_index)
        state = bytearray()
        try:
            async for chunk in data:
                sink.write(chunk)
                state += chunk
                self._last_contact = time.monotonic()
            if len(state) != req.size:
                raise SnapshotError(f"short read: received={len(state)} expected={req.size}")
            await asyncio.get_running_loop().run_in_executor(None, sink.close)
        except (TransportError, SnapshotError, StorageError, OSError) as err:
            sink.cancel()
            log.error("failed to receive snapshot: error=%s", err)
            return resp
        async with self._log_lock:
            try:
                self.fsm.restore(bytes(state))
            except Exception as err:
                log.error("failed to restore snapshot: id=%s error=%s", sink.id, err)
                return resp
            meta = SnapshotMeta(sink.id, req.last_log_index, req.last_log_term, len(state), 1,
                                configuration.to_data(), req.configuration_index)
            self._note_snapshot(meta)
            self.applied = max(self.applied, req.last_log_index)
            self._advance_commit(req.last_log_index)
            self.committed = configuration
            self.committed_index = req.configuration_index
            self._set_latest(configuration, req.configuration_index)
            await self._discard_log_through(req.last_log_index, req.last_log_term)
        log.info("Installed remote snapshot: id=%s index=%d", sink.id, req.last_log_index)
        self._last_contact = time.monotonic()
        resp.success = True
        return resp

    async def _discard_log_through(self, index: int, term: int) -> None:
        """Keep the log after the snapshot only if it continues the snapshot's history."""
        first, last = self.logs.first_index(), self.logs.last_index()
        if not first:
            return
        try:
            keep = last > index and self.logs.get_log(index).term == term
        except LogNotFound:
            keep = False
        await self.logs.delete_range(first, index if keep else last)
        self._last_cache = (0, 0)

    # -- TimeoutNow ---------------------------------------------------------------------------

    async def handle_timeout_now(self, req: TimeoutNowRequest) -> TimeoutNowResponse:
        if self.state is not RaftState.SHUTDOWN:
            log.info("received TimeoutNow, starting an election: from=%s", req.header.addr)
            self._set_leader("", "")
            self._transfer_candidate = True
            self._set_state(RaftState.CANDIDATE)
            self._wake_main.set()
        return TimeoutNowResponse(self.header())
