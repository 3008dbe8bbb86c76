"""Lamport clocks, as hashicorp/serf `serf/lamport.go`.

Serf keeps three independent clocks (member intents, user events, queries). They order
messages that travel by gossip, where arrival order means nothing: a receiver witnesses every
LTime it sees, so whatever it stamps next is later than anything it has seen. Values are Go
`uint64`s and wrap the same way; everything runs on one event loop, so the atomics of the Go
version reduce to plain reads and writes.
"""

from __future__ import annotations

__all__ = ["LamportClock"]

_MASK = (1 << 64) - 1


class LamportClock:
    """A uint64 Lamport clock: `time`, `increment` and `witness` as serf's."""

    __slots__ = ("_counter",)

    def __init__(self, start: int = 0) -> None:
        self._counter = start & _MASK

    def time(self) -> int:
        """The current value."""
        return self._counter

    def increment(self) -> int:
        """Advance by one and return the new value."""
        self._counter = (self._counter + 1) & _MASK
        return self._counter

    def witness(self, other: int) -> None:
        """Another process has seen `other`: make sure our next stamp is later. Nothing
        happens for values older than ours; otherwise the clock becomes `other + 1`."""
        if other < self._counter:
            return
        self._counter = (other + 1) & _MASK

    def __repr__(self) -> str:
        return f"LamportClock({self._counter})"
