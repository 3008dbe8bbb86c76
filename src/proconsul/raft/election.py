"""Followers and candidates (hashicorp/raft raft.go: runFollower, runCandidate, preElectSelf,
electSelf).

A follower that hears nothing from a leader for a randomized heartbeat timeout becomes a
candidate, unless it cannot win: it knows no configuration, or has no vote in it (a non-voter
only ever follows). A candidate first asks for pre-votes for the next term without changing
any term, so a server that was cut off cannot depose a healthy leader when it comes back; only
with a quorum of pre-votes does it bump its term, vote for itself and ask for real votes. A
candidate started by TimeoutNow (a leadership transfer) skips the pre-vote and tells voters so,
which lets them vote although they still follow the old leader. A lone voter elects itself at
once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from proconsul.raft.configuration import Server
from proconsul.raft.core import F, RaftCore, random_timeout, wait_event
from proconsul.raft.errors import TransportError
from proconsul.raft.observer import RaftState
from proconsul.raft.transport import (
    RequestPreVoteRequest,
    RequestVoteRequest,
    WithPreVote,
)

log = logging.getLogger("proconsul.raft")


@dataclass(slots=True)
class _Ballot:
    """One round of (pre-)votes."""

    term: int
    needed: int
    pre: bool
    granted: int = 0
    refused: int = 0
    won: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()


class Elections(RaftCore[F]):
    _transfer_candidate: bool

    def _lone_voter(self) -> bool:
        voters = self.latest.voters()
        return len(voters) == 1 and voters[0].id == self.server_id

    async def _run_follower(self) -> None:
        log.info("entering follower state: follower=%s leader-address=%s leader-id=%s",
                 self.address, self._leader_addr, self._leader_id)
        timeout = self.config.heartbeat_timeout
        while True:
            self._wake_main.clear()
            if self.state is not RaftState.FOLLOWER:
                return
            if self._lone_voter() and not self._leader_addr:
                self._set_state(RaftState.CANDIDATE)
                return
            wait = random_timeout(timeout)
            due = time.monotonic() + wait
            await wait_event(self._wake_main, wait)
            if self.state is not RaftState.FOLLOWER or self._wake_main.is_set():
                continue
            now = time.monotonic()
            if now - self._last_contact < timeout or now - due > timeout:
                # heard from the leader lately, or woken so late (a busy loop) that its
                # messages may still be queued behind this timer
                continue
            # heartbeat timeout
            had_leader = self._leader_addr
            self._set_leader("", "")
            if not self.latest.servers:
                log.warning("no known peers, aborting election")
                continue
            if not self.latest.has_vote(self.server_id):
                if self.latest.get(self.server_id) is None:
                    log.warning("not part of stable configuration, aborting election")
                else:
                    log.debug("heartbeat timeout reached, not a voter: leader=%s", had_leader)
                continue
            log.warning("heartbeat timeout reached, starting election: last-leader-addr=%s",
                        had_leader)
            self._set_state(RaftState.CANDIDATE)
            return

    async def _run_candidate(self) -> None:
        transfer, self._transfer_candidate = self._transfer_candidate, False
        base_term = self.current_term
        log.info("entering candidate state: node=%s term=%d", self.address, base_term + 1)
        pre_vote = (self.config.pre_vote and not transfer
                    and isinstance(self.transport, WithPreVote))
        ballot = self._pre_elect(base_term + 1) if pre_vote else self._elect(transfer)
        deadline = time.monotonic() + random_timeout(self.config.election_timeout)
        try:
            while True:
                self._wake_main.clear()
                if self.state is not RaftState.CANDIDATE:
                    return
                expected = base_term if ballot.pre else base_term + 1
                if self.current_term != expected:
                    return  # someone else's term took over; start over as follower or anew
                if ballot.won and ballot.pre:
                    log.info("pre-vote successful, starting election: term=%d tally=%d",
                             ballot.term, ballot.granted)
                    ballot.cancel()
                    ballot = self._elect(transfer)
                    deadline = time.monotonic() + random_timeout(self.config.election_timeout)
                    continue
                if ballot.won:
                    log.info("election won: term=%d tally=%d", ballot.term, ballot.granted)
                    self._set_state(RaftState.LEADER)
                    self._set_leader(self.address, self.server_id)
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("Election timeout reached, restarting election")
                    return
                await wait_event(self._wake_main, remaining)
        finally:
            ballot.cancel()

    def _ballot(self, term: int, pre: bool,
                ask: Callable[[Server], Awaitable[tuple[int, bool]]]) -> _Ballot:
        ballot = _Ballot(term, self.latest.quorum(), pre)
        for server in self.latest.voters():
            if server.id == self.server_id:
                self._count(ballot, term, True)
            else:
                ballot.tasks.append(asyncio.ensure_future(
                    self._canvass(ballot, server, ask)))
        return ballot

    async def _canvass(self, ballot: _Ballot, server: Server,
                       ask: Callable[[Server], Awaitable[tuple[int, bool]]]) -> None:
        try:
            term, granted = await ask(server)
        except TransportError as err:
            log.error("failed to make %s RPC: target=%s error=%s",
                      "requestPreVote" if ballot.pre else "requestVote", server.address, err)
            term, granted = ballot.term, False
        if self.state is not RaftState.CANDIDATE:
            return
        if term > ballot.term:
            log.debug("newer term discovered, fallback to follower: term=%d", term)
            self._observe_term(term)
            return
        self._count(ballot, term, granted)

    def _count(self, ballot: _Ballot, term: int, granted: bool) -> None:
        if granted:
            ballot.granted += 1
        else:
            ballot.refused += 1
        if ballot.granted >= ballot.needed and not ballot.won:
            ballot.won = True
            self._wake_main.set()
        elif not granted and ballot.refused == ballot.needed and ballot.pre:
            log.info("pre-vote campaign failed, waiting for election timeout: term=%d "
                     "refused=%d", ballot.term, ballot.refused)

    def _pre_elect(self, term: int) -> _Ballot:
        index, last_term = self.last_log()
        req = RequestPreVoteRequest(self.header(), term, index, last_term)
        transport = self.transport
        assert isinstance(transport, WithPreVote)

        async def ask(server: Server) -> tuple[int, bool]:
            resp = await transport.request_pre_vote(server.id, server.address, req)
            return resp.term, resp.granted

        return self._ballot(term, True, ask)

    def _elect(self, transfer: bool) -> _Ballot:
        term = self.current_term + 1
        self._set_term(term)
        self._persist_vote(term, self.address)
        index, last_term = self.last_log()
        req = RequestVoteRequest(self.header(), term, self.address, index, last_term,
                                 leadership_transfer=transfer)
        transport = self.transport

        async def ask(server: Server) -> tuple[int, bool]:
            resp = await transport.request_vote(server.id, server.address, req)
            return resp.term, resp.granted

        return self._ballot(term, False, ask)
