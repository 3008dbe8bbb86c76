"""Watches fire for exactly what a read touched."""

from __future__ import annotations

import asyncio

from proconsul.state import Store, WatchSet
from proconsul.structs.kvs import KVEntry


def write(store: Store, idx: int, key: str) -> None:
    txn = store.write(idx)
    store.kvs_set(txn, KVEntry(key=key, value=str(idx).encode()))
    txn.commit()


def test_key_watch_fires_only_for_its_key() -> None:
    async def main() -> None:
        s = Store()
        sets = {}
        for k in ("a", "b", "c"):
            ws = WatchSet()
            s.kvs_get(ws, k)
            sets[k] = ws
        write(s, 2, "b")
        assert await sets["b"].wait(0.5)
        assert not await sets["a"].wait(0.05)
        assert not await sets["c"].wait(0.05)

    asyncio.run(main())


def test_prefix_watch_fires_under_prefix_only() -> None:
    async def main() -> None:
        s = Store()
        inside, outside = WatchSet(), WatchSet()
        s.kvs_list(inside, "app/")
        s.kvs_list(outside, "other/")
        write(s, 2, "app/x/y")
        assert await inside.wait(0.5)
        assert not await outside.wait(0.05)

    asyncio.run(main())


def test_abandon_wakes_everyone() -> None:
    async def main() -> None:
        s = Store()
        ws = WatchSet()
        s.kvs_get(ws, "k")
        s.watch_abandon(ws)
        s.abandon()
        assert await ws.wait(0.5)

    asyncio.run(main())


def test_rolled_back_write_wakes_nobody() -> None:
    async def main() -> None:
        s = Store()
        ws = WatchSet()
        s.kvs_get(ws, "k")
        txn = s.write(2)
        s.kvs_set(txn, KVEntry("k", b"1"))
        txn.abort()
        assert not await ws.wait(0.05)

    asyncio.run(main())


def test_prune_drops_abandoned_waiters() -> None:
    async def main() -> None:
        s = Store()
        for i in range(50):
            ws = WatchSet()
            s.kvs_get(ws, f"k{i}")
            await ws.wait(0.001)
        assert s.watches.prune() == 50
        assert len(s.watches) == 0

    asyncio.run(main())
