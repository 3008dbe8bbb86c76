"""The leader's replication to one follower (hashicorp/raft replication.go).

Two tasks per follower. The replicator sends the log from `next_index` on, up to
`max_append_entries` entries per request; after a mismatch it walks `next_index` back (using the
follower's last index as a hint), and when the entries it needs were compacted away it sends
the newest snapshot instead. Once a request succeeds it switches to pipelining, if the
transport can: requests go out back to back and a decoder reads the answers in order, falling
back to one-at-a-time on the first failure. The heartbeat task sends empty AppendEntries every
heartbeat_timeout/10, independently of large appends, so a busy follower still hears from its
leader; its answers also confirm leadership for verify_leader.

A follower that cannot be reached is retried with exponential backoff (10ms doubling, capped).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from proconsul.errors import LogNotFound, SnapshotError
from proconsul.raft.config import Config
from proconsul.raft.configuration import Configuration, Server
from proconsul.raft.core import random_timeout, wait_event
from proconsul.raft.errors import TransportError
from proconsul.raft.log import Log, LogStore
from proconsul.raft.snapshot import SnapshotStore
from proconsul.raft.transport import (
    AppendEntriesRequest,
    AppendEntriesResponse,
    InstallSnapshotRequest,
    RPCHeader,
    Transport,
    WithPipeline,
)

log = logging.getLogger("proconsul.raft")

FAILURE_WAIT = 0.010
MAX_FAILURE_SCALE = 12


def backoff(base: float, round_: int, limit: int = MAX_FAILURE_SCALE) -> float:
    """hashicorp/raft's backoff: base for the first two failures, then doubling."""
    power = min(round_, limit)
    while power > 2:
        base *= 2
        power -= 1
    return base


class ReplicationHost(Protocol):
    """What a replicator needs from the leader it works for."""

    config: Config
    transport: Transport
    logs: LogStore
    snapshots: SnapshotStore
    commit_index: int
    address: str

    def header(self) -> RPCHeader: ...

    def appended_last(self) -> int:
        """The newest entry's index, including a batch whose sync on the leader is still in
        flight (followers may store it first)."""
        ...

    def appended_entry(self, index: int) -> Log:
        """The entry at `index`; raises LogNotFound when it was compacted."""
        ...

    def appended_term(self, index: int) -> int:
        """The term of the entry at `index`; raises LogNotFound when it was compacted."""
        ...

    def replication_progress(self, replicator: Replicator) -> None:
        """`replicator.match_index` moved forward."""
        ...

    def replication_saw_term(self, term: int) -> None:
        """A follower answered with a newer term: the leader must step down."""
        ...


class Verification:
    """One verify_leader round: done once a quorum of voters (this server included)
    answered a heartbeat of the current term."""

    def __init__(self, needed: int, votes: int) -> None:
        self.needed = needed
        self.votes = votes
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._voted: set[str] = set()
        self._check()

    def vote(self, server: Server) -> None:
        if server.voter and server.id not in self._voted:
            self._voted.add(server.id)
            self.votes += 1
            self._check()

    def _check(self) -> None:
        if self.votes >= self.needed and not self.future.done():
            self.future.set_result(None)


