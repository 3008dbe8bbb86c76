"""A repeating loop timer that holds exactly one pending handle, on beats shared by every node.

Gossip nodes run their periodic duties (gossip, push/pull, reap, reconnect) as loop callbacks
rather than tasks, so that thousands of nodes share one loop cheaply. Each tick re-arms the
same `Ticker`, so a node holds one handle per duty however long it runs, and stopping it is
one cancel.

Deadlines are absolute and fall on beats: multiples of `interval / PHASES` on the loop's clock.
Waking an idle process costs far more CPU than the duty it wakes for (40-100 µs on a small VM,
against a few µs to find that there is nothing to gossip), so at rest a node's CPU is its number
of wake-ups. With free-running timers, N nodes in one loop wake it 5N times a second for gossip
alone; on beats, the duties of every node with the same interval fire in the same loop
iteration, at most PHASES times per interval whatever N is. Each node still starts at a random
beat, so the nodes of a process do not all gossip at once, and nodes in different processes or
hosts are as independent as before.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

__all__ = ["PHASES", "Ticker", "on_beat"]

#: beats per interval a periodic duty can land on
PHASES = 4


def on_beat(t: float, interval: float) -> float:
    """The first beat (a multiple of interval / PHASES) at or after `t`, allowing a millionth
    of a beat for float error, so that a beat plus an interval stays that beat and does not
    round up to the next one."""
    step = interval / PHASES
    if step <= 0:
        return t
    return math.ceil(t / step - 1e-6) * step


class Ticker:
    """Calls `fn` at the first beat at least `first` seconds from now, then every `interval()`
    seconds (asked anew each time, so a duty can stretch its period with cluster size) until
    `stop`. A loop that falls more than an interval behind skips the beats it missed rather
    than running them back to back."""

    __slots__ = ("_due", "_fn", "_handle", "_interval", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: Callable[[], float],
                 fn: Callable[[], None], first: float) -> None:
        self._loop = loop
        self._interval = interval
        self._fn = fn
        self._due = on_beat(loop.time() + first, interval())
        self._handle: asyncio.TimerHandle | None = loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        interval = self._interval()
        due = on_beat(self._due + interval, interval)
        now = self._loop.time()
        if due <= now:
            due = on_beat(now, interval)
        self._due = due
        self._handle = self._loop.call_at(due, self._tick)
        self._fn()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
