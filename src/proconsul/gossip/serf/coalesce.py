"""Event coalescing, as hashicorp/serf `serf/coalesce.go`, `coalesce_member.go` and
`coalesce_user.go`, on an asyncio loop.

A flapping network or a burst of deploy events would otherwise run a handler once per event.
A coalescer holds the events it handles and delivers one summary at the first of two
deadlines: `coalesce_period` after the first held event, or `quiescent_period` after the
latest one. Events it does not handle pass straight through. Nothing here touches the wire.

Each coalescer keeps at most one loop timer (`call_at`): a new event only moves the quiescent
deadline, and when the timer fires early because that deadline moved, it re-arms itself for
the remaining time. Output goes to a callback as a list: one list per flush, or a one-item
list for a passed-through event. To chain two coalescers (serf stacks the user-event one in
front of the member one), feed each item of one's output to the other.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol, cast

from proconsul.gossip.serf.config import UserEventRecord
from proconsul.gossip.serf.events import MEMBER_EVENT_TYPES, EventType, MemberEvent, NamedMember
from proconsul.gossip.serf.messages import UserEvent

__all__ = [
    "Coalescer", "MemberEventCoalescer", "StampedEvent", "TimerLoop", "UserEventCoalescer",
]

#: Receives one batch of events (in delivery order).
Emit = Callable[[list[object]], None]


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class TimerLoop(Protocol):
    """The part of an event loop a coalescer uses (an asyncio loop, or a fake in tests)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle: ...


class Coalescer(ABC):
    """serf's `coalesceLoop` around one coalescing policy (the subclass)."""

    __slots__ = ("_closed", "_emit", "_loop", "_quantum_at", "_quiet_at", "_timer",
                 "_timer_at", "coalesce_period", "quiescent_period")

    def __init__(self, emit: Emit, coalesce_period: float, quiescent_period: float,
                 loop: TimerLoop | None = None) -> None:
        if coalesce_period <= 0 or quiescent_period <= 0:
            raise ValueError("coalesce and quiescent periods must be positive")
        self._emit = emit
        self.coalesce_period = coalesce_period
        self.quiescent_period = quiescent_period
        self._loop = loop
        self._quantum_at: float | None = None
        self._quiet_at = 0.0
        self._timer: TimerHandle | None = None
        self._timer_at = 0.0
        self._closed = False

    @abstractmethod
    def handles(self, event: object) -> bool:
        """Whether this coalescer holds `event`; others are passed through at once."""

    @abstractmethod
    def _coalesce(self, event: object) -> None:
        """Fold a handled event into the pending state."""

    @abstractmethod
    def _drain(self) -> list[object]:
        """The summary of the pending state, which is then cleared."""

    def _timers(self) -> TimerLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def pending(self) -> bool:
        """True while held events wait for a deadline."""
        return self._quantum_at is not None

    def feed(self, event: object) -> None:
        """Take one event: pass it through, or hold it and (re)arm the deadlines."""
        if self._closed or not self.handles(event):
            self._emit([event])
            return
        loop = self._timers()
        now = loop.time()
        if self._quantum_at is None:
            self._quantum_at = now + self.coalesce_period
        self._quiet_at = now + self.quiescent_period
        if self._timer is None:
            self._timer_at = min(self._quantum_at, self._quiet_at)
            self._timer = loop.call_at(self._timer_at, self._expired)
        self._coalesce(event)

    def _expired(self) -> None:
        self._timer = None
        if self._quantum_at is None:
            return
        due = min(self._quantum_at, self._quiet_at)
        if due > self._timer_at:
            self._timer_at = due
            self._timer = self._timers().call_at(due, self._expired)
            return
        self.flush()

    def flush(self) -> None:
        """Deliver whatever is held now and reset both deadlines."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._quantum_at = None
        batch = self._drain()
        if batch:
            self._emit(batch)

    def close(self) -> None:
        """Flush (as serf does on shutdown); later events pass straight through."""
        self.flush()
        self._closed = True


class MemberEventCoalescer(Coalescer):
    """Keeps only each member's latest event type per flush, grouped into one MemberEvent
    per type, and drops a type already delivered for that member last time, except updates
    (every tag change matters). Serf's agent uses 3 s / 1 s periods."""

    __slots__ = ("_last", "_latest")

    def __init__(self, emit: Emit, coalesce_period: float, quiescent_period: float,
                 loop: TimerLoop | None = None) -> None:
        super().__init__(emit, coalesce_period, quiescent_period, loop)
        self._last: dict[str, str] = {}
        self._latest: dict[str, tuple[str, NamedMember]] = {}

    def handles(self, event: object) -> bool:
        return isinstance(event, MemberEvent) and event.type in MEMBER_EVENT_TYPES

    def _coalesce(self, event: object) -> None:
        assert isinstance(event, MemberEvent)
        for member in event.members:
            self._latest[member.name] = (event.type, member)

    def _drain(self) -> list[object]:
        grouped: dict[str, MemberEvent[Any]] = {}
        for name, (event_type, member) in self._latest.items():
            if self._last.get(name) == event_type and event_type != EventType.MEMBER_UPDATE:
                continue
            self._last[name] = event_type
            batch = grouped.get(event_type)
            if batch is None:
                batch = grouped[event_type] = MemberEvent(EventType(event_type), [])
            batch.members.append(member)
        self._latest.clear()
        return list(grouped.values())


class StampedEvent(Protocol):
    """What the user-event coalescer reads from an event it handles."""

    @property
    def ltime(self) -> int: ...

    @property
    def name(self) -> str: ...


class UserEventCoalescer(Coalescer):
    """For user events sent with coalescing allowed, keeps per event name only those with
    the highest Lamport time seen; others pass through. `handles` picks the record Serf
    delivers (`config.UserEventRecord` with `coalesce`) and the wire struct
    (`messages.UserEvent` with `cc`); a subclass may accept another record with `ltime` and
    `name`."""

    __slots__ = ("_events",)

    def __init__(self, emit: Emit, coalesce_period: float, quiescent_period: float,
                 loop: TimerLoop | None = None) -> None:
        super().__init__(emit, coalesce_period, quiescent_period, loop)
        self._events: dict[str, tuple[int, list[StampedEvent]]] = {}

    def handles(self, event: object) -> bool:
        if isinstance(event, UserEventRecord):
            return event.coalesce
        return isinstance(event, UserEvent) and event.cc

    def _coalesce(self, raw: object) -> None:
        event = cast(StampedEvent, raw)
        latest = self._events.get(event.name)
        if latest is None or latest[0] < event.ltime:
            self._events[event.name] = (event.ltime, [event])
        elif latest[0] == event.ltime:
            latest[1].append(event)

    def _drain(self) -> list[object]:
        out: list[object] = [event for _, events in self._events.values() for event in events]
        self._events.clear()
        return out