class Replicator:
    def __init__(self, host: ReplicationHost, server: Server, term: int,
                 next_index: int) -> None:
        self.host = host
        self.server = server
        self.term = term
        self.next_index = max(next_index, 1)
        self.match_index = 0
        #: monotonic time of the follower's last answer (the leader lease counts these)
        self.last_contact = time.monotonic()
        self.failures = 0
        self.commit_sent = 0
        self.allow_pipeline = False
        self.stopped = False
        self._trigger = asyncio.Event()
        self._beat = asyncio.Event()
        self._verifications: list[Verification] = []
        self._tasks = [asyncio.ensure_future(self._replicate_loop()),
                       asyncio.ensure_future(self._heartbeat_loop())]

    def trigger(self) -> None:
        self._trigger.set()

    def verify(self, verification: Verification) -> None:
        """Count this follower's answer to an immediate heartbeat towards `verification`."""
        self._verifications.append(verification)
        self._beat.set()

    async def stop(self) -> None:
        self.stopped = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- appending ----------------------------------------------------------------------------

    async def _replicate_loop(self) -> None:
        config = self.host.config
        while not self.stopped:
            if self.failures:
                await asyncio.sleep(backoff(FAILURE_WAIT, self.failures))
            else:
                await wait_event(self._trigger, random_timeout(config.commit_timeout))
            self._trigger.clear()
            await self._replicate()
            if (self.allow_pipeline and not self.failures and not self.stopped
                    and isinstance(self.host.transport, WithPipeline)):
                await self._pipeline_replicate(self.host.transport)
                self.allow_pipeline = False

    def _pending(self, last: int) -> bool:
        return self.next_index <= last or self.host.commit_index > self.commit_sent

    def _request(self, last: int) -> AppendEntriesRequest:
        """The next request; raises LogNotFound when its entries were compacted away."""
        host = self.host
        prev = self.next_index - 1
        prev_term = host.appended_term(prev)
        upto = min(last, prev + host.config.max_append_entries)
        get_log = host.appended_entry
        entries = [get_log(index) for index in range(prev + 1, upto + 1)]
        return AppendEntriesRequest(
            host.header(), self.term, host.address, prev, prev_term, entries,
            host.commit_index,
        )

    def _matched(self, req: AppendEntriesRequest, pipelined: bool) -> None:
        match = req.entries[-1].index if req.entries else req.prev_log_entry
        if match > self.match_index:
            self.match_index = match
            self.host.replication_progress(self)
        if not pipelined:
            self.next_index = max(self.next_index, match + 1)
        self.commit_sent = max(self.commit_sent, req.leader_commit_index)

    async def _replicate(self) -> None:
        """One-at-a-time replication until the follower has everything (or a failure)."""
        host = self.host
        while not self.stopped:
            last = host.appended_last()
            if not self._pending(last):
                return
            try:
                req = self._request(last)
            except LogNotFound:
                if not await self._send_snapshot():
                    return
                continue
            try:
                resp = await host.transport.append_entries(
                    self.server.id, self.server.address, req)
            except TransportError as err:
                self.failures += 1
                log.error("failed to appendEntries to: peer=%s error=%s",
                          self.server.address, err)
                return
            if not self._answered(resp.term):
                return
            if resp.success:
                self._matched(req, pipelined=False)
                self.failures = 0
                self.allow_pipeline = True
            else:
                self.next_index = max(min(self.next_index - 1, resp.last_log + 1), 1)
                self.failures = 0 if resp.no_retry_backoff else self.failures + 1
                log.warning("appendEntries rejected, sending older logs: peer=%s next=%d",
                            self.server.address, self.next_index)
                if self.failures:
                    return

    def _answered(self, term: int) -> bool:
        """Note an answer; False (and the leader steps down) if it carries a newer term."""
        if term > self.term:
            self.stopped = True
            self.host.replication_saw_term(term)
            return False
        self.last_contact = time.monotonic()
        return True

    async def _pipeline_replicate(self, transport: WithPipeline) -> None:
        try:
            pipeline = await transport.append_entries_pipeline(
                self.server.id, self.server.address)
        except TransportError as err:
            log.debug("pipelining unavailable: peer=%s error=%s", self.server.address, err)
            return
        log.info("pipelining replication: peer=%s", self.server.address)
        sent: asyncio.Queue[tuple[asyncio.Future[AppendEntriesResponse],
                                  AppendEntriesRequest]] = asyncio.Queue()
        decoder = asyncio.ensure_future(self._pipeline_decode(sent))
        host = self.host
        try:
            while not self.stopped and not decoder.done():
                self._trigger.clear()
                last = host.appended_last()
                while self._pending(last) and not decoder.done():
                    try:
                        req = self._request(last)
                    except LogNotFound:
                        return  # the one-at-a-time path sends the snapshot
                    try:
                        future = await pipeline.append_entries(req)
                    except TransportError as err:
                        self.failures += 1
                        log.error("failed to pipeline appendEntries: peer=%s error=%s",
                                  self.server.address, err)
                        return
                    sent.put_nowait((future, req))
                    if req.entries:
                        self.next_index = req.entries[-1].index + 1
                    self.commit_sent = max(self.commit_sent, req.leader_commit_index)
                await wait_event(self._trigger, random_timeout(host.config.commit_timeout))
        finally:
            log.info("aborting pipeline replication: peer=%s", self.server.address)
            decoder.cancel()
            await asyncio.gather(decoder, return_exceptions=True)
            await pipeline.close()
            while not sent.empty():
                future, _ = sent.get_nowait()
                if future.done() and not future.cancelled():
                    future.exception()
            self.next_index = self.match_index + 1
            self.commit_sent = 0
            self._trigger.set()  # resume one at a time without waiting for the next tick

    async def _pipeline_decode(
        self, sent: asyncio.Queue[tuple[asyncio.Future[AppendEntriesResponse],
                                        AppendEntriesRequest]],
    ) -> None:
        try:
            while not self.stopped:
                future, req = await sent.get()
                try:
                    resp = await future
                except TransportError as err:
                    self.failures += 1
                    log.error("failed to pipeline appendEntries: peer=%s error=%s",
                              self.server.address, err)
                    return
                if not self._answered(resp.term) or not resp.success:
                    return
                self._matched(req, pipelined=True)
        finally:
            self._trigger.set()  # wake the sender so it notices

    # -- snapshots ----------------------------------------------------------------------------

    async def _send_snapshot(self) -> bool:
        host = self.host
        metas = host.snapshots.list()
        if not metas:
            log.error("failed to send snapshot: no snapshots found: peer=%s",
                      self.server.address)
            self.failures += 1
            return False
        try:
            meta, reader = host.snapshots.open(metas[0].id)
        except SnapshotError as err:
            log.error("failed to open snapshot: id=%s error=%s", metas[0].id, err)
            self.failures += 1
            return False
        req = InstallSnapshotRequest(
            host.header(), self.term, host.address, meta.index, meta.term,
            Configuration.from_data(meta.configuration).encode(), meta.configuration_index,
            meta.size,
        )
        started = time.perf_counter()
        try:
            with reader:
                resp = await host.transport.install_snapshot(
                    self.server.id, self.server.address, req, reader)
        except TransportError as err:
            self.failures += 1
            log.error("failed to install snapshot: id=%s peer=%s error=%s",
                      meta.id, self.server.address, err)
            return False
        if not self._answered(resp.term):
            return False
        if not resp.success:
            self.failures += 1
            log.warning("installSnapshot rejected to: peer=%s", self.server.address)
            return False
        self.failures = 0
        self.next_index = meta.index + 1
        if meta.index > self.match_index:
            self.match_index = meta.index
            host.replication_progress(self)
        log.info("copied snapshot to follower: peer=%s id=%s index=%d took=%.3fs",
                 self.server.address, meta.id, meta.index, time.perf_counter() - started)
        return True

    # -- heartbeats ---------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        host = self.host
        failures = 0
        while not self.stopped:
            if failures:
                await asyncio.sleep(backoff(FAILURE_WAIT, failures))
            else:
                await wait_event(self._beat, random_timeout(host.config.heartbeat_timeout / 10))
            self._beat.clear()
            verifications, self._verifications = self._verifications, []
            req = AppendEntriesRequest(host.header(), self.term, host.address)
            try:
                resp = await host.transport.append_entries(
                    self.server.id, self.server.address, req)
            except TransportError as err:
                failures += 1
                self._verifications[:0] = verifications  # ask again next round
                log.debug("failed to heartbeat to: peer=%s error=%s", self.server.address, err)
                continue
            failures = 0
            if not self._answered(resp.term):
                return
            if resp.success:
                for verification in verifications:
                    verification.vote(self.server)
