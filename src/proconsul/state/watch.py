"""Watch channels: how a blocking query learns that its answer may have changed.

A read registers, in a `WatchSet`, one future per thing it looked at (a key, a prefix, a
table). A commit resolves exactly the futures of the things it touched, so 1,000 queries
blocked on 1,000 keys cost nothing until their own key changes, and a write wakes only its
readers. Futures are one-shot: resolved ones are dropped from the registry and the next read
makes a fresh one (the model of go-memdb's closed channels).
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


class Watches:
    """Registry of pending watch futures keyed by what they watch."""

    __slots__ = ("_chans",)

    def __init__(self) -> None:
        self._chans: dict[Hashable, asyncio.Future[None]] = {}

    def channel(self, key: Hashable) -> asyncio.Future[None]:
        fut = self._chans.get(key)
        if fut is None or fut.done():
            fut = asyncio.get_running_loop().create_future()
            self._chans[key] = fut
        return fut

    def notify(self, key: Hashable) -> None:
        fut = self._chans.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def has(self, key: Hashable) -> bool:
        return key in self._chans

    def __len__(self) -> int:
        return len(self._chans)

    def watched(self) -> list[Hashable]:
        return list(self._chans)

    def notify_all(self) -> None:
        chans, self._chans = self._chans, {}
        for fut in chans.values():
            if not fut.done():
                fut.set_result(None)

    def prune(self) -> int:
        """Drop futures nobody waits on any more (their readers timed out); returns the count.

        Keeps the registry bounded by the number of queries actually blocked, not by every key
        ever read.
        """
        dead = [k for k, f in self._chans.items() if f.done() or not _has_waiters(f)]
        for k in dead:
            del self._chans[k]
        return len(dead)


def _has_waiters(fut: asyncio.Future[None]) -> bool:
    # asyncio.Future keeps its done-callbacks in `_callbacks`; waiters of asyncio.wait add one.
    callbacks = getattr(fut, "_callbacks", None)
    return bool(callbacks)


class WatchSet:
    """The futures one read registered; waiting on it returns when any of them fires."""

    __slots__ = ("_futs",)

    def __init__(self) -> None:
        self._futs: list[asyncio.Future[None]] = []

    def add(self, fut: asyncio.Future[None]) -> None:
        self._futs.append(fut)

    def __len__(self) -> int:
        return len(self._futs)

    async def wait(self, timeout: float) -> bool:
        """Wait until one watched item changes (True) or `timeout` seconds pass (False)."""
        if not self._futs:
            await asyncio.sleep(timeout)
            return False
        for fut in self._futs:
            if fut.done():
                return True
        done, _ = await asyncio.wait(
            self._futs, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        return bool(done)
