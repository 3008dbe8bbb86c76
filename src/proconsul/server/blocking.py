"""Blocking queries (Consul's agent/blockingquery): run a read, and if its index is not past
the client's, wait on the watches the read registered, then run it again.

The wait is the client's `wait` (default `default_query_time`, at most `max_query_time`) plus
a random jitter of up to 1/16 of it, so thousands of watchers do not all return at once. A
restore resolves every watch channel of the old store, so each waiter wakes and re-reads the
new one.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from proconsul.state.store import Store
from proconsul.state.watch import WatchSet
from proconsul.structs.query import QueryMeta, QueryOptions

JITTER_FRACTION = 16

#: A read: returns the index of its answer and whether the thing asked for was missing.
QueryFn = Callable[[WatchSet | None, Store], tuple[int, bool]]


async def blocking_query(
    opts: QueryOptions,
    meta: QueryMeta,
    get_store: Callable[[], Store],
    fn: QueryFn,
    default_wait: float = 300.0,
    max_wait: float = 600.0,
) -> None:
    """Run `fn` until its index moves past `opts.min_query_index` or the wait ends.

    `fn` stores its result where the caller can see it; the last run's result stands. When
    the thing asked for is missing twice in a row, the query waits for it to appear rather
    than for any write to the table (a missing key's index is the table's).
    """
    min_index = opts.min_query_index
    if min_index <= 0:
        meta.index = max(fn(None, get_store())[0], 1)
        return
    wait = opts.max_query_time or default_wait
    if wait > max_wait:
        wait = max_wait
    wait += random.random() * wait / JITTER_FRACTION
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    misses = 0
    while True:
        store = get_store()
        ws = WatchSet()
        index, missing = fn(ws, store)
        if not len(ws):
            # a restore resolves every channel of the old store, so a query that watches
            # anything wakes through its own channels; only one that watches nothing needs the
            # shared abandon channel (which, held by every query, would make each wake-up cost
            # a scan of all of their callbacks)
            store.watch_abandon(ws)
        index = max(index, 1)
        meta.index = index
        if missing:
            misses += 1
            if misses > 1:
                min_index = index
        else:
            misses = 0
        if index > min_index:
            return
        remaining = deadline - loop.time()
        if remaining <= 0 or not await ws.wait(remaining):
            return
