"""A write transaction: one Raft index, an undo log, and the watches to fire on commit.

Every change goes through a `WriteTxn`, so a multi-operation `/v1/txn` either commits whole or
is rolled back (undo in reverse), and watchers wake only after the whole commit, never on a
half-applied state.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proconsul.state.store import Store


class WriteTxn:
    __slots__ = ("_kv_keys", "_notify", "_store", "_tables", "_undo", "idx")

    def __init__(self, store: Store, idx: int) -> None:
        self._store = store
        self.idx = idx
        self._undo: list[Callable[[], None]] = []
        self._notify: set[Hashable] = set()
        self._tables: set[str] = set()
        self._kv_keys: set[str] = set()

    def on_abort(self, fn: Callable[[], None]) -> None:
        """Register how to reverse one change made in this transaction."""
        self._undo.append(fn)

    def touch(self, table: str, *watch_keys: Hashable) -> None:
        """Mark `table` as written at this index and queue the watches to fire on commit."""
        self._tables.add(table)
        self._notify.update(watch_keys)

    def touch_kv(self, key: str) -> None:
        self._kv_keys.add(key)

    def commit(self) -> None:
        store = self._store
        for table in self._tables:
            if store.indexes.get(table, 0) < self.idx:
                store.indexes[table] = self.idx
        watches = store.watches
        for wk in self._notify:
            watches.notify(wk)
        for table in self._tables:
            watches.notify(("table", table))
        for key in self._kv_keys:
            store.notify_kv(key)

    def abort(self) -> None:
        for fn in reversed(self._undo):
            fn()
        self._undo.clear()
