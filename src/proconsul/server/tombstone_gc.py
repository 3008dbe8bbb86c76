"""Reaps KV tombstones once they are old enough (Consul's state.TombstoneGC).

Tombstones keep a prefix's index from going backwards after a delete, but only blocking
queries that started before the delete need them; after `ttl` they are reaped through the
FSM (so every server forgets them at the same index). Deletes are grouped into buckets of
`granularity` seconds so a burst of deletes costs one reap command.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("proconsul.server.tombstone")

#: Consul's defaults: tombstones live 15 minutes, expiry checked in 30 second buckets.
TOMBSTONE_TTL = 15 * 60.0
TOMBSTONE_GRANULARITY = 30.0


class TombstoneGC:
    def __init__(
        self,
        reap: Callable[[int], Awaitable[None]],
        ttl: float = TOMBSTONE_TTL,
        granularity: float = TOMBSTONE_GRANULARITY,
    ) -> None:
        self._reap = reap
        self.ttl = ttl
        self.granularity = granularity
        self._buckets: dict[int, int] = {}
        self._handles: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.enabled = False

    def set_enabled(self, enabled: bool) -> None:
        """Only the leader reaps; followers drop their pending buckets."""
        self.enabled = enabled
        if not enabled:
            for handle in self._handles.values():
                handle.cancel()
            self._handles.clear()
            self._buckets.clear()

    def hint(self, index: int) -> None:
        """A delete committed at `index`: reap it after the TTL."""
        if not self.enabled:
            return
        loop = asyncio.get_running_loop()
        bucket = int((loop.time() + self.ttl) / self.granularity)
        if bucket in self._buckets:
            self._buckets[bucket] = max(self._buckets[bucket], index)
            return
        self._buckets[bucket] = index
        delay = bucket * self.granularity + self.granularity - loop.time()
        self._handles[bucket] = loop.call_later(delay, self._expire, bucket)

    def pending(self) -> int:
        return len(self._buckets)

    def _expire(self, bucket: int) -> None:
        self._handles.pop(bucket, None)
        index = self._buckets.pop(bucket, None)
        if index is not None:
            task = asyncio.ensure_future(self._run(index))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, index: int) -> None:
        try:
            await self._reap(index)
        except Exception as err:
            log.error("failed to reap tombstones up to index %d: %s", index, err)
