"""The user-event and query dedup rings, as `handleUserEvent` / `handleQuery` in
hashicorp/serf `serf/serf.go`.

Gossip delivers every broadcast to a node several times, and push/pull replays the whole
event ring on every exchange, so a receiver must recognise what it has already seen without
remembering everything. Serf keeps one slot per Lamport time modulo the ring size (512 by
default): a slot remembers which events (name + payload) or query IDs arrived at exactly that
time. Anything older than one ring behind the clock, or below the minimum time restored from
a snapshot (or set on join with `ignoreOld`), is dropped outright. The user-event ring is
also the `Events` field of Serf's push/pull state, so its slots are the wire objects.
"""

from __future__ import annotations

from proconsul.gossip.serf.lamport import LamportClock
from proconsul.gossip.serf.messages import Query, UserEvent, UserEventEntry, UserEvents

__all__ = ["DEFAULT_BUFFER_SIZE", "QueryBuffer", "UserEventBuffer"]

#: serf's `EventBuffer` and `QueryBuffer` defaults.
DEFAULT_BUFFER_SIZE = 512


class _Ring:
    """What both rings share: the clock they witness, the minimum time and the age rule."""

    __slots__ = ("clock", "min_time", "size")

    def __init__(self, clock: LamportClock, size: int) -> None:
        if size <= 0:
            raise ValueError("buffer size must be positive")
        self.clock = clock
        self.size = size
        #: Times below this are ignored (serf's eventMinTime / queryMinTime).
        self.min_time = 0

    def _admissible(self, ltime: int) -> bool:
        """Witness `ltime`, then apply serf's two age rules."""
        self.clock.witness(ltime)
        if ltime < self.min_time:
            return False
        now = self.clock.time()
        return not (now > self.size and ltime < now - self.size)


class UserEventBuffer(_Ring):
    """Recent user events by Lamport time; `accept` says whether an event is new."""

    __slots__ = ("slots",)

    def __init__(self, clock: LamportClock, size: int = DEFAULT_BUFFER_SIZE) -> None:
        super().__init__(clock, size)
        #: The ring itself, `size` entries of None or UserEvents (push/pull's `Events`).
        self.slots: list[UserEvents | None] = [None] * size

    def accept(self, event: UserEvent) -> bool:
        """Record `event` and return True when it has not been seen: deliver it to the
        application and re-gossip it. Duplicates share (LTime, Name, Payload), where a nil
        payload equals an empty one (Go's `bytes.Equal`)."""
        if not self._admissible(event.ltime):
            return False
        index = event.ltime % self.size
        seen = self.slots[index]
        payload = event.payload or b""
        if seen is not None and seen.ltime == event.ltime:
            if seen.events is None:
                seen.events = []
            for previous in seen.events:
                if previous.name == event.name and (previous.payload or b"") == payload:
                    return False
        else:
            seen = UserEvents(event.ltime, [])
            self.slots[index] = seen
        assert seen.events is not None
        seen.events.append(UserEventEntry(event.name, event.payload))
        return True

    def replay(self, slots: list[UserEvents | None] | None) -> list[UserEvent]:
        """The events of a remote push/pull ring that are new here, recorded as they are
        accepted (serf's `MergeRemoteState` feeds each through the user-event path)."""
        fresh: list[UserEvent] = []
        for slot in slots or ():
            if slot is None:
                continue
            for entry in slot.events or ():
                event = UserEvent(slot.ltime, entry.name, entry.payload)
                if self.accept(event):
                    fresh.append(event)
        return fresh


class _QuerySlot:
    __slots__ = ("ids", "ltime")

    def __init__(self, ltime: int) -> None:
        self.ltime = ltime
        self.ids: list[int] = []


class QueryBuffer(_Ring):
    """Recent query IDs by Lamport time; `accept` says whether a query is new."""

    __slots__ = ("_slots",)

    def __init__(self, clock: LamportClock, size: int = DEFAULT_BUFFER_SIZE) -> None:
        super().__init__(clock, size)
        self._slots: list[_QuerySlot | None] = [None] * size

    def accept(self, query: Query) -> bool:
        """Record `query` and return True the first time (LTime, ID) is seen."""
        if not self._admissible(query.ltime):
            return False
        index = query.ltime % self.size
        seen = self._slots[index]
        if seen is not None and seen.ltime == query.ltime:
            if query.id in seen.ids:
                return False
        else:
            seen = _QuerySlot(query.ltime)
            self._slots[index] = seen
        seen.ids.append(query.id)
        return True
