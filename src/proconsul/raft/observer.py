"""What a Raft server reports about itself as it happens (hashicorp/raft observer.go).

The server's leader duties start and stop on leadership listeners: they hear True once this
server leads and has applied everything committed before it took over (so its reads are
current), and False as soon as it stops leading.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from proconsul.raft.configuration import Server

log = logging.getLogger("proconsul.raft")


class RaftState(enum.StrEnum):
    FOLLOWER = "Follower"
    CANDIDATE = "Candidate"
    LEADER = "Leader"
    SHUTDOWN = "Shutdown"


@dataclass(slots=True, frozen=True)
class StateObservation:
    state: RaftState
    term: int


@dataclass(slots=True, frozen=True)
class LeaderObservation:
    """The leader this server knows of changed ("" when none is known)."""

    leader_address: str
    leader_id: str
    term: int


@dataclass(slots=True, frozen=True)
class PeerObservation:
    """The leader started (removed=False) or stopped replicating to a server."""

    server: Server
    removed: bool


Observation = StateObservation | LeaderObservation | PeerObservation
Observer = Callable[[Observation], None]
LeadershipListener = Callable[[bool], None]


class Observers:
    """Callbacks run in the order registered; one that raises is logged and skipped."""

    def __init__(self) -> None:
        self._observers: list[Observer] = []
        self._leadership: list[LeadershipListener] = []

    def register(self, observer: Observer) -> None:
        self._observers.append(observer)

    def deregister(self, observer: Observer) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def add_leadership_listener(self, listener: LeadershipListener) -> None:
        self._leadership.append(listener)

    def remove_leadership_listener(self, listener: LeadershipListener) -> None:
        if listener in self._leadership:
            self._leadership.remove(listener)

    def observe(self, observation: Observation) -> None:
        for observer in list(self._observers):
            try:
                observer(observation)
            except Exception:
                log.exception("raft observer failed")

    def leadership(self, leading: bool) -> None:
        for listener in list(self._leadership):
            try:
                listener(leading)
            except Exception:
                log.exception("raft leadership listener failed")
