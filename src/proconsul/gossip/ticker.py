"""A repeating loop timer that holds exactly one pending handle.

Gossip nodes run their periodic duties (gossip, push/pull, reap, reconnect) as loop callbacks
rather than tasks, so that thousands of nodes share one loop cheaply. Each tick re-arms the
same `Ticker`, so a node holds one handle per duty however long it runs, and stopping it is
one cancel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Ticker"]


class Ticker:
    """Calls `fn` after `first` seconds, then every `interval()` seconds (asked anew each
    time, so a duty can stretch its period with cluster size) until `stop`."""

    __slots__ = ("_fn", "_handle", "_interval", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: Callable[[], float],
                 fn: Callable[[], None], first: float) -> None:
        self._loop = loop
        self._interval = interval
        self._fn = fn
        self._handle: asyncio.TimerHandle | None = loop.call_later(first, self._tick)

    def _tick(self) -> None:
        self._handle = self._loop.call_later(self._interval(), self._tick)
        self._fn()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
